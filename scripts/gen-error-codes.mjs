#!/usr/bin/env node
// Writes docs/error-codes.md from ERROR_CODES. Runs the built code in dist/ so that it needs no TypeScript
// loader; src/core/error-codes-doc.test.ts fails until the file is regenerated after a change.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pairs = [
  ['src/core/errors.ts', 'dist/core/errors.js'],
  ['src/core/error-codes-doc.ts', 'dist/core/error-codes-doc.js'],
];
// A stale dist would silently write the old codes, and the test would then disagree with the fresh file.
const stale = pairs.filter(
  ([src, out]) =>
    !existsSync(join(root, out)) || statSync(join(root, out)).mtimeMs < statSync(join(root, src)).mtimeMs,
);
if (stale.length > 0) {
  console.error(`building: ${stale.map(([, out]) => out).join(', ')} missing or older than the source`);
  execFileSync(
    process.execPath,
    [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
}

const { ERROR_CODES } = await import('../dist/core/errors.js');
const { renderErrorCodesDoc } = await import('../dist/core/error-codes-doc.js');
const target = join(root, 'docs', 'error-codes.md');
writeFileSync(target, renderErrorCodesDoc(ERROR_CODES));
console.error(`wrote ${target} (${Object.keys(ERROR_CODES).length} codes)`);
