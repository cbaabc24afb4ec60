/**
 * The apply task of a pipeline: brings each bronze table up to date with the staged segments.
 *
 * Exactly once without a second bookkeeping store: every commit carries a Delta `txn` action whose appId
 * names pipeline and table and whose version is the last segment applied. The table's own log therefore
 * says how far it is, and a segment applied twice (after a crash between commit and anything else) is
 * skipped by that check (invariant 3 in docs/architecture.md).
 */
import { dirname, join } from 'node:path';
import { planSnapshotLoad, type StagedPart } from '../bronze/load-snapshot.js';
import { type MergeMetrics, type MergePlan, planMerge } from '../bronze/merge-changes.js';
import { planHistoryMerge } from '../bronze/merge-history.js';
import { historyCannotEvolve, layoutSwitched, replacingTable } from '../bronze/replace-layout.js';
import { isTributaryError, messageOf, TributaryError } from '../core/errors.js';
import { describeStorageFull, storageFullReason } from '../core/storage-full.js';
import type { TableSchema } from '../core/table.js';
import { commit } from '../delta/commit.js';
import { latestSnapshot } from '../delta/latest-snapshot.js';
import { optimize } from '../delta/operations/optimize.js';
import type { StructType } from '../delta/schema.js';
import type { Snapshot } from '../delta/snapshot.js';
import type { DuckDb } from '../engine/duckdb.js';
import { storageSpace } from '../staging/fs-durable.js';
import { newestSegmentOf, type SegmentManifest, type StagedTable } from '../staging/segment-format.js';
import type { StagingVolume } from '../staging/staging-volume.js';
import { faultPoint } from './fault-injection.js';
import type { Logger } from './logger.js';

export interface ApplyTarget {
  /** Source table key, `schema.table`. */
  readonly sourceKey: string;
  /** Three-part destination name, for messages and the txn app id. */
  readonly destination: string;
  readonly tableRoot: string;
  /** Delta table properties for when the table is created (`table_configuration.table_properties`). */
  readonly tableProperties?: Readonly<Record<string, string>>;
  /**
   * `SCD_TYPE_2` keeps a history row per version of a key (`__START_AT`, `__END_AT`; merge-history.ts);
   * default `SCD_TYPE_1`.
   */
  readonly scdType?: 'SCD_TYPE_1' | 'SCD_TYPE_2';
  /** The pipeline's schema evolution policy (see MergeInput.schemaEvolution); default `evolve`. */
  readonly schemaEvolution?: 'evolve' | 'fail' | 'ignore';
  /** `table_configuration.commit_timestamp_column` (see MergeInput.commitTimestampColumn). */
  readonly commitTimestampColumn?: string;
}

export interface ApplyOptions {
  readonly pipeline: string;
  readonly db: DuckDb;
  readonly volume: StagingVolume;
  readonly targets: readonly ApplyTarget[];
  /** At most this many segments go into one commit (a snapshot goes in whole). */
  readonly maxSegmentsPerCommit: number;
  /** Rows per data file of a snapshot's commit; default SNAPSHOT_ROWS_PER_FILE (load-snapshot.ts). */
  readonly snapshotRowsPerFile?: number;
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Told of each table's outcome and each schema change, for `system.lakeflow.pipeline_events`. */
  readonly observer?: ApplyObserver;
}

export interface ApplyObserver {
  /** A table's apply in this round ended: with its report, or with the error that stopped it. */
  table(outcome: {
    readonly target: ApplyTarget;
    readonly startedAt: Date;
    readonly report?: TableApplyReport;
    readonly error?: unknown;
  }): void;
  /** A commit changed the table's schema (columns added, widened, or replaced by a full refresh). */
  schemaChange(change: { readonly target: ApplyTarget; readonly version: number } & SchemaDifference): void;
}

export interface SchemaDifference {
  readonly added: readonly string[];
  readonly changed: readonly string[];
  readonly removed: readonly string[];
}

