/**
 * A pipeline round as `tributary run` performs it, recorded in `system.lakeflow.pipeline_events`:
 *
 * - `update`: the round itself, RUNNING once it has run a few seconds, then its outcome with totals; a round
 *   that retries failed ones says which retry it is;
 * - `flow_progress`: each table the round applied changes to, or that failed, with its counts or error;
 * - `schema_change`: a commit that changed a bronze table's columns, or a table stopped by the `fail` policy;
 * - `snapshot`, `refresh`, `catch_up`: long work, RUNNING with its progress while it runs.
 *
 * Recording never fails the round: a broken events table is a warning. The rows are written in the
 * background (RoundResources), so the next round need not wait for them.
 */
import { randomUUID } from 'node:crypto';
import { Warehouse } from '../catalog/warehouse.js';
import type { TributaryConfig } from '../config/load-config.js';
import { isTributaryError, messageOf } from '../core/errors.js';
import {
  type EventBody,
  EventRecorder,
  type RunningOperation,
  runningVisibleAfterMs,
} from '../observability/event-recorder.js';
import { appendPipelineEvents, worthRecording } from '../observability/pipeline-events.js';
import type { ApplyObserver } from '../pipeline/apply.js';
import type { Logger } from '../pipeline/logger.js';
import { describeProgress, type WorkProgress } from '../pipeline/progress.js';
import type { LockOwner } from '../pipeline/run-lock.js';
import { pipelineOf } from './pipeline-of.js';
import { RoundResources } from './round-resources.js';
import { type RunOnceOptions, type RunReport, runPipelineOnce } from './run-pipeline.js';

/** One id per process: the rounds of one `tributary run` share it, as Lakeflow's update id. */
const updateId = randomUUID();

export async function runRecordedRound(
  config: TributaryConfig,
  pipelineName: string,
  options: RunOnceOptions,
): Promise<RunReport> {
  if (options.resources) return recordedRound(config, pipelineName, options, options.resources);
  // A single round (run --once, refresh) is a run of its own: its start is recorded at once (one commit more
  // for a whole process run). It shares its DuckDB with its recording like a long-running one, and waits for
  // the recording before it returns.
  await using own = new RoundResources();
  return await recordedRound(config, pipelineName, options, own, { startShownAfterMs: 0 });
}

