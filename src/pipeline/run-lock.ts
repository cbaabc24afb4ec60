/**
 * Exclusive ownership through a lock file, for two purposes:
 *
 * - one round at a time per gateway area (`.run.lock`): two processes interleaving segment numbers or
 *   commits would break exactly-once;
 * - one long-running process per pipeline (`.pipeline-<name>.lock`): a second `tributary run` or
 *   `tributary start` of the same pipeline refuses to start instead of silently sharing the work.
 *
 * The file is created exclusively and holds its owner: pid, the process's start time (so a pid reused by
 * an unrelated process after a reboot or a container restart is not mistaken for the owner), the pipeline
 * and its update id. A lock whose owner is gone (killed -9, power cut) is taken over, so a crash never needs
 * manual cleanup, and the taker learns who died so the crash can be recorded in
 * `system.lakeflow.pipeline_events`.
 *
 * The lock file never exists half-written (it is linked into place with its content), and a dead owner's
 * lock is replaced, not removed: under a second exclusive file (`<lock>.takeover`) the taker checks that the
 * lock still names the dead owner and renames its own over it. Without that, two processes that both saw the
 * same dead owner could each remove the lock, the slower removing the faster one's fresh lock, and both
 * would run. Owners are checked on this host only; a warehouse shared by several hosts needs one runner
 * host per gateway.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { TributaryError } from '../core/errors.js';

export interface LockOwner {
  readonly pid: number;
  /** Process start time in clock ticks since boot (/proc/<pid>/stat field 22); absent off Linux. */
  readonly startTime?: number;
  readonly pipeline?: string;
  readonly updateId?: string;
  /** ISO time the lock was taken. */
  readonly since?: string;
}

export interface HeldLock extends AsyncDisposable {
  /** The owner that died holding this lock, when it was taken over from one. */
  readonly tookOverFrom: LockOwner | undefined;
}

export interface LockRequest {
  /** Names the thing locked in the refusal, e.g. "Gateway gw". */
  readonly what: string;
  readonly pipeline?: string;
  readonly updateId?: string;
  /** How a refusal is retried: a round waits its turn (transient), a second process gives up (fatal). */
  readonly busy: 'transient' | 'fatal';
  readonly hint?: (owner: LockOwner, path: string) => string;
}

/** A takeover guard older than this belongs to a process that died inside the takeover: it is removed. */
const STALE_TAKEOVER_MS = 10_000;

function processStartTime(pid: number): number | undefined {
  try {
    // Field 2 (comm) may contain spaces and parentheses; the fields after its closing ')' are plain.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const value = Number(fields[19]);
    return Number.isFinite(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

function alive(owner: LockOwner): boolean {
  if (owner.pid === process.pid) return false; // Our own stale lock (a pid reused inside a container).
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  const started = processStartTime(owner.pid);
  return owner.startTime === undefined || started === undefined || started === owner.startTime;
}

function parseOwner(text: string): LockOwner | undefined {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return { pid: Number(trimmed) }; // Written by Tributary before 0.2.
  try {
    const owner = JSON.parse(trimmed) as LockOwner;
    return Number.isInteger(owner.pid) && owner.pid > 0 ? owner : undefined;
  } catch {
    return undefined; // Empty or garbled (an older version killed mid-write): nobody owns it.
  }
}

async function readOwner(path: string): Promise<LockOwner | undefined> {
  return parseOwner(await readFile(path, 'utf8').catch(() => ''));
}

/**
 * Creates `path` holding `content`, unless it exists. The content is written to a private file first and
 * linked into place, so the lock never exists empty: a racer can never mistake a lock being written for one
 * whose writer died.
 */
async function createExclusive(path: string, content: string): Promise<boolean> {
  const draft = `${path}.${process.pid}.${randomUUID()}.tmp`;
  try {
    await writeFile(draft, content, { mode: 0o600 });
    await link(draft, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    await rm(draft, { force: true });
  }
}

/**
 * Replaces the lock at `path` with `content` if it still holds `dead`, under the takeover guard. The rename
 * replaces it in one step, so no other process can create the lock in between: whoever replaces the dead
 * owner's lock is the one that holds it. `busy`: another process holds the guard (look again shortly);
 * `changed`: the lock is no longer the dead owner's (look again now).
 */
async function replaceDeadOwner(
  path: string,
  dead: string,
  content: string,
): Promise<'taken' | 'busy' | 'changed'> {
  const guard = `${path}.takeover`;
  if (!(await createExclusive(guard, `${process.pid}\n`))) {
    const age = Date.now() - ((await stat(guard).catch(() => undefined))?.mtimeMs ?? Date.now());
    if (age > STALE_TAKEOVER_MS) await rm(guard, { force: true });
    return 'busy';
  }
  const draft = `${path}.${process.pid}.${randomUUID()}.tmp`;
  try {
    if ((await readFile(path, 'utf8').catch(() => undefined)) !== dead) return 'changed';
    await writeFile(draft, content, { mode: 0o600 });
    await rename(draft, path);
    return 'taken';
  } finally {
    await rm(draft, { force: true });
    await rm(guard, { force: true });
  }
}

export async function acquireRunLock(path: string, request: LockRequest): Promise<HeldLock> {
  const startTime = processStartTime(process.pid);
  const me: LockOwner = {
    pid: process.pid,
    ...(startTime === undefined ? {} : { startTime }),
    ...(request.pipeline === undefined ? {} : { pipeline: request.pipeline }),
    ...(request.updateId === undefined ? {} : { updateId: request.updateId }),
    since: new Date().toISOString(),
  };
  const content = `${JSON.stringify(me)}\n`;
  const held = (tookOverFrom: LockOwner | undefined): HeldLock => ({
    tookOverFrom,
    [Symbol.asyncDispose]: async () => {
      // Never remove a lock that is no longer ours (taken over after we were presumed dead).
      if ((await readOwner(path))?.pid === process.pid) await rm(path, { force: true });
    },
  });
  // A takeover guard left by a process killed inside its takeover is cleared once it is stale, so while the
  // guard is busy the wait is bounded by time rather than by attempts.
  const busyUntil = Date.now() + STALE_TAKEOVER_MS + 5_000;
  for (let attempt = 0; attempt < 50; attempt++) {
    if (await createExclusive(path, content)) return held(undefined);
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text === undefined) continue; // Released meanwhile: try again at once.
    const owner = parseOwner(text);
    if (owner !== undefined && alive(owner)) {
      throw new TributaryError('USAGE', `${request.what} is already running (pid ${owner.pid}).`, {
        hint: request.hint?.(owner, path) ?? `Wait for it to finish, or stop it. The lock file is ${path}.`,
        retry: request.busy,
      });
    }
    const outcome = await replaceDeadOwner(path, text, content);
    if (outcome === 'taken') return held(owner);
    if (outcome === 'busy') {
      await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
      if (Date.now() < busyUntil) attempt--;
    }
  }
  throw new TributaryError('INTERNAL', `Could not take the lock ${path}: it kept changing hands.`, {
    retry: 'transient',
  });
}
