#!/usr/bin/env node
// `npm test`: the whole suite, from a fresh clone if need be. Installs dependencies when node_modules is
// missing, builds dist/ (integration tests run the real CLI), type-checks, lints, then runs unit and
// integration tests. The integration global setup installs and starts MariaDB itself.
// Ends with one plain "N passed, N failed, N skipped" line for CI.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function step(title, command, args) {
  process.stdout.write(`\n> ${title}\n`);
  const r = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) {
    process.stdout.write(`\n${title} failed\n0 passed, 1 failed\n`);
    process.exit(r.status ?? 1);
  }
}

if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) step('npm ci', npm, ['ci']);
const bin = (name) => join(root, 'node_modules', '.bin', name);
step('build', bin('tsc'), ['-p', 'tsconfig.build.json']);
step('typecheck', bin('tsc'), ['--noEmit']);
step('lint', bin('biome'), ['check', '.']);

const report = join(tmpdir(), `tributary-vitest-${process.pid}.json`);
process.stdout.write('\n> vitest (unit + integration)\n');
const args = [
  'run',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${report}`,
  ...process.argv.slice(2),
];
const r = spawnSync(bin('vitest'), args, { cwd: root, stdio: 'inherit' });
let passed = 0;
let failed = r.status === 0 ? 0 : 1;
let skipped = 0;
if (existsSync(report)) {
  const json = JSON.parse(readFileSync(report, 'utf8'));
  passed = json.numPassedTests;
  failed = json.numFailedTests + (r.status !== 0 && json.numFailedTests === 0 ? 1 : 0);
  skipped = json.numPendingTests + json.numTodoTests;
  rmSync(report, { force: true });
}
process.stdout.write(`\n${passed} passed, ${failed} failed, ${skipped} skipped\n`);
process.exit(r.status ?? 1);
