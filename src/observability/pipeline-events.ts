/**
 * `system.lakeflow.pipeline_events`: one row per pipeline update (a `tributary run` round), as Lakeflow's
 * event log gives the checklist's monitoring queries. `state` is COMPLETED, FAILED or CANCELED, so the
 * checklist's success rate (COMPLETED / all rows over 7 days) is the share of rounds that succeeded.
 *
 * It is a Delta table like any other (blind appends, so pipelines writing at once never conflict), kept at
 * `<warehouse>/.tributary/system/lakeflow/pipeline_events` and compacted when its files pile up. Rounds that
 * found nothing to do are recorded at most every {@link IDLE_EVENT_INTERVAL_MS}, so an idle continuous
 * pipeline proves it is alive without writing a file every few seconds.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Warehouse } from '../catalog/warehouse.js';
import type { AddFile } from '../delta/actions.js';
import { commitWithRetry, newDataFileName, newTableMetadata } from '../delta/commit.js';
import { latestSnapshot } from '../delta/latest-snapshot.js';
import { optimize } from '../delta/operations/optimize.js';
import type { StructType } from '../delta/schema.js';
import { protocolFor } from '../delta/table-features.js';
import { type DuckDb, quoteDuckString } from '../engine/duckdb.js';
import { computeFileStats } from '../engine/file-stats.js';

export interface PipelineEvent {
  readonly pipelineName: string;
  readonly gatewayName: string;
  /** One id per process run of the pipeline (all its rounds). */
  readonly updateId: string;
  readonly timestamp: Date;
  readonly state: 'COMPLETED' | 'FAILED' | 'CANCELED';
  readonly message: string;
  readonly errorCode: string | null;
  readonly durationMs: number;
  readonly changesCaptured: number;
  readonly rowsInserted: number;
  readonly rowsUpdated: number;
  readonly rowsDeleted: number;
  readonly tablesApplied: number;
  readonly tablesFailed: number;
  /** The round's table when it concerns one; null for a round of the whole pipeline. */
  readonly tableName: string | null;
  /** From the newest source commit the round applied to the end of the round; null when it applied none. */
  readonly lagMs: number | null;
  /** JSON: per-table results, or the error's hint. */
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

/** Whether an event is worth a row now: anything but an idle success, or an idle success now and then. */
export function worthRecording(event: PipelineEvent): boolean {
  const idle =
    event.state === 'COMPLETED' &&
    event.changesCaptured === 0 &&
    event.rowsInserted + event.rowsUpdated + event.rowsDeleted === 0;
  if (!idle) return true;
  const now = event.timestamp.getTime();
  if (now - (lastIdle.get(event.pipelineName) ?? -Infinity) < IDLE_EVENT_INTERVAL_MS) return false;
  lastIdle.set(event.pipelineName, now);
  return true;
}

/** Appends events to the table (creating it), and compacts it when its files pile up. */
export async function appendPipelineEvents(
  db: DuckDb,
  warehouse: Warehouse,
  events: readonly PipelineEvent[],
): Promise<void> {
  if (events.length === 0) return;
  const root = pipelineEventsPath(warehouse);
  await mkdir(root, { recursive: true });
  const name = newDataFileName();
  const path = join(root, name);
  const session = await db.fork();
  let add: AddFile;
  try {
    await session.run(
      `CREATE TEMP TABLE events (${COLUMNS.map(([n, , duck]) => `"${n}" ${duck}`).join(', ')})`,
    );
    for (const e of events) {
      const values = [
        quoteDuckString(randomUUID()),
        quoteDuckString(e.pipelineName),
        quoteDuckString(e.gatewayName),
        quoteDuckString(e.updateId),
        `make_timestamp(${BigInt(e.timestamp.getTime()) * 1000n})::TIMESTAMPTZ`,
        "'update'",
        quoteDuckString(e.state),
        quoteDuckString(e.state === 'FAILED' ? 'ERROR' : 'INFO'),
        quoteDuckString(e.message),
        e.errorCode === null ? 'NULL' : quoteDuckString(e.errorCode),
        String(e.durationMs),
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
    add = {
      path: name,
      partitionValues: {},
      size: info.size,
      modificationTime: Math.floor(info.mtimeMs),
      dataChange: true,
      // On this connection too: a continuous run records while its next round uses the main one.
      stats: await computeFileStats(session, path, SCHEMA.fields),
    };
  } finally {
    await session[Symbol.asyncDispose]();
  }
  try {
    await commitWithRetry(root, async (snapshot) => ({
      actions:
        snapshot === null
          ? [{ protocol: protocolFor({}, SCHEMA) }, { metaData: newTableMetadata(SCHEMA) }, { add }]
          : [{ add }],
      request: { operation: 'WRITE', operationParameters: { mode: 'Append' }, isBlindAppend: true },
    }));
  } catch (error) {
    await unlink(path).catch(() => undefined);
    throw error;
  }
  if (((await latestSnapshot(root))?.files.length ?? 0) >= COMPACT_AT_FILES)
    await optimize(root, { auto: true });
}