/** Columns added, whose type changed, and removed between two schemas (top level, by name). */
export function schemaDifference(before: StructType, after: StructType): SchemaDifference {
  const old = new Map(before.fields.map((f) => [f.name, JSON.stringify(f.type)]));
  const now = new Map(after.fields.map((f) => [f.name, JSON.stringify(f.type)]));
  return {
    added: [...now.keys()].filter((n) => !old.has(n)),
    changed: [...now].filter(([n, t]) => old.has(n) && old.get(n) !== t).map(([n]) => n),
    removed: [...old.keys()].filter((n) => !now.has(n)),
  };
}

export interface TableApplyReport extends MergeMetrics {
  readonly destination: string;
  readonly commits: number;
  readonly version: number | null;
}

export function txnAppId(pipeline: string, destination: string): string {
  return `tributary:${pipeline}:${destination}`;
}

export async function applyStaged(options: ApplyOptions): Promise<TableApplyReport[]> {
  const { manifests, tables } = await manifestsToApply(options);
  // A snapshot's segments become applicable together, once its last segment is sealed.
  const completeEpochs = new Set(manifests.filter((m) => m.snapshot?.last).map((m) => m.snapshot?.epoch));
  const applicable = manifests.filter((m) => m.snapshot === null || completeEpochs.has(m.snapshot.epoch));

  const reports: TableApplyReport[] = [];
  const failures: Array<{ target: ApplyTarget; error: unknown }> = [];
  for (const target of options.targets) {
    options.signal.throwIfAborted();
    const startedAt = new Date();
    try {
      const report = await applyTable(options, target, applicable, tables.get(target.tableRoot));
      reports.push(report);
      options.observer?.table({ target, startedAt, report });
    } catch (error) {
      // Stopped by a signal is no failure of the table: the round's own row says it was cancelled.
      if (options.signal.aborted) throw error;
      options.observer?.table({ target, startedAt, error });
      // One broken table must not hold back the others: their segments are applied, this one is reported.
      options.log.warn(`${target.destination}: apply failed: ${messageOf(error)}`);
      failures.push({ target, error });
    }
  }
  if (failures.length > 0) throw tablesFailed(failures, options.targets.length);
  return reports;
}

/** A target's table as read before the round's merges: its snapshot, or why it could not be read. */
type TableRead = { readonly snapshot: Snapshot | null } | { readonly error: unknown };

/**
 * The manifests some target may still need: from the oldest segment a target has not applied, for the targets
 * whose newest segment (the gateway state's index) is past what they applied. A quiet table costs nothing, and
 * neither do the thousands of applied segments a long retention keeps: a round reads its backlog only. The
 * tables read on the way are handed to their apply; one that cannot be read fails there, on its own.
 */
async function manifestsToApply(
  options: ApplyOptions,
): Promise<{ manifests: SegmentManifest[]; tables: Map<string, TableRead> }> {
  const tables = new Map<string, TableRead>();
  const newest = await options.volume.newestSegment();
  if (newest === undefined) return { manifests: [], tables };
  const state = (await options.volume.readManifest(newest)).state;
  let from = newest + 1;
  for (const target of options.targets) {
    let read: TableRead;
    try {
      read = { snapshot: await latestSnapshot(target.tableRoot) };
    } catch (error) {
      read = { error };
    }
    tables.set(target.tableRoot, read);
    if (!('snapshot' in read)) continue;
    const last = newestSegmentOf(state, target.sourceKey);
    const applied = read.snapshot?.txnVersion(txnAppId(options.pipeline, target.destination)) ?? 0;
    // A volume staged before the index existed: read everything, as before.
    if (last === undefined) from = 1;
    else if (last > applied) from = Math.min(from, applied + 1);
  }
  return { manifests: await options.volume.manifestsBetween(from, newest), tables };
}

/**
 * The error of a round in which some tables failed. It is transient when other tables still made progress or
 * every failure is transient, so a continuous run keeps applying the healthy tables and retries the broken
 * one with backoff; a `--once` run still ends with this error and a non-zero exit.
 */
function tablesFailed(
  failures: ReadonlyArray<{ target: ApplyTarget; error: unknown }>,
  total: number,
): TributaryError {
  const first = failures[0]?.error;
  const code = isTributaryError(first) ? first.code : 'INTERNAL';
  const allTransient = failures.every((f) => isTributaryError(f.error) && f.error.retry === 'transient');
  const list = failures.map(
    (f) =>
      `${f.target.destination} (${isTributaryError(f.error) ? `${f.error.code}: ` : ''}${messageOf(f.error)})`,
  );
  return new TributaryError(
    code,
    `${failures.length} of ${total} table(s) could not be applied: ${list.join('; ')}`,
    {
      retry:
        allTransient || failures.length < total
          ? 'transient'
          : isTributaryError(first)
            ? first.retry
            : 'fatal',
      ...(isTributaryError(first) && first.hint ? { hint: first.hint } : {}),
      cause: first,
    },
  );
}