async function recordedRound(
  config: TributaryConfig,
  pipelineName: string,
  options: RunOnceOptions,
  resources: RoundResources,
  /** When the round's RUNNING row is written; default: once it has run a few seconds (event-recorder.ts). */
  timing: { readonly startShownAfterMs?: number } = {},
): Promise<RunReport> {
  const pipeline = pipelineOf(config, pipelineName);
  const warehouse = new Warehouse(config.warehouse);
  const events = new EventRecorder(
    { pipelineName, gatewayName: pipeline.gateway, updateId },
    {
      write: async (batch) => appendPipelineEvents(await resources.db(), warehouse, batch),
      schedule: (task) => resources.inBackground(task),
      log: options.log,
    },
  );
  const retry = options.retry ?? 0;
  // Shown only once the round holds the gateway's lock (onLocked below).
  const round = events.begin(
    {
      eventType: 'update',
      message: retry > 0 ? `retry ${retry}: running` : 'running',
      ...(retry > 0 ? { details: JSON.stringify({ retry }) } : {}),
    },
    Number.POSITIVE_INFINITY,
  );
  const work = new WorkEvents(events);
  const log: Logger = {
    info: (m) => options.log.info(m),
    warn: (m) => options.log.warn(m),
    progress: (p) => {
      options.log.progress?.(p);
      work.progress(p);
    },
  };
  const flows = new FlowEvents(events);
  let finished = false;
  /**
   * Records the round's outcome. Runs before the round lets go of the gateway's lock: when the round shows a
   * RUNNING row, its outcome is written before the lock is free, since a process killed after that could
   * never be taken over, and its RUNNING row would stay. Otherwise the write goes on in the background.
   */
  const finish = async (ended: { report: RunReport } | { error: unknown }): Promise<void> => {
    if (finished) return;
    finished = true;
    await ('report' in ended ? completed(ended.report) : failed(ended.error));
  };
  // Short rounds' rows: the next round need not wait for them.
  const writeInBackground = () => {
    void events.flush();
    return Promise.resolve();
  };
  const failed = (error: unknown): Promise<void> => {
    const cancelled = options.signal.aborted;
    const outcome = {
      state: cancelled ? ('CANCELED' as const) : ('FAILED' as const),
      errorCode: isTributaryError(error) ? error.code : 'INTERNAL',
    };
    work.endAll({ ...outcome, message: cancelled ? 'stopped by a signal' : messageOf(error) });
    const written = round.end({
      ...outcome,
      message: `${retry > 0 ? `retry ${retry}: ` : ''}${cancelled ? 'stopped by a signal' : messageOf(error)}`,
      tablesApplied: flows.applied,
      tablesFailed: flows.failed,
      details: JSON.stringify({
        ...(retry > 0 ? { retry } : {}),
        ...(isTributaryError(error) && error.hint ? { hint: error.hint } : {}),
        // Whether the next round retries it: transient errors are retried with backoff by a running pipeline.
        retryable: isTributaryError(error) ? error.retry : 'fatal',
      }),
    });
    return written ?? writeInBackground();
  };
  const completed = (report: RunReport): Promise<void> => {
    work.endAll({ state: 'COMPLETED', message: 'complete' });
    recordOverdue(events, report.overdue);
    const sum = (k: 'inserted' | 'updated' | 'deleted') => report.tables.reduce((n, t) => n + t[k], 0);
    const snapshotRows = report.capture.segments
      .filter((s) => s.origin === 'snapshot')
      .reduce((n, s) => n + Object.values(s.tables).reduce((m, t) => m + t.rows, 0), 0);
    const changesCaptured = report.capture.changes + snapshotRows;
    const newestCommit = report.capture.segments
      .map((s) => (s.lastCommitTime === null ? undefined : Date.parse(s.lastCommitTime)))
      .filter((t): t is number => t !== undefined)
      .reduce<number | undefined>((a, b) => (a === undefined || b > a ? b : a), undefined);
    const counts = {
      changesCaptured,
      rowsInserted: sum('inserted'),
      rowsUpdated: sum('updated'),
      rowsDeleted: sum('deleted'),
    };
    const worth = worthRecording({
      pipelineName,
      timestamp: new Date(),
      eventType: 'update',
      state: 'COMPLETED',
      ...counts,
    });
    const written = round.end(
      {
        state: 'COMPLETED',
        message: `${retry > 0 ? `retry ${retry}: ` : ''}${
          changesCaptured === 0 && sum('inserted') + sum('updated') + sum('deleted') === 0
            ? 'up to date'
            : `${changesCaptured} change(s) captured; ${sum('inserted')} inserted, ${sum('updated')} updated, ${sum('deleted')} deleted`
        }`,
        ...counts,
        tablesApplied: report.tables.length,
        lagMs: newestCommit === undefined ? null : Date.now() - newestCommit,
        details: JSON.stringify({
          ...(retry > 0 ? { retry } : {}),
          tables: report.tables.map((t) => ({
            table: t.destination,
            version: t.version,
            inserted: t.inserted,
            updated: t.updated,
            deleted: t.deleted,
          })),
        }),
      },
      !worth,
    );
    return written ?? writeInBackground();
  };
  try {
    return await runPipelineOnce(config, pipelineName, {
      ...options,
      resources,
      log,
      updateId,
      observer: flows,
      onCrashedRound: async (dead) => recordCrashedRound(events, options, pipelineName, dead),
      onLocked: () => round.showAfter(timing.startShownAfterMs ?? runningVisibleAfterMs()),
      beforeUnlock: finish,
    });
  } catch (error) {
    // Failed before it held the lock (or while letting go of it): nothing to wait for.
    void finish({ error });
    throw error;
  }
}

/**
 * Staged segments past retention that a pipeline has not applied: a FAILED row under each pipeline that is
 * behind (retention checks at most every 10 minutes, so at most that often), for the alert on failures.
 */
function recordOverdue(events: EventRecorder, overdue: RunReport['overdue']): void {
  const behind = new Map<string, { segments: number; oldest: number; tables: Set<string> }>();
  for (const segment of overdue) {
    for (const waiting of segment.waitingFor) {
      const at = waiting.indexOf(':');
      const pipeline = waiting.slice(0, at);
      const entry = behind.get(pipeline) ?? { segments: 0, oldest: segment.seq, tables: new Set<string>() };
      entry.segments++;
      entry.oldest = Math.min(entry.oldest, segment.seq);
      entry.tables.add(waiting.slice(at + 1));
      behind.set(pipeline, entry);
    }
  }
  for (const [pipelineName, { segments, oldest, tables }] of behind) {
    events.record(
      {
        eventType: 'staging_retention',
        state: 'FAILED',
        errorCode: 'STAGING_RETENTION_EXCEEDED',
        message: `${segments} staged segment(s) past the gateway's staging_retention_days are not applied to ${[...tables].sort().join(', ')} yet (oldest seq ${oldest}); they are kept until this pipeline applies them.`,
        details: JSON.stringify({ segments, oldestSeq: oldest, tables: [...tables].sort() }),
      },
      { pipelineName },
    );
  }
}

/** Snapshots, refreshes and catch-ups, from the progress capture reports. */
class WorkEvents {
  readonly #running = new Map<string, RunningOperation>();

  constructor(private readonly events: EventRecorder) {}

