/**
 * What the operations read from `_delta_log` beyond a snapshot: each commit's `commitInfo` and timestamp (the
 * history, and VACUUM's retention window). Listing and parsing are `log-files.ts`'s.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { CommitInfo, RawAction } from '../actions.js';
import { listLogFiles, parseLogText, readFirstLine } from '../log-files.js';

export interface LogCommit {
  readonly version: number;
  /** Absolute path of `_delta_log/<version>.json`. */
  readonly file: string;
}

/** The JSON commits still present in the log, oldest first (older ones may have been cleaned up). */
export async function listCommits(tableRoot: string): Promise<LogCommit[]> {
  const listing = await listLogFiles(path.resolve(tableRoot));
  return [...listing.commits.entries()]
    .map(([version, name]) => ({ version, file: path.join(listing.logDir, name) }))
    .sort((a, b) => a.version - b.version);
}

/**
 * The `commitInfo` of a commit, or undefined. Writers put it on the first line (and must with in-commit
 * timestamps); for old writers that did not, the whole commit is read.
 */
export async function readCommitInfo(file: string): Promise<CommitInfo | undefined> {
  const line = await readFirstLine(file);
  if (line === undefined) return undefined;
  try {
    const info = (JSON.parse(line) as RawAction).commitInfo;
    if (typeof info === 'object' && info !== null) return info as CommitInfo;
  } catch {
    // Not JSON: the full parse below names the problem.
  }
  for (const action of parseLogText(await readFile(file, 'utf8'), file)) {
    if (typeof action.commitInfo === 'object' && action.commitInfo !== null)
      return action.commitInfo as CommitInfo;
  }
  return undefined;
}

/**
 * Commit timestamps (ms) as Delta defines them: `inCommitTimestamp` when the commit has one, else the commit
 * file's modification time; then made strictly increasing (each at least 1 ms after the previous), as Spark does,
 * because file times can go backwards after a copy. `infos` may carry already-read commitInfos (same order).
 */
export async function commitTimestamps(
  commits: readonly LogCommit[],
  infos?: readonly (CommitInfo | undefined)[],
): Promise<number[]> {
  const raw = await Promise.all(
    commits.map(async (c, i) => {
      const info = infos ? infos[i] : await readCommitInfo(c.file);
      if (info && typeof info.inCommitTimestamp === 'number') return info.inCommitTimestamp;
      return (await stat(c.file)).mtimeMs;
    }),
  );
  let previous = Number.NEGATIVE_INFINITY;
  return raw.map((t) => {
    const ts = Math.max(Math.floor(t), previous + 1);
    previous = ts;
    return ts;
  });
}
