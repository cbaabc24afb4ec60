/**
 * VACUUM: deletes the data files of a table that no version inside the retention window references and that are
 * older than that window (Spark semantics, DIGEST §12).
 *
 * Kept, always:
 * - every file referenced by any version from the one current at `now - retention` to the latest (the files of
 *   that version, plus every file added, removed or written as change data after it), with their deletion
 *   vector files — so time travel and RESTORE within the window keep working;
 * - every file modified within the window (a writer may be about to commit it);
 * - `_delta_log` and every other hidden (`_`/`.`-prefixed) name except `_change_data`;
 * - anything below a directory that is a staging volume (`.tributary-volume`) or another Delta table, and
 *   anything outside the table directory (a shallow clone's files belong to its source). Symbolic links are not
 *   followed.
 */
import { type Dirent, existsSync } from 'node:fs';
import { readdir, rmdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { isTributaryError, messageOf, TributaryError } from '../../core/errors.js';
import type { AddFile, RawAction } from '../actions.js';
import { type CommitRequest, commitWithRetry } from '../commit.js';
import { canonicalFilePath, readCommitActions } from '../log-files.js';
import { loadSnapshot, type Snapshot } from '../snapshot.js';
import { deletedFileRetentionMs } from '../table-properties.js';
import { deletionVectorFile } from './dv-files.js';
import { commitTimestamps, type LogCommit, listCommits } from './log.js';
import { checkWriteSupport } from './write-support.js';

export interface VacuumOptions {
  /** Retention in hours; default the table's `delta.deletedFileRetentionDuration` (7 days). */
  retentionHours?: number;
  /** List what would be deleted without deleting anything. */
  dryRun?: boolean;
  /**
   * Refuse a retention shorter than the table's `delta.deletedFileRetentionDuration` (Spark's
   * `spark.databricks.delta.retentionDurationCheck.enabled`). Default true.
   */
  retentionCheck?: boolean;
  /** Record `VACUUM START` / `VACUUM END` commits in the history (never on a dry run). Default true. */
  logToHistory?: boolean;
  /** The current time, ms (tests). */
  now?: number;
}

export interface VacuumResult {
  readonly tableRoot: string;
  readonly dryRun: boolean;
  readonly retentionMs: number;
  /** Absolute paths of the files deleted (or, on a dry run, that would be). */
  readonly files: readonly string[];
  readonly bytes: number;
  readonly directoriesScanned: number;
  readonly directoriesDeleted: number;
}

const VOLUME_MARKER = '.tributary-volume';

/** The marker that makes a directory a volume or a table of its own: VACUUM never enters it. */
function isForeignRoot(dir: string): boolean {
  return existsSync(path.join(dir, VOLUME_MARKER)) || existsSync(path.join(dir, '_delta_log'));
}

interface ListedFile {
  readonly path: string;
  readonly size: number;
  readonly mtimeMs: number;
}

async function listDataFiles(root: string): Promise<{ files: ListedFile[]; directories: number }> {
  const files: ListedFile[] = [];
  let directories = 0;
  const walk = async (dir: string): Promise<void> => {
    directories++;
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    for (const entry of entries) {
      const hidden = entry.name.startsWith('.') || entry.name.startsWith('_');
      if (hidden && entry.name !== '_change_data') continue;
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (!isForeignRoot(full)) await walk(full);
      } else if (entry.isFile()) {
        const info = await stat(full);
        files.push({ path: full, size: info.size, mtimeMs: info.mtimeMs });
      }
      // Symbolic links and special files are never followed nor deleted.
    }
  };
  await walk(root);
  return { files, directories };
}

/** Index of the version current at `cutoff` (the last commit at or before it), or 0. */
function versionAt(timestamps: readonly number[], cutoff: number): number {
  let index = 0;
  for (let i = 0; i < timestamps.length; i++) if ((timestamps[i] as number) <= cutoff) index = i;
  return index;
}

/** The snapshot at the first version from `commits[from]` on that can be reconstructed. */
async function firstLoadable(root: string, commits: readonly LogCommit[], from: number): Promise<Snapshot> {
  let lastError: unknown;
  for (let i = from; i < commits.length; i++) {
    try {
      return await loadSnapshot(root, { version: (commits[i] as LogCommit).version });
    } catch (error) {
      if (!isTributaryError(error) || error.code !== 'DELTA_CORRUPT') throw error;
      lastError = error;
    }
  }
  throw lastError;
}

/** Absolute paths that must survive: data, DV and change-data files of every retained version. */
async function referencedFiles(root: string, latest: Snapshot, cutoff: number): Promise<Set<string>> {
  const keep = new Set<string>();
  const keepAdd = (add: Pick<AddFile, 'path' | 'deletionVector'>) => {
    keep.add(canonicalFilePath(root, add.path));
    if (add.deletionVector) {
      const dv = deletionVectorFile(root, add.deletionVector);
      if (dv) keep.add(dv);
    }
  };
  for (const add of latest.files) keepAdd(add);

  const commits = (await listCommits(root)).filter((c) => c.version <= latest.version);
  if (commits.length === 0) return keep;
  const timestamps = await commitTimestamps(commits);
  const first = versionAt(timestamps, cutoff);
  const oldest = await firstLoadable(root, commits, first);
  for (const add of oldest.files) keepAdd(add);
  // Every file a later version references was added (or removed, or written as change data) after `oldest`.
  for (const c of commits) {
    if (c.version <= oldest.version) continue;
    for (const action of await readCommitActions(root, c.version)) keepFileAction(action, keepAdd);
  }
  return keep;
}

