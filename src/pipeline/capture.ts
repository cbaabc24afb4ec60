/**
 * The capture task of a gateway: reads the source into sealed staging segments.
 *
 * Order of work in one pass: finish or restart an interrupted snapshot, snapshot tables that have none, then
 * stream the log from the saved position up to `until`. The gateway's position advances only inside the
 * manifest of a sealed segment, so a crash at any point resumes from the last durable segment and never
 * skips a change (invariant 2 in docs/architecture.md).
 */
import type { ChangeBatch, ChangeEvent } from '../core/change.js';
import type { SourceConnector } from '../core/ports.js';
import type { Position } from '../core/position.js';
import { type Row, type TableId, type TableSchema, tableKey } from '../core/table.js';
import type { DuckDb } from '../engine/duckdb.js';
import type { GatewayState, SegmentManifest, StagedOp } from '../staging/segment-format.js';
import { toStagedText } from '../staging/staged-value.js';
import type { SegmentDraft, StagedRow, StagingVolume } from '../staging/staging-volume.js';
import { faultPoint } from './fault-injection.js';
import type { Logger } from './logger.js';

export interface CaptureOptions {
  readonly source: SourceConnector;
  readonly volume: StagingVolume;
  readonly db: DuckDb;
  readonly tables: readonly TableSchema[];
  /** Rows per snapshot segment. */
  readonly snapshotChunkRows: number;
  /** A stream segment is sealed at the first transaction boundary after this many changes. */
  readonly segmentMaxChanges: number;
  /** Catch up to this position and stop; without it, follow the log until the signal aborts. */
  readonly until?: Position;
  readonly signal: AbortSignal;
  readonly log: Logger;
  /**
   * Re-reads one table's shape. Called when a streamed row has a column the known shape lacks (a column
   * added while capture was running), so that the new column's values are staged rather than dropped.
   */
  readonly refreshSchema?: (id: TableId) => Promise<TableSchema | undefined>;
}

export interface CaptureReport {
  readonly snapshotTables: readonly string[];
  readonly segments: readonly SegmentManifest[];
  readonly changes: number;
  readonly state: GatewayState;
}

export async function capture(options: CaptureOptions): Promise<CaptureReport> {
  const { volume, log } = options;
  let state = await volume.loadState();
  const segments: SegmentManifest[] = [];

  if (state.pendingSnapshot) {
    // Its consistent-read transaction died with the process; the rows staged so far cannot be completed
    // from the same point in time, so they are dropped (never applied) and the snapshot starts over.
    const stale: number[] = [];
    for (const seq of await volume.listSegments()) {
      const m = await volume.readManifest(seq);
      if (m.snapshot?.epoch === state.pendingSnapshot.epoch) stale.push(seq);
    }
    log.warn(`discarding ${stale.length} segment(s) of an interrupted snapshot; the snapshot restarts`);
    await volume.discard(stale);
    state = { ...(await volume.loadState()), seq: state.seq, snapshotEpoch: state.snapshotEpoch };
  }

  const missing = options.tables.filter((t) => state.snapshotPositions[tableKey(t.id)] === undefined);
  if (missing.length > 0) {
    log.info(`snapshot of ${missing.map((t) => tableKey(t.id)).join(', ')}`);
    state = await stageSnapshot(options, state, missing, segments);
  }

  let changes = 0;
  if (state.position !== null && (options.until === undefined || state.position < options.until)) {
    const result = await stageStream(options, state, segments);
    state = result.state;
    changes = result.changes;
  }
  return { snapshotTables: missing.map((t) => tableKey(t.id)), segments, changes, state };
}

async function stageSnapshot(
  options: CaptureOptions,
  initial: GatewayState,
  tables: readonly TableSchema[],
  segments: SegmentManifest[],
): Promise<GatewayState> {
  const epoch = initial.snapshotEpoch + 1;
  const keys = tables.map((t) => tableKey(t.id));
  const schemas = new Map(tables.map((t) => [tableKey(t.id), t]));
  let state: GatewayState = { ...initial, snapshotEpoch: epoch, pendingSnapshot: { epoch, tables: keys } };
  const started = new Set<string>();
  let held: ChangeBatch | undefined;

  // A batch is written only once the next one exists (or the snapshot ends), so the final segment can carry
  // the `last` mark that makes the whole snapshot applicable.
  const seal = async (batch: ChangeBatch, last: boolean) => {
    const id = batch.snapshotTable;
    const key = id ? tableKey(id) : undefined;
    const table = key ? schemas.get(key) : undefined;
    if (!key || !table) throw new Error('snapshot batch without its table');
    const commitUs = BigInt(batch.commitTime.getTime()) * 1000n;
    const rows = batch.events.map(
      (e, ord): StagedRow => ({ ord, op: 'r', commitUs, row: (e as { after: Row }).after }),
    );
    const tablesInSegment = new Map([[key, { schema: table, reset: !started.has(key), rows }]]);
    started.add(key);
    const seq = state.seq + 1;
    if (last) {
      const snapshotPositions = { ...state.snapshotPositions };
      for (const k of keys) snapshotPositions[k] = batch.position;
      state = {
        ...state,
        seq,
        pendingSnapshot: null,
        snapshotPositions,
        position: state.position ?? batch.position,
      };
    } else {
      state = { ...state, seq };
    }
    const draft: SegmentDraft = {
      seq,
      origin: 'snapshot',
      snapshot: { epoch, last },
      startPosition: batch.position,
      endPosition: batch.position,
      firstCommitTime: batch.commitTime,
      lastCommitTime: batch.commitTime,
      tables: tablesInSegment,
      state,
    };
    segments.push(await options.volume.writeSegment(options.db, draft));
    await faultPoint('after-snapshot-segment');
  };

  for await (const batch of options.source.snapshot(tables, {
    chunkRows: options.snapshotChunkRows,
    signal: options.signal,
  })) {
    if (held) await seal(held, false);
    held = batch;
  }
  if (held) await seal(held, true);
  return state;
}

