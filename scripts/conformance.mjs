#!/usr/bin/env node
// `npm run conformance`: runs the Delta reader against the whole conformance corpus and writes
// conformance-report.md and conformance-report.json at the repository root (both git-ignored), then prints one
// summary line. The cases live in src/delta/conformance.test.ts and run through vitest, so a fresh clone needs
// only `npm ci` (no build). The corpus defaults to /work/shared/conformance/delta; set
// DELTA_CONFORMANCE_CORPUS to use another copy. Exit status: 0 when no case failed.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const corpus = process.env.DELTA_CONFORMANCE_CORPUS ?? '/work/shared/conformance/delta';
if (!existsSync(corpus)) {
  process.stderr.write(`Delta conformance corpus not found at ${corpus}; set DELTA_CONFORMANCE_CORPUS.\n`);
  process.exit(2);
}
const vitest = join(root, 'node_modules', 'vitest', 'vitest.mjs');
if (!existsSync(vitest)) {
  process.stderr.write('vitest is not installed; run `npm ci` first.\n');
  process.exit(2);
}

const json = join(root, 'conformance-report.json');
// A stale report must not pass for this run's.
rmSync(json, { force: true });
rmSync(join(root, 'conformance-report.md'), { force: true });
const run = spawnSync(
  process.execPath,
  [vitest, 'run', '--project', 'unit', 'src/delta/conformance.test.ts', '--reporter', 'dot'],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, TRIBUTARY_CONFORMANCE_REPORT: root, DELTA_CONFORMANCE_CORPUS: corpus },
  },
);
if (!existsSync(json)) {
  process.stderr.write(`The conformance run wrote no report (vitest exit status ${run.status}).\n`);
  process.exit(run.status || 1);
}
const { summary, byKind } = JSON.parse(readFileSync(json, 'utf8'));
const kinds = Object.entries(byKind)
  .map(([kind, n]) => `${kind} ${n.passed}/${n.passed + n.failed + n.skipped}`)
  .join(', ');
process.stdout.write(
  `\nDelta conformance: ${summary.total} cases over ${summary.tables} tables — ${summary.passed} passed, ` +
    `${summary.failed} failed, ${summary.skipped} skipped (${kinds}). ` +
    'Details: conformance-report.md, conformance-report.json\n',
);
process.exit(summary.failed > 0 ? 1 : (run.status ?? 1));
