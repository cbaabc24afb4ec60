/**
 * The capture task of a gateway: reads the source into sealed staging segments.
 *
 * Order of work in one pass: resume an interrupted snapshot, snapshot tables that have none, then
 * stream the log from the saved position up to `until`. The gateway's position advances only inside the
 * manifest of a sealed segment, so a crash at any point resumes from the last durable segment and never
 * skips a change (invariant 2 in docs/architecture.md).
 */
import type { ChangeBatch, ChangeEvent } from '../core/change.js';
import { TributaryError } from '../core/errors.js';
import type { SourceConnector } from '../core/ports.js';
import type { Position } from '../core/position.js';
import { type Row, type TableId, type TableSchema, tableKey } from '../core/table.js';
import type { DuckDb } from '../engine/duckdb.js';
import {
  afterSegment,
  type GatewayState,
  type SegmentManifest,
  type StagedOp,
} from '../staging/segment-format.js';
import { toStagedText } from '../staging/staged-value.js';
import type { SpilledPart, StagedRow, StagingVolume } from '../staging/staging-volume.js';
import { faultPoint } from './fault-injection.js';
import type { Logger } from './logger.js';
import { ProgressMeter } from './progress.js';

export interface CaptureOptions {
  readonly source: SourceConnector;
  readonly volume: StagingVolume;
  readonly db: DuckDb;
  readonly tables: readonly TableSchema[];
  /** Rows per snapshot segment. */
  readonly snapshotChunkRows: number;
  /** At most this many tables are read at once by a snapshot (default 1); see SnapshotOptions.parallelTables. */
  readonly snapshotParallelTables?: number;
  /** A stream segment is sealed at the first transaction boundary after this many changes. */
  readonly segmentMaxChanges: number;
  /**
   * A stretch of log without captured changes is sealed (so the source may release it) at most this often
   * per staging volume; default 60 s.
   */
  readonly idleSealMs?: number;
  /** Catch up to this position and stop; without it, follow the log until the signal aborts. */
  readonly until?: Position;
  readonly signal: AbortSignal;
  /** Lines, and the progress of snapshots and catch-ups ({@link Logger.progress}). */
  readonly log: Logger;
  /** The gateway's name, for progress messages. */
  readonly name?: string;
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
  const { volume } = options;
  let state = await volume.loadState();
  const segments: SegmentManifest[] = [];

  // A full refresh forgets the tables' snapshot positions, so they are snapshotted again like new tables;
  // their bronze tables stay as they are until the new snapshot replaces them in one commit. A refresh whose
  // snapshot is already under way (a crash interrupted it) is resumed rather than started over.
  const requested = await volume.refreshRequests();
  const refresh = options.tables
    .map((t) => tableKey(t.id))
    .filter(
      (k) =>
        requested.includes('*') ||
        requested.includes(k) ||
        requested.includes(`${k.slice(0, k.indexOf('.'))}.*`),
    )
    .filter((k) => !(state.pendingSnapshot?.tables.includes(k) ?? false));
  if (refresh.length > 0) {
    const positions = { ...state.snapshotPositions };
    for (const k of refresh) delete positions[k];
    // The log at the saved position is gone: streaming restarts where the new snapshot is taken.
    const restart = await volume.refreshRestartsLog();
    state = { ...state, snapshotPositions: positions, ...(restart ? { position: null } : {}) };
    options.log.info(
      `full refresh of ${refresh.join(', ')}: a new snapshot replaces each bronze table in one commit once it is complete`,
    );
  }

  const missingNow = () =>
    options.tables.filter((t) => state.snapshotPositions[tableKey(t.id)] === undefined);
  const missing = missingNow();
  // An interrupted snapshot is finished first; tables added to the pipeline since then get their own.
  const refreshed = new Set(refresh);
  if (state.pendingSnapshot) state = await stageSnapshot(options, state, missingNow(), segments, refreshed);
  if (missingNow().length > 0) state = await stageSnapshot(options, state, missingNow(), segments, refreshed);
  if (requested.length > 0) await volume.refreshDone(requested);

  // Tables snapshotted in parallel each hold the source at their own point. The stream starts at the earliest;
  // reading on to the latest in the same round lets the tables agree again before this round's apply (the
  // consistent cut), instead of showing, until the next round, a table ahead of another.
  let until = options.until;
  if (until !== undefined) {
    for (const t of missing) {
      const at = state.snapshotPositions[tableKey(t.id)];
      if (at !== undefined && at > until) until = at;
    }
  }
  let changes = 0;
  if (state.position !== null && (until === undefined || state.position < until)) {
    const result = await stageStream({ ...options, ...(until ? { until } : {}) }, state, segments);
    state = result.state;
    changes = result.changes;
  }
  return { snapshotTables: missing.map((t) => tableKey(t.id)), segments, changes, state };
}