async function applyTable(
  options: ApplyOptions,
  target: ApplyTarget,
  manifests: readonly SegmentManifest[],
  /** The table as manifestsToApply read it this round; read afresh when absent. */
  read: TableRead | undefined,
): Promise<TableApplyReport> {
  const appId = txnAppId(options.pipeline, target.destination);
  const totals = {
    inserted: 0,
    updated: 0,
    deleted: 0,
    filesAdded: 0,
    filesRemoved: 0,
    outputRows: 0,
    commits: 0,
  };
  if (read && 'error' in read) throw read.error;
  let snapshot = read ? read.snapshot : await latestSnapshot(target.tableRoot);
  const history = target.scdType === 'SCD_TYPE_2';

  for (;;) {
    options.signal.throwIfAborted();
    const applied = snapshot?.txnVersion(appId) ?? 0;
    let pending = manifests.filter((m) => m.seq > applied && m.tables[target.sourceKey] !== undefined);
    if (pending.length === 0) break;
    const isReset = (m: SegmentManifest) => m.tables[target.sourceKey]?.reset === true;
    const newestShape = pending.at(-1)?.tables[target.sourceKey]?.schema;
    // A table no merge can carry on (scd_type switched; a history table whose column types changed beyond
    // widening) is replaced whole by a full refresh's snapshot (replace-layout.ts), and what was staged before
    // it is moot. Without one, the merge below refuses, and the refresh is requested or named.
    const switching =
      newestShape !== undefined &&
      pending.findLastIndex(isReset) >= 0 &&
      (layoutSwitched(snapshot, newestShape, history) ||
        (history && historyCannotEvolve(snapshot, newestShape, target.commitTimestampColumn)));
    if (switching) {
      pending = pending.slice(pending.findLastIndex(isReset));
    } else if (history) {
      // History is kept across a reset: everything before it is applied, and a reset only ever starts a batch.
      const nextReset = pending.findIndex((m, i) => i > 0 && isReset(m));
      if (nextReset > 0) pending = pending.slice(0, nextReset);
    } else {
      // A reset (a fresh snapshot of this table, a TRUNCATE) makes everything before it moot.
      const lastReset = pending.findLastIndex(isReset);
      if (lastReset > 0) pending = pending.slice(lastReset);
    }
    // A batch is capped at maxSegmentsPerCommit, except that a snapshot that replaces the table (a new table, a
    // full refresh) goes in whole, so readers see the old table or the new one, never a table half filled. It
    // goes in alone: the changes after it are a merge of their own, and the snapshot needs none (load-snapshot).
    const epoch = pending[0]?.snapshot?.epoch;
    let snapshotEnd = 0;
    if (epoch !== undefined && isReset(pending[0] as SegmentManifest)) {
      while (snapshotEnd < pending.length && pending[snapshotEnd]?.snapshot?.epoch === epoch) snapshotEnd++;
    }
    const batch = pending.slice(0, snapshotEnd > 0 ? snapshotEnd : options.maxSegmentsPerCommit);
    const first = batch[0] as SegmentManifest;
    const overwrite = isReset(first);
    const last = batch.at(-1) as SegmentManifest;
    const newest = last.tables[target.sourceKey]?.schema as TableSchema;
    const partial = batch.some((m) => m.tables[target.sourceKey]?.partial === true);
    const parts: StagedPart[] = batch.map((m) => {
      const staged = m.tables[target.sourceKey] as StagedTable;
      return {
        files: (staged.files ?? [staged.file]).map((f) => join(options.volume.segmentDir(m.seq), f)),
        rows: staged.rows,
        columns: new Set(staged.schema.columns.map((c) => c.name)),
      };
    });
    const stagedFiles = parts.flatMap((p) => p.files);
    const stagedColumns = new Set(parts.flatMap((p) => [...p.columns]));
    // A snapshot's keys are unique when the source guarantees it (a primary key or a unique index over NOT
    // NULL columns); a configured primary_keys may repeat, and the merge keeps one row per key.
    const load =
      !history && snapshotEnd > 0 && batch.length === snapshotEnd && newest.keySource !== 'configured';

    let plan: MergePlan;
    try {
      const input = {
        tableRoot: target.tableRoot,
        // A switched table is planned as a new one, then the plan replaces it whole.
        snapshot: switching ? null : snapshot,
        source: newest,
        stagedFiles,
        stagedColumns,
        partial,
        overwrite,
        ...(overwrite ? { resetAtUs: resetTimeUs(first, target.sourceKey) } : {}),
        ...(target.tableProperties ? { tableProperties: { ...target.tableProperties } } : {}),
        ...(target.schemaEvolution ? { schemaEvolution: target.schemaEvolution } : {}),
        ...(target.commitTimestampColumn ? { commitTimestampColumn: target.commitTimestampColumn } : {}),
      };
      plan = load
        ? await planSnapshotLoad(options.db, {
            ...input,
            parts,
            ...(options.snapshotRowsPerFile ? { rowsPerFile: options.snapshotRowsPerFile } : {}),
          })
        : await (history ? planHistoryMerge : planMerge)(options.db, input);
      if (switching && snapshot) plan = replacingTable(snapshot, plan);
    } catch (error) {
      if (isTributaryError(error) && error.retry === 'resnapshot')
        throw await refreshForChange(options, target, error);
      throw (await tableStorageFull(error, target, snapshot)) ?? error;
    }
    await faultPoint('before-delta-commit');
    try {
      await commit(
        target.tableRoot,
        snapshot?.version ?? -1,
        [...plan.actions, { txn: { appId, version: last.seq, lastUpdated: Date.now() } }],
        {
          operation: plan.operation,
          operationParameters: plan.operationParameters,
          operationMetrics: {
            numTargetRowsInserted: String(plan.metrics.inserted),
            numTargetRowsUpdated: String(plan.metrics.updated),
            numTargetRowsDeleted: String(plan.metrics.deleted),
            numTargetFilesAdded: String(plan.metrics.filesAdded),
            numTargetFilesRemoved: String(plan.metrics.filesRemoved),
            numOutputRows: String(plan.metrics.outputRows),
          },
          isBlindAppend: false,
        },
        // Refuses, naming the feature, a table whose protocol this writer cannot honour (e.g. someone enabled
        // a feature on a bronze table by ALTER TABLE); the table is left untouched.
        // A change-data-feed table needs cdc files unless the plan's actions state its changes exactly.
        {
          snapshot,
          checkWriteSupport: plan.wholeFileChanges ? { wholeFileChanges: true } : true,
          log: options.log,
        },
      );
    } catch (error) {
      // Another writer got there first: re-read the table and decide again (it may have applied this batch).
      if (isTributaryError(error) && error.code === 'DELTA_CONFLICT') {
        options.log.warn(`${target.destination}: concurrent commit, retrying against the new version`);
        snapshot = await latestSnapshot(target.tableRoot);
        continue;
      }
      throw (await tableStorageFull(error, target, snapshot)) ?? error;
    }
    await faultPoint('after-delta-commit');
    const before = snapshot;
    snapshot = await latestSnapshot(target.tableRoot);
    if (before && snapshot && before.metadata.schemaString !== snapshot.metadata.schemaString) {
      const difference = schemaDifference(before.schema, snapshot.schema);
      if (difference.added.length + difference.changed.length + difference.removed.length > 0)
        options.observer?.schemaChange({ target, version: snapshot.version, ...difference });
    }
    if (await autoCompact(target, options, snapshot)) snapshot = await latestSnapshot(target.tableRoot);
    totals.commits++;
    totals.inserted += plan.metrics.inserted;
    totals.updated += plan.metrics.updated;
    totals.deleted += plan.metrics.deleted;
    totals.filesAdded += plan.metrics.filesAdded;
    totals.filesRemoved += plan.metrics.filesRemoved;
    totals.outputRows += plan.metrics.outputRows;
  }
  options.log.info(
    `${target.destination}: ${totals.commits} commit(s), +${totals.inserted} ~${totals.updated} -${totals.deleted} rows`,
  );
  return { destination: target.destination, ...totals, version: snapshot?.version ?? null };
}

