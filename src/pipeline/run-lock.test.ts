import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TributaryError } from '../core/errors.js';
import { acquireRunLock } from './run-lock.js';

/** A pid that certainly belonged to a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']);
  return Number(r.stdout.toString());
}

describe('acquireRunLock', () => {
  let dir: string;
  let sleeper: ChildProcess | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tributary-lock-'));
  });
  afterEach(async () => {
    sleeper?.kill('SIGKILL');
    sleeper = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  const request = { what: 'Gateway gw', pipeline: 'p', updateId: 'u-1', busy: 'transient' } as const;

  it('waits out the takeover guard of a process killed inside its takeover, then takes the lock over', async () => {
    const path = join(dir, '.run.lock');
    const dead = deadPid();
    await writeFile(path, `${JSON.stringify({ pid: dead, pipeline: 'p', updateId: 'dead' })}\n`);
    // The guard it left is 6 s old: stale after 4 s more, longer than 50 quick attempts take.
    const guard = `${path}.takeover`;
    await writeFile(guard, `${dead}\n`);
    const sixSecondsAgo = new Date(Date.now() - 6_000);
    await utimes(guard, sixSecondsAgo, sixSecondsAgo);
    await using lock = await acquireRunLock(path, request);
    expect(lock.tookOverFrom).toMatchObject({ pid: dead, updateId: 'dead' });
    expect(JSON.parse(await readFile(path, 'utf8'))).toMatchObject({ pid: process.pid });
  });

  it('writes its owner and removes the lock when released', async () => {
    const path = join(dir, '.run.lock');
    {
      await using lock = await acquireRunLock(path, request);
      expect(lock.tookOverFrom).toBeUndefined();
      const owner = JSON.parse(await readFile(path, 'utf8'));
      expect(owner).toMatchObject({ pid: process.pid, pipeline: 'p', updateId: 'u-1' });
    }
    await expect(readFile(path, 'utf8')).rejects.toThrow(/ENOENT/);
  });

  it('refuses while a live process owns the lock, with the retry class asked for', async () => {
    sleeper = spawn('sleep', ['30']);
    const path = join(dir, '.run.lock');
    const startTime = Number(
      (await readFile(`/proc/${sleeper.pid}/stat`, 'utf8')).split(') ')[1]?.split(' ')[19],
    );
    await writeFile(path, JSON.stringify({ pid: sleeper.pid, startTime }));
    const fatal = await acquireRunLock(path, { ...request, busy: 'fatal' }).catch((e: unknown) => e);
    expect(fatal).toBeInstanceOf(TributaryError);
    expect((fatal as TributaryError).message).toBe(`Gateway gw is already running (pid ${sleeper.pid}).`);
    expect((fatal as TributaryError).retry).toBe('fatal');
    const transient = await acquireRunLock(path, request).catch((e: unknown) => e);
    expect((transient as TributaryError).retry).toBe('transient');
  });

  it('takes over the lock of a dead owner and says whose it was', async () => {
    const path = join(dir, '.run.lock');
    const pid = deadPid();
    await writeFile(
      path,
      JSON.stringify({ pid, pipeline: 'p', updateId: 'crashed', since: '2026-01-01T00:00:00Z' }),
    );
    await using lock = await acquireRunLock(path, request);
    expect(lock.tookOverFrom).toMatchObject({ pid, updateId: 'crashed', since: '2026-01-01T00:00:00Z' });
  });

  it('takes over a lock whose pid now belongs to an unrelated process (pid reuse)', async () => {
    sleeper = spawn('sleep', ['30']);
    const path = join(dir, '.run.lock');
    await writeFile(path, JSON.stringify({ pid: sleeper.pid, startTime: 1 }));
    await using lock = await acquireRunLock(path, request);
    expect(lock.tookOverFrom?.pid).toBe(sleeper.pid);
  });

  it('reads the plain-pid lock files of earlier versions, and takes over an empty one', async () => {
    const path = join(dir, '.run.lock');
    await writeFile(path, `${deadPid()}\n`);
    {
      await using lock = await acquireRunLock(path, request);
      expect(lock.tookOverFrom?.pid).toBeGreaterThan(0);
    }
    await writeFile(path, '');
    await using lock = await acquireRunLock(path, request);
    expect(lock.tookOverFrom).toBeUndefined();
  });

  it('does not remove a lock that was taken over from it meanwhile', async () => {
    const path = join(dir, '.run.lock');
    const lock = await acquireRunLock(path, request);
    await writeFile(path, JSON.stringify({ pid: 1 }));
    await lock[Symbol.asyncDispose]();
    expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ pid: 1 });
  });
});
