/**
 * The on-disk format of the staging volume. A gateway owns `<volume>/<gateway>/`; inside it every sealed
 * segment is a directory `seg-<seq>/` holding one Parquet file per source table and `_manifest.json`.
 *
 * A segment directory appears only by an atomic rename of a fully written, fsynced temporary directory,
 * so a reader never sees half a segment. Each manifest carries the gateway's cumulative state after it,
 * which makes the newest manifest the gateway's checkpoint: there is no second bookkeeping file to keep in
 * step.
 *
 * Staged Parquet columns: `_tributary_ord` (BIGINT, order within the segment), `_tributary_op`
 * (`r` snapshot read, `c` insert, `u` update, `d` delete), `_tributary_commit_us` (BIGINT, source commit time
 * in µs since the epoch), then every source column as text (see staged-value.ts).
 */
import type { Position } from '../core/position.js';
import type { TableSchema } from '../core/table.js';

export const MANIFEST_FILE = '_manifest.json';
export const SEGMENT_FORMAT = 1;
export const ORD_COLUMN = '_tributary_ord';
export const OP_COLUMN = '_tributary_op';
export const COMMIT_US_COLUMN = '_tributary_commit_us';
/**
 * A list of the row's column names whose values were not sent and must keep what the target holds (see
 * `unchanged` on update events). Present only in files of tables whose manifest entry says `partial`.
 */
export const UNCHANGED_COLUMN = '_tributary_unchanged';

export type StagedOp = 'r' | 'c' | 'u' | 'd';

export interface GatewayState {
  /** Sequence number of the newest sealed segment (0 before the first). */
  readonly seq: number;
  /** Where streaming resumes; null until the first snapshot has been staged. */
  readonly position: Position | null;
  /**
   * Per source table (`schema.table`), the position its snapshot was taken at. Stream changes at or before
   * it are already in the snapshot and are skipped for that table.
   */
  readonly snapshotPositions: Readonly<Record<string, Position>>;
  /** A snapshot being staged: its segments are not applied until the one marked `last` is sealed. */
  readonly pendingSnapshot: PendingSnapshot | null;
  /** Epoch counter for snapshots, so a restarted snapshot's segments are told apart from a crashed one's. */
  readonly snapshotEpoch: number;
  /**
   * Per source table, the newest segment that holds an entry for it (`last`), for every segment from `from`
   * on. Apply reads no manifest of a table whose newest segment it has applied, so a quiet table costs nothing
   * however many segments are retained. Volumes staged before it existed start it at their next segment
   * (`from`); a table without an entry may have one in a segment before `from` (see {@link newestSegmentOf}).
   */
  readonly tableSeqs?: { readonly from: number; readonly last: Readonly<Record<string, number>> };
}

/** `state`'s counters after segment `seq`, holding entries for `tables`, is sealed. */
export function afterSegment(
  state: GatewayState,
  seq: number,
  tables: Iterable<string>,
): Pick<GatewayState, 'seq' | 'tableSeqs'> {
  const last = { ...(state.tableSeqs?.last ?? {}) };
  for (const key of tables) last[key] = seq;
  return { seq, tableSeqs: { from: state.tableSeqs?.from ?? seq, last } };
}

/**
 * The newest segment that may hold an entry for the table: exact when the state indexes every segment, else
 * an upper bound; undefined when the state has no index (every segment must be read).
 */
export function newestSegmentOf(state: GatewayState, sourceKey: string): number | undefined {
  const index = state.tableSeqs;
  if (!index) return state.seq === 0 ? 0 : undefined;
  return index.last[sourceKey] ?? index.from - 1;
}

/**
 * Progress of a snapshot, so a crash resumes after the last staged chunk instead of starting over. Rows are
 * read in primary-key order; a resumed read continues after `lastKey`. Changes that happen meanwhile are not
 * lost: streaming for these tables starts at `position`, taken before the first row was read, and replaying
 * full row images from there converges every row to the source's state.
 */
export interface PendingSnapshot {
  readonly epoch: number;
  /** Source table keys, in the order they are read. */
  readonly tables: readonly string[];
  /** Where streaming starts: the earliest snapshot point staged so far; null until the first chunk is staged. */
  readonly position: Position | null;
  /**
   * Each table's own snapshot point, from its first staged chunk: tables read in parallel are read in
   * transactions of their own, each at its own point. Absent in snapshots staged before it existed, whose
   * tables all have `position`.
   */
  readonly positions?: Readonly<Record<string, Position>>;
  /** Per table: the staged text of the key columns of the last staged row; absent when not started. */
  readonly lastKeys: Readonly<Record<string, Readonly<Record<string, string | null>>>>;
  /** Tables whose every row is staged. */
  readonly done: readonly string[];
  /** Rows staged so far, over all tables. */
  readonly rows: number;
  /** A full refresh: the snapshot replaces tables that had one (for progress and pipeline_events). */
  readonly refresh?: boolean;
}

export const INITIAL_GATEWAY_STATE: GatewayState = {
  seq: 0,
  position: null,
  snapshotPositions: {},
  pendingSnapshot: null,
  snapshotEpoch: 0,
};

export interface StagedTable {
  /** File name inside the segment directory (the first, when there are several). */
  readonly file: string;
  /** Every file of the table, in order, when a large transaction needed several; absent when one. */
  readonly files?: readonly string[];
  readonly rows: number;
  /** The table's shape as these rows were captured. */
  readonly schema: TableSchema;
  /**
   * True for the first snapshot segment of a table, and for a TRUNCATE: apply replaces the table's contents
   * from here (a history table closes its open rows instead).
   */
  readonly reset: boolean;
  /**
   * With `reset`: the source commit time of the reset (the TRUNCATE's transaction, or the snapshot's time), ISO
   * 8601. Absent in segments staged before it was recorded; apply then takes `firstCommitTime`.
   */
  readonly resetCommitTime?: string;
  /** True when some rows leave columns unchanged; the file then has the {@link UNCHANGED_COLUMN} column. */
  readonly partial?: boolean;
}

export interface SegmentManifest {
  readonly format: typeof SEGMENT_FORMAT;
  readonly seq: number;
  readonly gateway: string;
  readonly origin: 'snapshot' | 'stream';
  /** Set on snapshot segments. `last` marks the segment that completes the snapshot. */
  readonly snapshot: { readonly epoch: number; readonly last: boolean } | null;
  readonly startPosition: Position | null;
  readonly endPosition: Position;
  readonly firstCommitTime: string | null;
  readonly lastCommitTime: string | null;
  readonly createdAt: string;
  /** By source table key `schema.table`. */
  readonly tables: Readonly<Record<string, StagedTable>>;
  /** The gateway's state once this segment is sealed. */
  readonly state: GatewayState;
}

export function segmentDirName(seq: number): string {
  return `seg-${String(seq).padStart(12, '0')}`;
}

export function parseSegmentDirName(name: string): number | undefined {
  const m = /^seg-(\d{12})$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

export function stagedFileName(tableKey: string): string {
  return `${encodeURIComponent(tableKey)}.parquet`;
}

/** One of several files of a table in a segment (a transaction too large to hold in memory). */
export function stagedPartFileName(tableKey: string, part: number): string {
  return `${encodeURIComponent(tableKey)}.part-${String(part).padStart(6, '0')}.parquet`;
}