/**
 * A change only a new snapshot resolves (a type the table cannot follow, a new primary key). Under
 * `schema_evolution: evolve` the pipeline asks for that snapshot itself: a full refresh of the table, which
 * the next round takes while the table stays queryable, so the error is transient. Under `fail` or `ignore`
 * the table stops with the error, which names the refresh to run.
 */
async function refreshForChange(
  options: ApplyOptions,
  target: ApplyTarget,
  error: TributaryError,
): Promise<TributaryError> {
  if ((target.schemaEvolution ?? 'evolve') !== 'evolve') return error;
  await options.volume.requestRefresh([target.sourceKey]);
  options.log.warn(
    `${target.destination}: ${error.message} A full refresh of the table was requested (schema_evolution: evolve).`,
  );
  return new TributaryError(
    error.code,
    `${error.message} A full refresh of the table was requested (schema_evolution: evolve): the next round takes a new snapshot, which replaces the table in one commit; until then it stays queryable as it is.`,
    {
      retry: 'transient',
      hint: 'Nothing to do: a running pipeline retries by itself; after `run --once`, run it again. Set schema_evolution: fail on the pipeline to stop at such changes instead.',
      cause: error,
    },
  );
}

/** The source commit time (µs) of the reset that starts a segment's entry for a table. */
function resetTimeUs(manifest: SegmentManifest, sourceKey: string): bigint {
  const at = manifest.tables[sourceKey]?.resetCommitTime ?? manifest.firstCommitTime ?? manifest.createdAt;
  return BigInt(Date.parse(at)) * 1000n;
}

