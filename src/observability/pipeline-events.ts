/**
 * `system.lakeflow.pipeline_events`: what each pipeline did, one row per operation, as Lakeflow's event log
 * gives the checklist's monitoring queries. Operations are a round (`update`), a table's apply in a round
 * (`flow_progress`), a schema change reaching a bronze table (`schema_change`), a snapshot or a full refresh
 * (`snapshot`, `refresh`), and a long catch-up (`catch_up`).
 *
 * `state` is the operation's: RUNNING while it runs, then COMPLETED, FAILED or CANCELED. A RUNNING row is
 * replaced by its outcome (the same `event_id`, in the commit that adds the outcome), so the finished history
 * holds outcomes only and the checklist's success rate (COMPLETED rows / all rows over 7 days) is the share of
 * operations that succeeded, with the ones running right now counted as not (yet) succeeded. Short work
 * never shows a RUNNING row at all (event-recorder.ts).
 *
 * It is a Delta table like any other, kept at `<warehouse>/.tributary/system/lakeflow/pipeline_events` and
 * compacted when its files pile up. Appends are blind, so pipelines writing at once never conflict; replacing
 * a RUNNING row removes the small file it was written in, or rewrites the file holding it when compaction
 * has folded it into a larger one. Rounds that found nothing to do are recorded at most every
 * {@link IDLE_EVENT_INTERVAL_MS}, so an idle continuous pipeline proves it is alive without writing a file
 * every few seconds.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Warehouse } from '../catalog/warehouse.js';
import type { Action, AddFile } from '../delta/actions.js';
import { commitWithRetry, newDataFileName, newTableMetadata } from '../delta/commit.js';
import { latestSnapshot } from '../delta/latest-snapshot.js';
import { optimize, removeOf } from '../delta/operations/optimize.js';
import { writeDataFile } from '../delta/operations/write-files.js';
import { buildScanSql, layoutOf } from '../delta/scan.js';
import type { StructType } from '../delta/schema.js';
import type { Snapshot } from '../delta/snapshot.js';
import { protocolFor } from '../delta/table-features.js';
import { type DuckDb, quoteDuckString } from '../engine/duckdb.js';
import { computeFileStats } from '../engine/file-stats.js';

export type EventType =
  | 'update'
  | 'flow_progress'
  | 'schema_change'
  | 'snapshot'
  | 'refresh'
  | 'catch_up'
  | 'staging_retention';
export type EventState = 'RUNNING' | 'COMPLETED' | 'FAILED' | 'CANCELED';

export interface PipelineEvent {
  /** The operation's id: a RUNNING row and the outcome that replaces it share it. */
  readonly eventId: string;
  readonly pipelineName: string;
  readonly gatewayName: string;
  /** One id per process run of the pipeline (all its rounds). */
  readonly updateId: string;
  /** When the operation started. */
  readonly timestamp: Date;
  readonly eventType: EventType;
  readonly state: EventState;
  readonly message: string;
  readonly errorCode: string | null;
  /** So far, for a RUNNING row. */
  readonly durationMs: number;
  /** Changes (rows, for a snapshot) read from the source and staged. */
  readonly changesCaptured: number;
  readonly rowsInserted: number;
  readonly rowsUpdated: number;
  readonly rowsDeleted: number;
  readonly tablesApplied: number;
  readonly tablesFailed: number;
  /** The destination table the operation concerns; null for one of the whole pipeline. */
  readonly tableName: string | null;
  /** From the newest source commit the round applied to the end of the round; null when it applied none. */
  readonly lagMs: number | null;
  /** JSON: per-table results, progress, the schema change, or the error's hint. */
  readonly details: string | null;
}