interface StreamDraft {
  tables: Map<string, { schema: TableSchema; reset: boolean; rows: StagedRow[] }>;
  ord: number;
  changes: number;
  startPosition: Position;
  endPosition: Position;
  firstCommitTime: Date | null;
  lastCommitTime: Date | null;
}

async function stageStream(
  options: CaptureOptions,
  initial: GatewayState,
  segments: SegmentManifest[],
): Promise<{ state: GatewayState; changes: number }> {
  const schemas = new Map(options.tables.map((t) => [tableKey(t.id), t]));
  const ignored = new Map<string, Set<string>>();
  let state = initial;
  let total = 0;
  const from = initial.position as Position;
  const fresh = (start: Position): StreamDraft => ({
    tables: new Map(),
    ord: 0,
    changes: 0,
    startPosition: start,
    endPosition: start,
    firstCommitTime: null,
    lastCommitTime: null,
  });
  let draft = fresh(from);

  const seal = async () => {
    if (draft.endPosition === draft.startPosition) return;
    const seq = state.seq + 1;
    state = { ...state, seq, position: draft.endPosition };
    segments.push(
      await options.volume.writeSegment(options.db, {
        seq,
        origin: 'stream',
        snapshot: null,
        startPosition: draft.startPosition,
        endPosition: draft.endPosition,
        firstCommitTime: draft.firstCommitTime,
        lastCommitTime: draft.lastCommitTime,
        tables: draft.tables,
        state,
      }),
    );
    await faultPoint('after-stream-segment');
    total += draft.changes;
    draft = fresh(draft.endPosition);
  };

  const streamOptions = {
    tables: options.tables,
    signal: options.signal,
    ...(options.until ? { until: options.until } : {}),
  };
  for await (const batch of options.source.stream(from, streamOptions)) {
    const commitUs = BigInt(batch.commitTime.getTime()) * 1000n;
    for (const event of batch.events) {
      if (event.kind === 'schema') continue;
      const key = tableKey(event.table);
      let schema = schemas.get(key);
      if (!schema) continue;
      const ignoredHere = ignored.get(key) ?? new Set<string>();
      const unknown = options.refreshSchema ? unknownColumns(event, schema, ignoredHere) : [];
      if (options.refreshSchema && unknown.length > 0) {
        const fresh = (await options.refreshSchema(event.table)) ?? schema;
        options.log.info(
          `${key}: column(s) ${unknown.join(', ')} not in the known shape; table shape re-read`,
        );
        schema = fresh;
        schemas.set(key, fresh);
        const entry = draft.tables.get(key);
        if (entry) entry.schema = fresh;
        // Whatever the fresh shape still lacks is left out on purpose (exclude_columns) or gone again.
        for (const n of unknownColumns(event, fresh, ignoredHere)) ignoredHere.add(n);
        ignored.set(key, ignoredHere);
      }
      // Already contained in this table's snapshot.
      const snapshotAt = state.snapshotPositions[key];
      if (snapshotAt !== undefined && batch.position <= snapshotAt) continue;
      let entry = draft.tables.get(key);
      if (!entry) {
        entry = { schema, reset: false, rows: [] };
        draft.tables.set(key, entry);
      }
      for (const [op, row] of stagedOps(event, schema)) {
        entry.rows.push({ ord: draft.ord++, op, commitUs, row });
      }
      draft.changes++;
    }
    draft.endPosition = batch.position;
    draft.firstCommitTime ??= batch.commitTime;
    draft.lastCommitTime = batch.commitTime;
    if (batch.complete && draft.changes >= options.segmentMaxChanges) await seal();
  }
  await seal();
  return { state, changes: total };
}

/** Names in the row that are neither in the table's shape nor known to be left out (excluded columns). */
function unknownColumns(
  event: Exclude<ChangeEvent, { kind: 'schema' }>,
  schema: TableSchema,
  ignored: ReadonlySet<string>,
): string[] {
  const row = event.kind === 'delete' ? event.before : event.after;
  return Object.keys(row).filter((n) => !ignored.has(n) && !schema.columns.some((c) => c.name === n));
}

/** An update that changes the primary key is a delete of the old key and an insert of the new one. */
function stagedOps(
  event: Exclude<ChangeEvent, { kind: 'schema' }>,
  schema: TableSchema,
): Array<[StagedOp, Row]> {
  switch (event.kind) {
    case 'read':
      return [['r', event.after]];
    case 'insert':
      return [['c', event.after]];
    case 'delete':
      return [['d', event.before]];
    case 'update': {
      const before = event.before;
      const keyChanged =
        before !== null &&
        schema.primaryKey.some((k) => {
          const type = schema.columns.find((c) => c.name === k)?.type ?? 'string';
          return toStagedText(before[k], type) !== toStagedText(event.after[k], type);
        });
      return keyChanged && before
        ? [
            ['d', before],
            ['c', event.after],
          ]
        : [['u', event.after]];
    }
  }
}