/**
 * `DELTA_STORAGE_FULL` for a full disk or quota while writing a table's data file (DuckDB's COPY reports it as
 * an IO error text) or its commit; undefined for any other error. Nothing is committed in either case: the
 * commit is put-if-absent on `_delta_log/<version>.json`, so the table stays readable at the version it had.
 */
async function tableStorageFull(
  error: unknown,
  target: ApplyTarget,
  snapshot: Snapshot | null,
): Promise<TributaryError | undefined> {
  const reason = storageFullReason(error);
  if (reason === undefined) return undefined;
  const at =
    snapshot === null ? 'the table was not created' : `the table stays at version ${snapshot.version}`;
  const what =
    isTributaryError(error) && error.code === 'DELTA_STORAGE_FULL'
      ? error.message
      : `Cannot write a data file of ${target.destination} under ${target.tableRoot}: ${describeStorageFull(reason, (await storageSpace(target.tableRoot)) ?? (await storageSpace(dirname(target.tableRoot))))}. Nothing was committed; ${at}.`;
  return new TributaryError('DELTA_STORAGE_FULL', what, {
    hint: `${reason === 'EDQUOT' ? 'Raise the disk quota on' : 'Free space on'} the file system that holds ${target.tableRoot} (or move the warehouse to a larger disk), then run again: apply continues after the last segment the table committed, and a run without --once retries by itself. A data file the failed write left behind is unreferenced and harmless; VACUUM ${target.destination} removes it once it is past the retention period.`,
    cause: error,
  });
}

/**
 * `delta.autoOptimize.autoCompact`: after a successful apply commit, compact small files as a separate
 * OPTIMIZE commit (only partitions with many small files). It is housekeeping: a failure or a lost race is
 * logged and never fails the round, whose data is already committed. True when it committed.
 */
async function autoCompact(
  target: ApplyTarget,
  options: ApplyOptions,
  snapshot: Snapshot | null,
): Promise<boolean> {
  const enabled = snapshot?.metadata.configuration['delta.autoOptimize.autoCompact'];
  if (enabled !== 'true' && enabled !== 'auto') return false;
  try {
    const result = await optimize(target.tableRoot, { auto: true });
    if (result.version === null) return false;
    options.log.info(`${target.destination}: auto compaction committed version ${result.version}`);
    return true;
  } catch (error) {
    options.log.warn(`${target.destination}: auto compaction skipped: ${messageOf(error)}`);
    return false;
  }
}