const COLUMNS: ReadonlyArray<readonly [string, string, string]> = [
  ['event_id', 'string', 'VARCHAR'],
  ['pipeline_name', 'string', 'VARCHAR'],
  ['gateway_name', 'string', 'VARCHAR'],
  ['update_id', 'string', 'VARCHAR'],
  ['timestamp', 'timestamp', 'TIMESTAMPTZ'],
  ['event_type', 'string', 'VARCHAR'],
  ['state', 'string', 'VARCHAR'],
  ['level', 'string', 'VARCHAR'],
  ['message', 'string', 'VARCHAR'],
  ['error_code', 'string', 'VARCHAR'],
  ['duration_ms', 'long', 'BIGINT'],
  ['changes_captured', 'long', 'BIGINT'],
  ['rows_inserted', 'long', 'BIGINT'],
  ['rows_updated', 'long', 'BIGINT'],
  ['rows_deleted', 'long', 'BIGINT'],
  ['tables_applied', 'integer', 'INTEGER'],
  ['tables_failed', 'integer', 'INTEGER'],
  ['table_name', 'string', 'VARCHAR'],
  ['lag_ms', 'long', 'BIGINT'],
  ['details', 'string', 'VARCHAR'],
];

const SCHEMA: StructType = {
  type: 'struct',
  fields: COLUMNS.map(([name, type]) => ({ name, type, nullable: true, metadata: {} })),
};

/** Idle rounds (COMPLETED, nothing captured or applied) are recorded at most this often per pipeline. */
export const IDLE_EVENT_INTERVAL_MS = 10 * 60_000;
/** The table is compacted once it has this many files. */
const COMPACT_AT_FILES = 64;

export function pipelineEventsPath(warehouse: Warehouse): string {
  return warehouse.systemTablePath('lakeflow', 'pipeline_events');
}

const lastIdle = new Map<string, number>();

/** Whether a round's outcome is worth a row now: anything but an idle success, or one now and then. */
export function worthRecording(
  event: Pick<
    PipelineEvent,
    | 'pipelineName'
    | 'timestamp'
    | 'eventType'
    | 'state'
    | 'changesCaptured'
    | 'rowsInserted'
    | 'rowsUpdated'
    | 'rowsDeleted'
  >,
): boolean {
  const idle =
    event.eventType === 'update' &&
    event.state === 'COMPLETED' &&
    event.changesCaptured === 0 &&
    event.rowsInserted + event.rowsUpdated + event.rowsDeleted === 0;
  if (!idle) return true;
  const now = event.timestamp.getTime();
  if (now - (lastIdle.get(event.pipelineName) ?? -Infinity) < IDLE_EVENT_INTERVAL_MS) return false;
  lastIdle.set(event.pipelineName, now);
  return true;
}

/** What one commit to the table does: rows to add, and RUNNING rows they replace or a crash ended. */
export interface EventWrite {
  readonly add: readonly PipelineEvent[];
  /** RUNNING rows replaced by rows of `add` with the same id. */
  readonly replaces?: readonly string[];
  /**
   * A process that died mid-round (kill -9, power cut) left these RUNNING rows, by update id and pipeline:
   * each becomes FAILED with RUN_INTERRUPTED. {@link appendPipelineEvents} says whether one was the round.
   */
  readonly interrupted?: {
    readonly updateId: string;
    readonly pipelineName: string;
    readonly message: string;
  };
}

/**
 * RUNNING rows this process wrote, by data file (path as in `add.path`): replacing all of a file's rows
 * removes the file without reading it.
 */
const runningFiles = new Map<string, ReadonlySet<string>>();

/**
 * Writes the rows and replaces the RUNNING rows in one commit (creating the table), and compacts the table
 * when its files pile up. Resolves to whether an interrupted round's own RUNNING row was found (and failed).
 */
