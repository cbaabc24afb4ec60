#!/usr/bin/env node
// `npm run chaos`: the long fault-injection suite (test/chaos, issue 7): at least 100 kill -9 of Tributary per
// source, source crashes, connection cuts, a purged binlog and a dropped slot, ENOSPC on staging, OPTIMIZE and
// VACUUM beside apply, two processes on one pipeline. Every scenario ends with bronze compared row for row
// with the source. `npm test` runs the short version of the same scenarios.
// Installs dependencies when missing and builds dist/ (the scenarios run the real CLI).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const bin = (name) => join(root, 'node_modules', '.bin', name);

function step(command, args, env = process.env) {
  const r = spawnSync(command, args, { cwd: root, stdio: 'inherit', env });
  if (r.status !== 0) process.exit(r.status ?? 1);
}

if (!existsSync(join(root, 'node_modules', '.package-lock.json'))) step(npm, ['ci']);
step(bin('tsc'), ['-p', 'tsconfig.build.json']);
step(bin('vitest'), ['run', '--project', 'chaos', ...process.argv.slice(2)], {
  ...process.env,
  TRIBUTARY_CHAOS: 'long',
});