/** The staged text of a row's key columns: how a resume point is stored in the manifest. */
function keyText(row: Row, table: TableSchema): Record<string, string | null> {
  const key: Record<string, string | null> = {};
  for (const k of table.primaryKey) {
    key[k] = toStagedText(row[k], table.columns.find((c) => c.name === k)?.type ?? 'string');
  }
  return key;
}

/**
 * Stages a snapshot, or resumes one a crash interrupted. Chunks are sealed one by one, each carrying the
 * progress so far; the last one (marked `last`) makes the snapshot's segments applicable and records where
 * streaming starts for its tables.
 */
async function stageSnapshot(
  options: CaptureOptions,
  initial: GatewayState,
  missing: readonly TableSchema[],
  segments: SegmentManifest[],
  refreshed: ReadonlySet<string>,
): Promise<GatewayState> {
  const { log } = options;
  const known = new Map(options.tables.map((t) => [tableKey(t.id), t]));
  let pending = initial.pendingSnapshot;
  if (pending) {
    const left = pending.tables.filter((k) => !pending?.done.includes(k));
    log.info(`resuming the snapshot of ${left.join(', ')} (${pending.rows} rows already staged)`);
  } else {
    pending = {
      epoch: initial.snapshotEpoch + 1,
      tables: missing.map((t) => tableKey(t.id)),
      position: null,
      lastKeys: {},
      done: [],
      rows: 0,
      ...(missing.some((t) => refreshed.has(tableKey(t.id))) ? { refresh: true } : {}),
    };
    log.info(`${pending.refresh ? 'full refresh' : 'snapshot'} of ${pending.tables.join(', ')}`);
  }
  const epoch = pending.epoch;
  let state: GatewayState = { ...initial, snapshotEpoch: epoch, pendingSnapshot: pending };
  const todo = pending.tables
    .filter((k) => !pending?.done.includes(k))
    .map((k) => {
      const table = known.get(k);
      if (!table) {
        throw new TributaryError(
          'SOURCE_TABLE_NOT_FOUND',
          `The interrupted snapshot includes ${k}, which the pipeline no longer captures.`,
          {
            hint: 'Add the table back to the pipeline, or remove the gateway directory under the staging volume to start over.',
          },
        );
      }
      return table;
    });
  const afterKeys = new Map(Object.entries(pending.lastKeys));
  const estimates = await options.source
    .estimateRows(
      pending.tables.map((k) => known.get(k)?.id).filter((id) => id !== undefined),
      options.signal,
    )
    .catch(() => new Map<string, number>());
  const meter = new ProgressMeter(
    pending.refresh ? 'refresh' : 'snapshot',
    pending.tables.join(', '),
    'rows',
    pending.rows,
    estimates.size > 0 ? [...estimates.values()].reduce((a, b) => a + b, 0) : undefined,
  );

  // Each batch is sealed as it arrives, so only one chunk's rows are held at a time. The final segment
  // carries the `last` mark: the last table's final batch (sources end every table with one, possibly empty).
  // Empty batches are sealed only when they matter: the first of a table (its bronze table must exist even if
  // empty) and the very last.
  const seal = async (batch: ChangeBatch, last: boolean) => {
    const id = batch.snapshotTable;
    const key = id ? tableKey(id) : undefined;
    const table = key ? known.get(key) : undefined;
    if (!key || !table || !pending) throw new TributaryError('INTERNAL', 'snapshot batch without its table');
    const reset = pending.lastKeys[key] === undefined && !pending.done.includes(key);
    const commitUs = BigInt(batch.commitTime.getTime()) * 1000n;
    const rows = batch.events.map(
      (e, ord): StagedRow => ({ ord, op: 'r', commitUs, row: (e as { after: Row }).after }),
    );
    const lastRow = rows.at(-1)?.row;
    // Each table streams from its own snapshot point (tables read in parallel have one each); a resumed table
    // keeps the point of its first chunk, so changes to rows staged before the crash are streamed. A snapshot
    // staged before per-table points existed has one point for the tables it had begun.
    const begun = pending.lastKeys[key] !== undefined || pending.done.includes(key);
    const tablePosition =
      pending.positions?.[key] ?? (begun && pending.position !== null ? pending.position : batch.position);
    pending = {
      ...pending,
      position:
        pending.position === null || batch.position < pending.position ? batch.position : pending.position,
      positions: { ...pending.positions, [key]: tablePosition },
      lastKeys: lastRow
        ? { ...pending.lastKeys, [key]: batch.resumeKey ?? keyText(lastRow, table) }
        : pending.lastKeys,
      done: batch.snapshotTableComplete ? [...pending.done, key] : pending.done,
      rows: pending.rows + rows.length,
    };
    if (!last && !reset && rows.length === 0) {
      state = { ...state, pendingSnapshot: pending };
      return;
    }
    const seq = state.seq + 1;
    const startAt = tablePosition;
    const sealed = afterSegment(state, seq, rows.length > 0 || reset ? [key] : []);
    if (last) {
      const snapshotPositions = { ...state.snapshotPositions };
      // Snapshots staged before per-table points existed have one point for all their tables.
      for (const k of pending.tables)
        snapshotPositions[k] = pending.positions?.[k] ?? (pending.position as Position);
      state = {
        ...state,
        ...sealed,
        pendingSnapshot: null,
        snapshotPositions,
        // Streaming starts at the earliest point; each table skips what its own snapshot holds.
        position: state.position ?? (pending.position as Position),
      };
    } else {
      state = { ...state, ...sealed, pendingSnapshot: pending };
    }
    const tablesInSegment = new Map<
      string,
      { schema: TableSchema; reset: boolean; resetCommitTime?: Date; rows: StagedRow[] }
    >();
    if (rows.length > 0 || reset)
      tablesInSegment.set(key, {
        schema: table,
        reset,
        ...(reset ? { resetCommitTime: batch.commitTime } : {}),
        rows,
      });
    segments.push(
      await options.volume.writeSegment(options.db, {
        seq,
        origin: 'snapshot',
        snapshot: { epoch, last },
        startPosition: startAt,
        endPosition: startAt,
        firstCommitTime: batch.commitTime,
        lastCommitTime: batch.commitTime,
        tables: tablesInSegment,
        state,
      }),
    );
    log.progress?.(meter.at(pending.rows, last));
    await faultPoint('after-snapshot-segment');
  };

  const reading = options.source.snapshot(todo, {
    chunkRows: options.snapshotChunkRows,
    ...(options.snapshotParallelTables ? { parallelTables: options.snapshotParallelTables } : {}),
    signal: options.signal,
    restartsLog: state.position === null,
    ...(afterKeys.size > 0 ? { afterKeys } : {}),
  });
  const lastTable = todo.at(-1);
  // Tables read in parallel finish in any order: the snapshot is complete with the last of them.
  const completed = new Set<string>();
  let sealedLast = false;
  for await (const batch of reading) {
    if (sealedLast)
      throw new TributaryError('INTERNAL', 'the source read on after the last table was complete');
    if (batch.snapshotTableComplete === true && batch.snapshotTable !== undefined)
      completed.add(tableKey(batch.snapshotTable));
    sealedLast = todo.length > 0 && completed.size === todo.length;
    await seal(batch, sealedLast);
  }
  if (!sealedLast) {
    // Nothing left to read (the crash came after the last chunk): a final empty batch completes the snapshot.
    const tail = lastTable ?? known.get(pending.tables.at(-1) ?? '');
    await seal(
      {
        origin: 'snapshot',
        position: pending.position ?? (await options.source.readHead(options.signal)),
        commitTime: new Date(),
        complete: true,
        events: [],
        ...(tail ? { snapshotTable: tail.id } : {}),
        snapshotTableComplete: true,
      },
      true,
    );
  }
  return state;
}