export async function appendPipelineEvents(
  db: DuckDb,
  warehouse: Warehouse,
  write: EventWrite,
): Promise<{ interruptedRound: boolean }> {
  const replaces = new Set(write.replaces ?? []);
  if (write.add.length === 0 && replaces.size === 0 && !write.interrupted) return { interruptedRound: false };
  const root = pipelineEventsPath(warehouse);
  await mkdir(root, { recursive: true });
  const session = await db.fork();
  const written: string[] = [];
  let interruptedRound = false;
  let removedFiles: readonly string[] = [];
  try {
    const add = write.add.length > 0 ? await writeEvents(session, root, write.add) : undefined;
    if (add) written.push(join(root, add.path));
    await commitWithRetry(root, async (snapshot) => {
      const actions: Action[] = [];
      const removed: string[] = [];
      interruptedRound = false;
      if (snapshot && (replaces.size > 0 || write.interrupted)) {
        const rewrite = await rewriteRunning(session, snapshot, replaces, write.interrupted);
        actions.push(...rewrite.actions);
        removed.push(...rewrite.removed);
        written.push(...rewrite.written);
        interruptedRound = rewrite.interruptedRound;
      }
      if (add) actions.push({ add });
      if (snapshot === null)
        actions.unshift({ protocol: protocolFor({}, SCHEMA) }, { metaData: newTableMetadata(SCHEMA) });
      removedFiles = removed;
      if (removed.length === 0) {
        return {
          actions,
          request: { operation: 'WRITE', operationParameters: { mode: 'Append' }, isBlindAppend: true },
        };
      }
      return {
        actions,
        request: {
          operation: 'UPDATE',
          operationParameters: { predicate: '["(state = RUNNING)"]' },
          isBlindAppend: false,
        },
        // Rows added meanwhile are never the RUNNING rows replaced here: those existed when this was built.
        readSet: { files: removed, predicate: () => false },
      };
    });
    for (const path of removedFiles) runningFiles.delete(path);
    const running = write.add.filter((e) => e.state === 'RUNNING').map((e) => e.eventId);
    if (add && running.length === write.add.length) runningFiles.set(add.path, new Set(running));
  } catch (error) {
    for (const path of written) await unlink(path).catch(() => undefined);
    throw error;
  } finally {
    await session[Symbol.asyncDispose]();
  }
  if (((await latestSnapshot(root))?.files.length ?? 0) >= COMPACT_AT_FILES)
    await optimize(root, { auto: true });
  return { interruptedRound };
}

/** The rows as one Parquet file under the table root, and its `add`. */
async function writeEvents(
  session: DuckDb,
  root: string,
  events: readonly PipelineEvent[],
): Promise<AddFile> {
  const name = newDataFileName();
  const path = join(root, name);
  await session.run(
    `CREATE TEMP TABLE events (${COLUMNS.map(([n, , duck]) => `"${n}" ${duck}`).join(', ')})`,
  );
  for (const e of events) {
    const values = [
      quoteDuckString(e.eventId),
      quoteDuckString(e.pipelineName),
      quoteDuckString(e.gatewayName),
      quoteDuckString(e.updateId),
      `make_timestamp(${BigInt(e.timestamp.getTime()) * 1000n})::TIMESTAMPTZ`,
      quoteDuckString(e.eventType),
      quoteDuckString(e.state),
      quoteDuckString(e.state === 'FAILED' ? 'ERROR' : 'INFO'),
      quoteDuckString(e.message),
      e.errorCode === null ? 'NULL' : quoteDuckString(e.errorCode),
      String(Math.max(0, Math.round(e.durationMs))),
      String(e.changesCaptured),
      String(e.rowsInserted),
      String(e.rowsUpdated),
      String(e.rowsDeleted),
      String(e.tablesApplied),
      String(e.tablesFailed),
      e.tableName === null ? 'NULL' : quoteDuckString(e.tableName),
      e.lagMs === null ? 'NULL' : String(Math.max(0, Math.round(e.lagMs))),
      e.details === null ? 'NULL' : quoteDuckString(e.details),
    ];
    await session.run(`INSERT INTO events VALUES (${values.join(', ')})`);
  }
  await session.run(`COPY events TO ${quoteDuckString(path)} (FORMAT parquet, COMPRESSION snappy)`);
  const info = await stat(path);
  return {
    path: name,
    partitionValues: {},
    size: info.size,
    modificationTime: Math.floor(info.mtimeMs),
    dataChange: true,
    // On this connection: a continuous run records while its next round uses the main one.
    stats: await computeFileStats(session, path, SCHEMA.fields),
  };
}