  progress(p: WorkProgress): void {
    const key = `${p.work}:${p.subject}`;
    let op = this.#running.get(key);
    const body = {
      message: describeProgress(p),
      changesCaptured: p.done,
      details: JSON.stringify({
        done: p.done,
        unit: p.unit,
        ...(p.total === undefined ? {} : { total_estimate: Math.round(p.total) }),
        ...(p.fraction === undefined ? {} : { fraction: Number(p.fraction.toFixed(4)) }),
        rate_per_second: Math.round(p.ratePerSecond),
        ...(p.etaSeconds === undefined ? {} : { eta_seconds: Math.round(p.etaSeconds) }),
      }),
    };
    if (!op) {
      op = this.events.begin({
        eventType: p.work === 'catch-up' ? 'catch_up' : p.work,
        // The first report comes after the first chunk; the work started before it.
        timestamp: new Date(Date.now() - p.elapsedMs),
        ...(p.work === 'catch-up' ? {} : { tableName: p.subject }),
        ...body,
      });
      this.#running.set(key, op);
    }
    if (!p.finished) {
      op.update(body);
      return;
    }
    // A snapshot or refresh is worth a row however short; a catch-up only when it ran long (else the round's
    // row says it all).
    op.end({ state: 'COMPLETED', ...body }, p.work === 'catch-up');
    this.#running.delete(key);
  }

  /** The round ended: work it did not finish ends with it. */
  endAll(
    outcome: Partial<EventBody> & { state: 'COMPLETED' | 'FAILED' | 'CANCELED'; message: string },
  ): void {
    // A catch-up that showed no RUNNING row leaves none: the round's own row already tells its end.
    for (const [key, op] of this.#running) op.end(outcome, key.startsWith('catch-up:'));
    this.#running.clear();
  }
}

/** A row per table the round applied changes to or that failed, and per schema change. */
class FlowEvents implements ApplyObserver {
  applied = 0;
  failed = 0;

  constructor(private readonly events: EventRecorder) {}

  table(outcome: Parameters<ApplyObserver['table']>[0]): void {
    const { target, startedAt, report, error } = outcome;
    const durationMs = Date.now() - startedAt.getTime();
    if (report) {
      this.applied++;
      if (report.commits === 0) return;
      this.events.record({
        eventType: 'flow_progress',
        timestamp: startedAt,
        state: 'COMPLETED',
        message: `${report.commits} commit(s), ${report.inserted} inserted, ${report.updated} updated, ${report.deleted} deleted`,
        tableName: target.destination,
        durationMs,
        rowsInserted: report.inserted,
        rowsUpdated: report.updated,
        rowsDeleted: report.deleted,
        tablesApplied: 1,
        details: JSON.stringify({ version: report.version, commits: report.commits }),
      });
      return;
    }
    this.failed++;
    const code = isTributaryError(error) ? error.code : 'INTERNAL';
    this.events.record({
      // The `fail` policy stopping a table at a schema change is that schema change's row.
      eventType: code === 'SOURCE_SCHEMA_CHANGED' ? 'schema_change' : 'flow_progress',
      timestamp: startedAt,
      state: 'FAILED',
      message: messageOf(error),
      errorCode: code,
      tableName: target.destination,
      durationMs,
      tablesFailed: 1,
      details: JSON.stringify({
        ...(isTributaryError(error) && error.hint ? { hint: error.hint } : {}),
        retryable: isTributaryError(error) ? error.retry : 'fatal',
      }),
    });
  }

  schemaChange(change: Parameters<ApplyObserver['schemaChange']>[0]): void {
    const parts = [
      change.added.length > 0 ? `added ${change.added.join(', ')}` : '',
      change.changed.length > 0 ? `changed the type of ${change.changed.join(', ')}` : '',
      change.removed.length > 0 ? `removed ${change.removed.join(', ')} (the table was replaced)` : '',
    ].filter(Boolean);
    this.events.record({
      eventType: 'schema_change',
      state: 'COMPLETED',
      message: `version ${change.version}: ${parts.join('; ')}`,
      tableName: change.target.destination,
      details: JSON.stringify({
        version: change.version,
        added: change.added,
        changed: change.changed,
        removed: change.removed,
        policy: change.target.schemaEvolution ?? 'evolve',
      }),
    });
  }
}

/**
 * The round of a process that died holding the gateway's lock never recorded its end. Its RUNNING rows (the
 * round's, its snapshot's) become FAILED with RUN_INTERRUPTED; when it had none, a FAILED round row is
 * recorded under the dead process's update id. Either way the success rate counts the kill.
 */
async function recordCrashedRound(
  events: EventRecorder,
  options: RunOnceOptions,
  pipelineName: string,
  dead: LockOwner,
): Promise<void> {
  const since = dead.since === undefined ? Number.NaN : Date.parse(dead.since);
  const started = Number.isNaN(since) ? Date.now() : since;
  options.log.warn(
    `the previous round (pid ${dead.pid}) stopped without a clean shutdown; resuming from the last durable position`,
  );
  const message = `the round of process ${dead.pid} stopped without a clean shutdown (killed or crashed); the next round resumed from the last durable position`;
  events.interrupted(
    { updateId: dead.updateId ?? 'unknown', pipelineName: dead.pipeline ?? pipelineName },
    message,
    {
      eventType: 'update',
      timestamp: new Date(started),
      state: 'FAILED',
      message,
      errorCode: 'RUN_INTERRUPTED',
      durationMs: Math.max(0, Date.now() - started),
      details: JSON.stringify({ pid: dead.pid, lockTakenAt: dead.since ?? null }),
    },
  );
}