function keepFileAction(
  action: RawAction,
  keepAdd: (add: Pick<AddFile, 'path' | 'deletionVector'>) => void,
): void {
  for (const value of [action.add, action.remove, action.cdc]) {
    if (
      typeof value === 'object' &&
      value !== null &&
      typeof (value as { path?: unknown }).path === 'string'
    ) {
      keepAdd(value as Pick<AddFile, 'path' | 'deletionVector'>);
    }
  }
}

/** Directories (below the root) left empty by the deletions, deepest first, removed. */
async function removeEmptyDirectories(root: string, deleted: readonly string[]): Promise<number> {
  const dirs = new Set<string>();
  for (const file of deleted) {
    for (let dir = path.dirname(file); dir.startsWith(root + path.sep); dir = path.dirname(dir))
      dirs.add(dir);
  }
  let removed = 0;
  for (const dir of [...dirs].sort((a, b) => b.length - a.length)) {
    try {
      await rmdir(dir);
      removed++;
    } catch {
      // Not empty, or already gone: leave it.
    }
  }
  return removed;
}

export async function vacuum(tableRoot: string, options: VacuumOptions = {}): Promise<VacuumResult> {
  const now = options.now ?? Date.now();
  const snapshot = await loadSnapshot(tableRoot);
  const root = snapshot.tableRoot;
  checkWriteSupport(snapshot, 'VACUUM');
  if (existsSync(path.join(root, VOLUME_MARKER))) {
    throw new TributaryError('DELTA_PROTOCOL', `${root} is a staging volume; VACUUM never touches volumes`);
  }
  const defaultRetentionMs = deletedFileRetentionMs(snapshot.metadata.configuration);
  const retentionMs =
    options.retentionHours === undefined
      ? defaultRetentionMs
      : Math.round(options.retentionHours * 3_600_000);
  if (!(retentionMs >= 0)) {
    throw new TributaryError(
      'SQL_ERROR',
      `VACUUM retention must not be negative (${options.retentionHours} hours)`,
    );
  }
  const retentionCheck = options.retentionCheck ?? true;
  if (retentionCheck && retentionMs < defaultRetentionMs) {
    const hours = defaultRetentionMs / 3_600_000;
    throw new TributaryError(
      'SQL_ERROR',
      `VACUUM with a retention of ${retentionMs / 3_600_000} hours is refused: it is shorter than the table's ` +
        `delta.deletedFileRetentionDuration (${hours} hours). Files still needed by a concurrent writer, a ` +
        'reader of an older version or time travel could be deleted and the table corrupted.',
      {
        hint:
          `Use RETAIN ${hours} HOURS or more. If no operation is running on this table and you accept losing time ` +
          'travel, run SET spark.databricks.delta.retentionDurationCheck.enabled = false first, in the same ' +
          'tributary sql invocation.',
      },
    );
  }
  const cutoff = now - retentionMs;
  const keep = await referencedFiles(root, snapshot, cutoff);
  const listing = await listDataFiles(root);
  const doomed = listing.files
    .filter((f) => !keep.has(f.path) && f.mtimeMs < cutoff)
    .sort((a, b) => a.path.localeCompare(b.path));
  const bytes = doomed.reduce((sum, f) => sum + f.size, 0);
  const result = {
    tableRoot: root,
    retentionMs,
    files: doomed.map((f) => f.path),
    bytes,
    directoriesScanned: listing.directories,
  };
  if (options.dryRun) return { ...result, dryRun: true, directoriesDeleted: 0 };

  const log = options.logToHistory ?? true;
  // Commits with only a commitInfo: they conflict with nothing and are moved past concurrent commits.
  const record = (request: CommitRequest) =>
    commitWithRetry(root, async () => ({ actions: [], request }), { checkWriteSupport: false });
  if (log) {
    await record({
      operation: 'VACUUM START',
      operationParameters: {
        retentionCheckEnabled: retentionCheck,
        defaultRetentionMillis: defaultRetentionMs,
        specifiedRetentionMillis: retentionMs,
      },
      operationMetrics: { numFilesToDelete: String(doomed.length), sizeOfDataToDelete: String(bytes) },
      isBlindAppend: true,
    });
  }
  const deleted: string[] = [];
  let directoriesDeleted = 0;
  let failure: unknown;
  try {
    for (const file of doomed) {
      try {
        await unlink(file.path);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      }
      deleted.push(file.path);
    }
    directoriesDeleted = await removeEmptyDirectories(root, deleted);
  } catch (error) {
    failure = error;
  }
  if (log) {
    await record({
      operation: 'VACUUM END',
      operationParameters: { status: failure === undefined ? 'COMPLETED' : 'FAILED' },
      operationMetrics: {
        numDeletedFiles: String(deleted.length),
        numVacuumedDirectories: String(directoriesDeleted),
      },
      isBlindAppend: true,
    });
  }
  if (failure !== undefined) {
    throw new TributaryError(
      'DELTA_CORRUPT',
      `VACUUM of ${root} failed after deleting ${deleted.length} files: ${messageOf(failure)}`,
      {
        cause: failure,
        retry: 'transient',
        hint: 'The table is intact (only unreferenced files were deleted); run VACUUM again.',
      },
    );
  }
  return { ...result, files: deleted, dryRun: false, directoriesDeleted };
}