/** Catch-up progress goes to the logger at most this often (it draws or logs far less often). */
const PROGRESS_REPORT_MS = 250;

/** How often a segment may be sealed for a stretch of log without captured changes. */
const IDLE_SEAL_INTERVAL_MS = 60_000;
/** By staging directory: when such a segment was last sealed by this process. */
const lastIdleSeal = new Map<string, number>();

interface StreamDraft {
  tables: Map<
    string,
    {
      schema: TableSchema;
      reset: boolean;
      resetCommitTime?: Date;
      rows: StagedRow[];
      spilled?: SpilledPart[];
    }
  >;
  /** Rows held in memory (not yet spilled). */
  held: number;
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
    held: 0,
    ord: 0,
    changes: 0,
    startPosition: start,
    endPosition: start,
    firstCommitTime: null,
    lastCommitTime: null,
  });
  let draft = fresh(from);
  // How far along the catch-up is: changes staged, and the share of the log up to `until` read.
  const meter = new ProgressMeter('catch-up', options.name ?? 'the source', 'changes');
  const logToRead = options.until ? options.source.logDistance?.(from, options.until) : undefined;
  let reportedAt = 0;
  const report = (position: Position, finished: boolean) => {
    if (!options.log.progress) return;
    const now = Date.now();
    if (!finished && now - reportedAt < PROGRESS_REPORT_MS) return;
    reportedAt = now;
    const read = logToRead ? options.source.logDistance?.(from, position) : undefined;
    options.log.progress(
      meter.at(
        total + draft.changes,
        finished,
        read === undefined || !logToRead ? undefined : read / logToRead,
      ),
    );
  };

  const spill = async () => {
    const seq = state.seq + 1;
    for (const [key, entry] of draft.tables) {
      if (entry.rows.length === 0) continue;
      entry.spilled ??= [];
      entry.spilled.push(
        await options.volume.spill(options.db, seq, key, entry.spilled.length + 1, entry.schema, entry.rows),
      );
      entry.rows = [];
    }
    draft.held = 0;
  };

  const seal = async () => {
    if (draft.endPosition === draft.startPosition) return;
    // A change-free stretch of log (heartbeats, other tables' traffic) is worth a segment only now and then:
    // it lets a source that holds its log for us (a PostgreSQL slot) release it, at a bounded cost.
    const now = Date.now();
    const idleSealMs = options.idleSealMs ?? IDLE_SEAL_INTERVAL_MS;
    if (draft.changes === 0 && now - (lastIdleSeal.get(options.volume.dir) ?? -Infinity) < idleSealMs) return;
    if (draft.changes === 0) lastIdleSeal.set(options.volume.dir, now);
    const seq = state.seq + 1;
    state = { ...state, ...afterSegment(state, seq, draft.tables.keys()), position: draft.endPosition };
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
    options.source.acknowledge(draft.endPosition);
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
    // A part of a transaction carries the previous commit as its position; whether a snapshot already
    // contains the transaction depends on where it commits.
    const committedAt = batch.commitPosition ?? batch.position;
    for (const event of batch.events) {
      if (event.kind === 'schema') continue;
      const key = tableKey(event.table);
      let schema = schemas.get(key);
      if (!schema) continue;
      if (event.kind === 'truncate') {
        const snapshotAt = state.snapshotPositions[key];
        if (snapshotAt !== undefined && committedAt <= snapshotAt) continue;
        // Changes staged before the TRUNCATE must not share a segment entry with the reset that empties the
        // table, so they are sealed first; the reset entry then collects the changes that follow.
        if (draft.tables.has(key)) await seal();
        draft.tables.set(key, { schema, reset: true, resetCommitTime: batch.commitTime, rows: [] });
        draft.changes++;
        options.log.info(`${key}: TRUNCATE captured; the bronze table is emptied at this point`);
        continue;
      }
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
      if (snapshotAt !== undefined && committedAt <= snapshotAt) continue;
      let entry = draft.tables.get(key);
      if (!entry) {
        entry = { schema, reset: false, rows: [] };
        draft.tables.set(key, entry);
      }
      const unchanged = event.kind === 'update' ? event.unchanged : undefined;
      for (const [op, row] of stagedOps(event, schema)) {
        draft.held++;
        entry.rows.push({
          ord: draft.ord++,
          op,
          commitUs,
          row,
          ...(op === 'u' && unchanged && unchanged.length > 0 ? { unchanged } : {}),
        });
      }
      draft.changes++;
    }
    draft.endPosition = batch.position;
    draft.firstCommitTime ??= batch.commitTime;
    draft.lastCommitTime = batch.commitTime;
    // A transaction cannot be split, so one larger than a segment is written ahead, part by part, into the
    // segment it will be sealed in: memory holds one part, never the transaction.
    if (!batch.complete && draft.held >= options.segmentMaxChanges) await spill();
    // Reaching `until` seals here, while the source's stream is still open, so that its acknowledgement can
    // reach the server (a PostgreSQL slot) before the stream closes.
    const reached = options.until !== undefined && batch.position >= options.until;
    if (batch.complete && (draft.changes >= options.segmentMaxChanges || reached)) await seal();
    report(batch.position, false);
  }
  await seal();
  report(state.position ?? from, true);
  return { state, changes: total };
}

type RowEvent = Exclude<ChangeEvent, { kind: 'schema' } | { kind: 'truncate' }>;

/** Each shape's column names, for the check every streamed row goes through. */
const columnNames = new WeakMap<TableSchema, ReadonlySet<string>>();

/** Names in the row that are neither in the table's shape nor known to be left out (excluded columns). */
function unknownColumns(event: RowEvent, schema: TableSchema, ignored: ReadonlySet<string>): string[] {
  const row = event.kind === 'delete' ? event.before : event.after;
  let names = columnNames.get(schema);
  if (!names) {
    names = new Set(schema.columns.map((c) => c.name));
    columnNames.set(schema, names);
  }
  const unknown: string[] = [];
  for (const n in row) if (!names.has(n) && !ignored.has(n)) unknown.push(n);
  return unknown;
}

/** An update that changes the primary key is a delete of the old key and an insert of the new one. */
function stagedOps(event: RowEvent, schema: TableSchema): Array<[StagedOp, Row]> {
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
