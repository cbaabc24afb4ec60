/**
 * Many processes racing for a lock whose owner died (the situation after a kill -9, when a supervisor and
 * an operator both start Tributary): the holders never overlap. Without the takeover guard in run-lock.ts,
 * two racers that both saw the dead owner could each remove the lock, the slower removing the faster one's
 * fresh lock, and both would run.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect, it } from 'vitest';
import { TEST_DIR } from '../harness/cli.js';

const LOCK_MODULE = pathToFileURL(resolve(TEST_DIR, '../dist/pipeline/run-lock.js')).href;
const RACER = `
import { acquireRunLock } from ${JSON.stringify(LOCK_MODULE)};
const path = process.argv[1];
try {
  const lock = await acquireRunLock(path, { what: 'Gateway gw', busy: 'fatal' });
  const start = performance.timeOrigin + performance.now();
  await new Promise((r) => setTimeout(r, 150));
  const end = performance.timeOrigin + performance.now();
  await lock[Symbol.asyncDispose]();
  process.stdout.write(JSON.stringify({ won: true, start, end, tookOver: lock.tookOverFrom?.pid ?? null }));
} catch (error) {
  process.stdout.write(JSON.stringify({ won: false, message: error.message }));
}
`;

type Result =
  | { won: true; start: number; end: number; tookOver: number | null }
  | { won: false; message: string };

function race(path: string): Promise<Result> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', RACER, path], { stdio: 'pipe' });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.on('error', fail);
    child.on('close', () => done(JSON.parse(out) as Result));
  });
}

it('hands a dead owner’s lock to one racer at a time', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tributary-lock-race-'));
  try {
    let winners = 0;
    for (let round = 0; round < 12; round++) {
      const path = join(dir, `.run-${round}.lock`);
      const dead = Number(
        spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString(),
      );
      await writeFile(path, JSON.stringify({ pid: dead }));
      const results = await Promise.all(Array.from({ length: 8 }, () => race(path)));
      const held = results.filter((r) => r.won).sort((a, b) => a.start - b.start);
      expect(held.length, JSON.stringify(results)).toBeGreaterThan(0);
      for (let i = 1; i < held.length; i++) {
        expect(held[i]?.start, 'two processes held the lock at once').toBeGreaterThanOrEqual(
          held[i - 1]?.end ?? 0,
        );
      }
      expect(held.filter((r) => r.tookOver === dead).length, 'the dead owner is taken over once').toBe(1);
      for (const r of results)
        if (!r.won) expect(r.message).toMatch(/^Gateway gw is already running \(pid \d+\)\.$/);
      winners += held.length;
    }
    expect(winners).toBeGreaterThanOrEqual(12);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
