#!/usr/bin/env node
// `npm run demo`: builds if needed (npm ci already did, via `prepare`), then runs the workshop demo.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (!existsSync(join(root, 'dist', 'demo', 'run-demo.js'))) {
  execFileSync(
    process.execPath,
    [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
}
const { runDemo, demoOptions } = await import('../dist/demo/run-demo.js');
let options;
try {
  options = demoOptions(process.argv.slice(2));
} catch (error) {
  process.stderr.write(`${error.message}\n`);
  process.exit(2);
}
process.exit(await runDemo(options));
