/**
 * Metadata cleanup (DIGEST §6): deleting log files that fell out of `delta.logRetentionDuration`.
 *
 * The rule keeps every version that time travel within the retention can reach. Let C be the newest complete
 * checkpoint whose version was committed at or before the cutoff (now − retention). Everything from C on is
 * kept (C's checkpoint reconstructs C, the commits after it every later version); every log file of a version
 * below C goes: commits, checkpoints of all kinds, `.crc`, log compactions ending below C, and Hadoop `.x.crc`
 * sidecars. Without such a checkpoint nothing is deleted.
 *
 * Commit times are file mtimes, made monotonic over versions as Spark does (a copied log can have mtimes out
 * of order), so a version is never considered older than one before it.
 */
import { readdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { type LogListing, listLogFiles } from './log-files.js';
import { logRetentionMs } from './table-properties.js';

export interface CleanupOptions {
  /** The table's properties; `delta.logRetentionDuration` (default `interval 30 days`) sets the retention. */
  configuration?: Readonly<Record<string, string>>;
  /** Overrides the retention from `configuration`, in ms. */
  retentionMs?: number;
  /** "Now" in ms. Default `Date.now()`. */
  now?: number;
}

export interface CleanupResult {
  /** The checkpoint version everything below was deleted for, or undefined when nothing had expired. */
  keptFrom: number | undefined;
  /** Names deleted from `_delta_log`, ascending by version. */
  deleted: string[];
}

/** Leftover temp files from crashed writers are removed once this old; live ones exist for milliseconds. */
const STALE_TEMP_MS = 24 * 3_600_000;

/** The newest complete checkpoint version committed at or before `cutoff`, or undefined. */
async function newestExpiredCheckpoint(listing: LogListing, cutoff: number): Promise<number | undefined> {
  const checkpointVersions = new Set(listing.checkpoints.map((c) => c.version));
  if (checkpointVersions.size === 0) return undefined;
  const versions = [...new Set([...listing.commits.keys(), ...checkpointVersions])].sort((a, b) => a - b);
  let found: number | undefined;
  let previous = Number.NEGATIVE_INFINITY;
  for (const v of versions) {
    const commit = listing.commits.get(v);
    // A version whose commit was already cleaned up is as old as its checkpoint.
    const name = commit ?? (listing.checkpoints.find((c) => c.version === v)?.names[0] as string);
    const mtime = (await stat(path.join(listing.logDir, name))).mtimeMs;
    const time = Math.max(mtime, previous + 1);
    previous = time;
    // Monotonic: once past the cutoff, every later version is too.
    if (time > cutoff) break;
    if (checkpointVersions.has(v)) found = v;
  }
  return found;
}

/**
 * Deletes the log files of `tableRoot` that are no longer needed (see the module comment), plus temp files
 * left in `_delta_log` by writers that crashed more than a day ago. `_last_checkpoint` is never touched. A file
 * that a concurrent cleanup already deleted is not an error.
 */
export async function cleanupExpiredLogs(
  tableRoot: string,
  options: CleanupOptions = {},
): Promise<CleanupResult> {
  const root = path.resolve(tableRoot);
  const now = options.now ?? Date.now();
  const retention = options.retentionMs ?? logRetentionMs(options.configuration ?? {});
  const listing = await listLogFiles(root);
  const keptFrom = await newestExpiredCheckpoint(listing, now - retention);
  const deleted: string[] = [];
  const remove = async (name: string) => {
    try {
      await unlink(path.join(listing.logDir, name));
      deleted.push(name);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
  };
  if (keptFrom !== undefined) {
    for (const file of listing.files) if (file.version < keptFrom) await remove(file.name);
  }
  for (const name of await readdir(listing.logDir)) {
    if (!name.startsWith('.') || !name.endsWith('.tmp')) continue;
    const info = await stat(path.join(listing.logDir, name)).catch(() => undefined);
    if (info && info.mtimeMs < now - STALE_TEMP_MS) await remove(name);
  }
  return { keptFrom, deleted };
}
