/**
 * A pipeline round as `tributary run` performs it: the round itself, then its row in
 * `system.lakeflow.pipeline_events`. Recording never fails the round: a broken events table is a warning.
 */
import { randomUUID } from 'node:crypto';
import { Warehouse } from '../catalog/warehouse.js';
import type { TributaryConfig } from '../config/load-config.js';
import { isTributaryError, messageOf } from '../core/errors.js';
import { DuckDb } from '../engine/duckdb.js';
import {
  appendPipelineEvents,
  type PipelineEvent,
  worthRecording,
} from '../observability/pipeline-events.js';
import type { LockOwner } from '../pipeline/run-lock.js';
import { pipelineOf } from './pipeline-of.js';
import { type RunOnceOptions, type RunReport, runPipelineOnce } from './run-pipeline.js';

/** One id per process: the rounds of one `tributary run` share it, as Lakeflow's update id. */
const updateId = randomUUID();

export async function runRecordedRound(
  config: TributaryConfig,
  pipelineName: string,
  options: RunOnceOptions,
): Promise<RunReport> {
  const started = Date.now();
  const pipeline = pipelineOf(config, pipelineName);
  const base = {
    pipelineName,
    gatewayName: pipeline.gateway,
    updateId,
    timestamp: new Date(started),
  };
  let report: RunReport;
  try {
    report = await runPipelineOnce(config, pipelineName, {
      ...options,
      updateId,
      onCrashedRound: (dead) => recordCrashedRound(config, options, pipeline.gateway, pipelineName, dead),
    });
  } catch (error) {
    const cancelled = options.signal.aborted;
    await record(config, options, {
      ...base,
      state: cancelled ? 'CANCELED' : 'FAILED',
      message: cancelled ? 'stopped by a signal' : messageOf(error),
      errorCode: isTributaryError(error) ? error.code : 'INTERNAL',
      durationMs: Date.now() - started,
      changesCaptured: 0,
      rowsInserted: 0,
      rowsUpdated: 0,
      rowsDeleted: 0,
      tablesApplied: 0,
      tablesFailed: failedTables(error),
      tableName: null,
      lagMs: null,
      details: isTributaryError(error) && error.hint ? JSON.stringify({ hint: error.hint }) : null,
    });
    throw error;
  }
  const sum = (k: 'inserted' | 'updated' | 'deleted') => report.tables.reduce((n, t) => n + t[k], 0);
  const snapshotRows = report.capture.segments
    .filter((s) => s.origin === 'snapshot')
    .reduce((n, s) => n + Object.values(s.tables).reduce((m, t) => m + t.rows, 0), 0);
  const changesCaptured = report.capture.changes + snapshotRows;
  const newestCommit = report.capture.segments
    .map((s) => (s.lastCommitTime === null ? undefined : Date.parse(s.lastCommitTime)))
    .filter((t): t is number => t !== undefined)
    .reduce<number | undefined>((a, b) => (a === undefined || b > a ? b : a), undefined);
  await record(config, options, {
    ...base,
    state: 'COMPLETED',
    message:
      changesCaptured === 0 && sum('inserted') + sum('updated') + sum('deleted') === 0
        ? 'up to date'
        : `${changesCaptured} change(s) captured; ${sum('inserted')} inserted, ${sum('updated')} updated, ${sum('deleted')} deleted`,
    errorCode: null,
    durationMs: Date.now() - started,
    changesCaptured,
    rowsInserted: sum('inserted'),
    rowsUpdated: sum('updated'),
    rowsDeleted: sum('deleted'),
    tablesApplied: report.tables.length,
    tablesFailed: 0,
    tableName: null,
    lagMs: newestCommit === undefined ? null : Date.now() - newestCommit,
    details: JSON.stringify({
      tables: report.tables.map((t) => ({
        table: t.destination,
        version: t.version,
        inserted: t.inserted,
        updated: t.updated,
        deleted: t.deleted,
      })),
    }),
  });
  return report;
}

/**
 * The round of a process that died holding the gateway's lock never recorded its end: it is recorded now, as
 * FAILED with RUN_INTERRUPTED under the dead process's update id, so the success rate counts it and the
 * event log shows every kill -9 or power cut.
 */
async function recordCrashedRound(
  config: TributaryConfig,
  options: RunOnceOptions,
  gatewayName: string,
  pipelineName: string,
  dead: LockOwner,
): Promise<void> {
  const since = dead.since === undefined ? Number.NaN : Date.parse(dead.since);
  const started = Number.isNaN(since) ? Date.now() : since;
  options.log.warn(
    `the previous round (pid ${dead.pid}) stopped without a clean shutdown; resuming from the last durable position`,
  );
  await record(config, options, {
    pipelineName: dead.pipeline ?? pipelineName,
    gatewayName,
    updateId: dead.updateId ?? 'unknown',
    timestamp: new Date(started),
    state: 'FAILED',
    message: `the round of process ${dead.pid} stopped without a clean shutdown (killed or crashed); the next round resumed from the last durable position`,
    errorCode: 'RUN_INTERRUPTED',
    durationMs: Math.max(0, Date.now() - started),
    changesCaptured: 0,
    rowsInserted: 0,
    rowsUpdated: 0,
    rowsDeleted: 0,
    tablesApplied: 0,
    tablesFailed: 0,
    tableName: null,
    lagMs: null,
    details: JSON.stringify({ pid: dead.pid, lockTakenAt: dead.since ?? null }),
  });
}

/** "N of M table(s) could not be applied" names how many failed; any other failure counts none. */
function failedTables(error: unknown): number {
  const m = / (\d+) of \d+ table\(s\) could not be applied/.exec(` ${messageOf(error)}`);
  return m ? Number(m[1]) : 0;
}

/** Appends the event; a long-running process does so in the background (RoundResources.inBackground). */
async function record(config: TributaryConfig, options: RunOnceOptions, event: PipelineEvent): Promise<void> {
  if (!worthRecording(event)) return;
  const append = async (db: DuckDb) => {
    try {
      await appendPipelineEvents(db, new Warehouse(config.warehouse), [event]);
    } catch (error) {
      options.log.warn(`could not record the round in system.lakeflow.pipeline_events: ${messageOf(error)}`);
    }
  };
  const resources = options.resources;
  if (resources) {
    resources.inBackground(async () => append(await resources.db()));
    return;
  }
  await using db = await DuckDb.open();
  await append(db);
}
