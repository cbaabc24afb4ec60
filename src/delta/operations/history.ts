/**
 * `DESCRIBE HISTORY`: one entry per commit still in the log, newest first, with the columns Databricks shows.
 * Everything but `version` and `timestamp` comes from the commit's `commitInfo`; a commit without one (some old
 * or third-party writers) has nulls there.
 */
import type { CommitInfo } from '../actions.js';
import { commitTimestamps, listCommits, readCommitInfo } from './log.js';

export interface HistoryEntry {
  readonly version: number;
  /** Commit timestamp in ms: `inCommitTimestamp`, else the commit file's time (made increasing, as Spark does). */
  readonly timestamp: number;
  readonly userId: string | null;
  readonly userName: string | null;
  readonly operation: string | null;
  /** Values as written: Spark writes every parameter as a string. */
  readonly operationParameters: Record<string, unknown> | null;
  readonly job: Record<string, unknown> | null;
  readonly notebook: Record<string, unknown> | null;
  readonly clusterId: string | null;
  readonly readVersion: number | null;
  readonly isolationLevel: string | null;
  readonly isBlindAppend: boolean | null;
  readonly operationMetrics: Record<string, unknown> | null;
  readonly userMetadata: string | null;
  readonly engineInfo: string | null;
}

export interface HistoryOptions {
  /** Only the newest `limit` commits. */
  limit?: number;
}

const str = (v: unknown): string | null => (typeof v === 'string' ? v : null);
const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const bool = (v: unknown): boolean | null => (typeof v === 'boolean' ? v : null);
const obj = (v: unknown): Record<string, unknown> | null =>
  typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;

/** The history of the table at `tableRoot`, newest first. */
export async function tableHistory(tableRoot: string, options: HistoryOptions = {}): Promise<HistoryEntry[]> {
  let commits = await listCommits(tableRoot);
  if (options.limit !== undefined) commits = commits.slice(Math.max(0, commits.length - options.limit));
  const infos = await Promise.all(commits.map((c) => readCommitInfo(c.file)));
  const timestamps = await commitTimestamps(commits, infos);
  const entries = commits.map((c, i) => entry(c.version, timestamps[i] as number, infos[i]));
  return entries.reverse();
}

function entry(version: number, timestamp: number, info: CommitInfo | undefined): HistoryEntry {
  const i: Record<string, unknown> = info ?? {};
  const readVersion = num(i['readVersion']);
  return {
    version,
    timestamp,
    userId: str(i['userId']),
    userName: str(i['userName']),
    operation: str(i['operation']),
    operationParameters: obj(i['operationParameters']),
    job: obj(i['job']),
    notebook: obj(i['notebook']),
    clusterId: str(i['clusterId']),
    // Spark writes -1 for "no read" in some versions; Databricks shows null then.
    readVersion: readVersion !== null && readVersion >= 0 ? readVersion : null,
    isolationLevel: str(i['isolationLevel']),
    isBlindAppend: bool(i['isBlindAppend']),
    operationMetrics: obj(i['operationMetrics']),
    userMetadata: str(i['userMetadata']),
    engineInfo: str(i['engineInfo']),
  };
}