/**
 * Removes the replaced RUNNING rows and turns an interrupted process's RUNNING rows FAILED. A file of this
 * process's RUNNING rows, all replaced, is removed unread; any other file whose stats allow a RUNNING row is
 * read, and rewritten when it holds one.
 */
async function rewriteRunning(
  session: DuckDb,
  snapshot: Snapshot,
  replaces: ReadonlySet<string>,
  interrupted: EventWrite['interrupted'],
): Promise<{ actions: Action[]; removed: string[]; written: string[]; interruptedRound: boolean }> {
  const now = Date.now();
  const actions: Action[] = [];
  const removed: string[] = [];
  const written: string[] = [];
  let interruptedRound = false;
  const ids = [...replaces].map(quoteDuckString).join(', ');
  const dropped = replaces.size > 0 ? `(state = 'RUNNING' AND event_id IN (${ids}))` : 'false';
  const ended = interrupted
    ? `(state = 'RUNNING' AND update_id = ${quoteDuckString(interrupted.updateId)} AND pipeline_name = ${quoteDuckString(interrupted.pipelineName)})`
    : 'false';
  // Files this process wrote RUNNING rows to that are gone (compacted, or replaced): nothing to remember.
  const live = new Set(snapshot.files.map((f) => f.path));
  for (const path of runningFiles.keys()) if (!live.has(path)) runningFiles.delete(path);
  for (const file of snapshot.files) {
    const known = runningFiles.get(file.path);
    if (known && !interrupted && !file.deletionVector && [...known].every((id) => replaces.has(id))) {
      actions.push({ remove: removeOf(file, now, true) });
      removed.push(file.path);
      continue;
    }
    if (!mayHoldRunning(file)) continue;
    const scan = await buildScanSql(session.connection, {
      layout: layoutOf(snapshot),
      files: [
        {
          path: snapshot.dataFilePath(file),
          partitionValues: file.partitionValues,
          deletionVector: file.deletionVector ?? undefined,
        },
      ],
    });
    const [hits] = await session.rows(
      `SELECT count(*) FILTER (WHERE ${dropped} OR ${ended}) AS n, count(*) FILTER (WHERE ${ended} AND event_type = 'update') AS rounds FROM (${scan})`,
    );
    if (Number(hits?.['n'] ?? 0) === 0) continue;
    if (Number(hits?.['rounds'] ?? 0) > 0) interruptedRound = true;
    const note = interrupted ? quoteDuckString(interrupted.message) : "''";
    const kept = `SELECT * REPLACE (
        CASE WHEN ${ended} THEN 'FAILED' ELSE state END AS state,
        CASE WHEN ${ended} THEN 'ERROR' ELSE level END AS level,
        CASE WHEN ${ended} THEN 'RUN_INTERRUPTED' ELSE error_code END AS error_code,
        CASE WHEN ${ended} THEN message || '; ' || ${note} ELSE message END AS message
      ) FROM (${scan}) WHERE NOT ${dropped}`;
    const [left] = await session.rows(`SELECT count(*) AS n FROM (${kept})`);
    if (Number(left?.['n'] ?? 0) > 0) {
      const add = await writeDataFile(session.connection, {
        snapshot,
        query: kept,
        partitionValues: {},
        dataChange: true,
      });
      written.push(join(snapshot.tableRoot, decodeURI(add.path)));
      actions.push({ add });
    }
    actions.push({ remove: removeOf(file, now, true) });
    removed.push(file.path);
  }
  return { actions, removed, written, interruptedRound };
}

/** Whether a file's stats allow a RUNNING row (no stats: it may). */
function mayHoldRunning(file: AddFile): boolean {
  if (!file.stats) return true;
  try {
    const stats = JSON.parse(file.stats) as {
      minValues?: { state?: string };
      maxValues?: { state?: string };
    };
    const min = stats.minValues?.state;
    const max = stats.maxValues?.state;
    return min === undefined || max === undefined || (min <= 'RUNNING' && 'RUNNING' <= max);
  } catch {
    return true;
  }
}

/** A new event id. */
export function newEventId(): string {
  return randomUUID();
}
