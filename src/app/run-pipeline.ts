import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { formatTableName, parseVolumeName, type Warehouse } from '../catalog/warehouse.js';
import type { ConnectionConfig, GatewayConfig, TributaryConfig } from '../config/load-config.js';
import { isTributaryError, messageOf, TributaryError } from '../core/errors.js';
import type { ConnectionDirectory, Finding, SourceConnector, TableSelection } from '../core/ports.js';
import { type TableId, type TableSchema, tableKey } from '../core/table.js';
import { latestSnapshot } from '../delta/latest-snapshot.js';
import { DuckDb } from '../engine/duckdb.js';
import {
  type ApplyObserver,
  type ApplyTarget,
  applyStaged,
  type TableApplyReport,
  txnAppId,
} from '../pipeline/apply.js';
import { type CaptureReport, capture } from '../pipeline/capture.js';
import { writeConsistentCut } from '../pipeline/consistent-cut-writer.js';
import type { Logger } from '../pipeline/logger.js';
import { acquireRunLock, type LockOwner } from '../pipeline/run-lock.js';
import {
  enforceStagingRetention,
  type RetentionReport,
  type TableProgress,
} from '../pipeline/staging-retention.js';
import { parseSecretReference } from '../secrets/secret-store.js';
import { recordSourceContact } from '../staging/source-contact.js';
import { gatewayVolumeOf } from './gateway-volume.js';
import { LogShapes } from './log-shapes.js';
import { openConnectionSource, openSource } from './open-source.js';
import { pipelineOf } from './pipeline-of.js';
import type { RoundResources } from './round-resources.js';

export interface RunOnceOptions {
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly snapshotChunkRows?: number;
  readonly segmentMaxChanges?: number;
  /** Written into the gateway's round lock, so a round that takes over a crashed one knows whose it was. */
  readonly updateId?: string;
  /** Called when the round lock is taken over from a process that died holding it (kill -9, power cut). */
  readonly onCrashedRound?: (dead: LockOwner) => Promise<void>;
  /**
   * Called once the round holds the gateway's lock: only then may it show as running, since a process killed
   * before is no round anyone takes over (and so could never be recorded as interrupted).
   */
  readonly onLocked?: () => void;
  /**
   * Called with the round's report or error while the round still holds the lock, and awaited: what must be
   * durable before another process could take the gateway over (the round's pipeline_events outcome).
   */
  readonly beforeUnlock?: (ended: { report: RunReport } | { error: unknown }) => Promise<void>;
  /**
   * A long-running process's source connection, DuckDB and preflight result, kept between the pipeline's
   * rounds (round-resources.ts); without it the round opens its own and closes them at its end.
   */
  readonly resources?: RoundResources;
  /** Consecutive failed rounds before this one: the supervisor's retry count (0: not a retry). */
  readonly retry?: number;
  /** Told of each table's outcome and schema change (pipeline-rounds.ts records them). */
  readonly observer?: ApplyObserver;
}

export interface RunReport {
  readonly pipeline: string;
  readonly capture: CaptureReport;
  readonly tables: readonly TableApplyReport[];
  /** Segments past retention still waiting for a pipeline of the gateway (this one or another). */
  readonly overdue: RetentionReport['overdue'];
}

/** TRIBUTARY_IDLE_SEAL_SECONDS (0 allowed: seal every change-free stretch, as tests do). */
function idleSeal(): { idleSealMs?: number } {
  const raw = process.env['TRIBUTARY_IDLE_SEAL_SECONDS'];
  if (raw === undefined || raw === '') return {};
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new TributaryError(
      'USAGE',
      `TRIBUTARY_IDLE_SEAL_SECONDS must be a number of seconds, not "${raw}".`,
    );
  }
  return { idleSealMs: seconds * 1000 };
}

/**
 * Rows of a snapshot segment, by default. A chunk's rows are held in memory until its segment is sealed, and
 * they outlive the young generation, so V8 lets the old one grow to a few times that before it collects:
 * 20,000 keeps the heap near 150 MiB where 50,000 took it past 300 MiB, for a few percent of throughput.
 */
const DEFAULT_SNAPSHOT_CHUNK_ROWS = 20_000;
/**
 * Changes of a stream segment, by default. A catch-up of 400k changes measured no memory difference between
 * 20,000 and 50,000, and 10% more throughput with 50,000 (fewer segments to seal and list).
 */
const DEFAULT_SEGMENT_CHANGES = 50_000;

/** Tuning knobs for segment sizes (documented in docs/configuration.md); tests use small values. */
function envInt(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new TributaryError('USAGE', `${name} must be a positive integer, not "${raw}".`);
  }
  return value;
}

/** Tables captured by a gateway: the union over every pipeline that reads from it. */
function gatewaySelection(config: TributaryConfig, gateway: string): TableSelection {
  const tables: TableId[] = [];
  const schemas: string[] = [];
  const primaryKeys = new Map<string, string[]>();
  const columnFilters = new Map<string, { include?: string[]; exclude?: string[] }>();
  for (const p of Object.values(config.pipelines)) {
    if (p.gateway !== gateway) continue;
    for (const o of p.objects) {
      if ('table' in o) {
        const id = { schema: o.table.source_schema, table: o.table.source_table };
        tables.push(id);
        const {
          primary_keys: keys,
          include_columns: include,
          exclude_columns: exclude,
        } = o.table.table_configuration;
        if (keys) primaryKeys.set(tableKey(id), keys);
        if (include || exclude)
          columnFilters.set(tableKey(id), {
            ...(include ? { include } : {}),
            ...(exclude ? { exclude } : {}),
          });
      } else {
        schemas.push(o.schema.source_schema);
      }
    }
  }
  return { tables, schemas, primaryKeys, columnFilters };
}

function commitColumnOf(name: string | undefined): { commitTimestampColumn?: string } {
  return name === undefined ? {} : { commitTimestampColumn: name };
}

function targetsOf(
  config: TributaryConfig,
  pipelineName: string,
  tables: readonly TableSchema[],
  warehouse: Warehouse,
): ApplyTarget[] {
  const pipeline = pipelineOf(config, pipelineName);
  const targets = new Map<string, ApplyTarget>();
  for (const o of pipeline.objects) {
    if ('table' in o) {
      const name = {
        catalog: o.table.destination_catalog,
        schema: o.table.destination_schema,
        table: o.table.destination_table,
      };
      const sourceKey = tableKey({ schema: o.table.source_schema, table: o.table.source_table });
      const properties = o.table.table_configuration.table_properties;
      targets.set(sourceKey, {
        sourceKey,
        destination: formatTableName(name),
        tableRoot: warehouse.tablePath(name),
        scdType: o.table.table_configuration.scd_type,
        ...commitColumnOf(o.table.table_configuration.commit_timestamp_column),
        schemaEvolution: pipeline.schema_evolution,
        ...(properties ? { tableProperties: properties } : {}),
      });
    } else {
      for (const t of tables) {
        const sourceKey = tableKey(t.id);
        if (t.id.schema !== o.schema.source_schema || targets.has(sourceKey)) continue;
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(t.id.table)) {
          throw new TributaryError(
            'CONFIG_INVALID',
            `Pipeline ${pipelineName}: the source table "${sourceKey}" has a name that is not a valid destination table name.`,
            {
              hint: `Add a table object for it with a destination_table made of letters, digits and "_".`,
            },
          );
        }
        const name = {
          catalog: o.schema.destination_catalog,
          schema: o.schema.destination_schema,
          table: t.id.table,
        };
        const properties = o.schema.table_configuration.table_properties;
        targets.set(sourceKey, {
          sourceKey,
          destination: formatTableName(name),
          tableRoot: warehouse.tablePath(name),
          scdType: o.schema.table_configuration.scd_type,
          ...commitColumnOf(o.schema.table_configuration.commit_timestamp_column),
          schemaEvolution: pipeline.schema_evolution,
          ...(properties ? { tableProperties: properties } : {}),
        });
      }
    }
  }
  return [...targets.values()];
}

function readinessContext(
  config: TributaryConfig,
  connection: ConnectionConfig,
  gateways: readonly string[],
  signal: AbortSignal,
) {
  const selections = gateways.map((g) => gatewaySelection(config, g));
  const policy = connection.retention_policy;
  return {
    selection: {
      tables: selections.flatMap((s) => s.tables),
      schemas: selections.flatMap((s) => s.schemas),
      primaryKeys: new Map(selections.flatMap((s) => [...(s.primaryKeys ?? new Map())])),
    },
    retention: {
      maxDowntimeHours: policy.max_downtime_hours,
      maxPipelineHours: policy.max_pipeline_duration_hours,
      bufferHours: policy.buffer_hours,
    },
    signal,
  };
}

/** `tributary preflight <connection>`: the checklist's source checks, over every table its pipelines capture. */
export async function preflightConnection(
  config: TributaryConfig,
  connectionName: string,
  signal: AbortSignal,
): Promise<readonly Finding[]> {
  const connection = config.connections[connectionName];
  if (!connection) {
    const known = Object.keys(config.connections);
    throw new TributaryError('USAGE', `No connection named "${connectionName}" in ${config.configPath}.`, {
      hint:
        known.length > 0
          ? `Connections defined there: ${known.join(', ')}.`
          : 'Define one under `connections:`.',
    });
  }
  const gateways = Object.values(config.gateways).filter((g) => g.connection === connectionName);
  await using source = await openConnectionSource(config, connection, gateways[0]);
  return source.checkReadiness(
    readinessContext(
      config,
      connection,
      gateways.map((g) => g.name),
      signal,
    ),
  );
}

const warned = new Set<string>();

/** Refuses to start on a failing source; warnings are logged. */
async function requireReadySource(
  source: SourceConnector,
  config: TributaryConfig,
  gateway: GatewayConfig,
  options: RunOnceOptions,
): Promise<void> {
  const connection = config.connections[gateway.connection] as ConnectionConfig;
  const findings = await source.checkReadiness(
    readinessContext(config, connection, [gateway.name], options.signal),
  );
  for (const f of findings.filter((x) => x.status === 'WARN')) {
    // A continuous run checks again every minute; each warning is worth saying once per process.
    const key = `${connection.name}:${f.check}:${f.evidence}`;
    if (warned.has(key)) continue;
    warned.add(key);
    options.log.warn(`preflight ${f.check}: ${f.evidence}`);
  }
  // A lost log is capture's to report (SOURCE_HISTORY_LOST), so that a full refresh can resolve it.
  const failed = findings.filter((f) => f.status === 'FAIL' && f.recovery !== 'resnapshot');
  if (failed.length > 0) {
    throw new TributaryError(
      'SOURCE_MISCONFIGURED',
      `The source of connection "${connection.name}" fails ${failed.length} preflight check(s): ${failed.map((f) => `${f.check} (${f.evidence})`).join('; ')}.`,
      {
        hint: `${failed
          .map((f) => f.fix)
          .filter(Boolean)
          .join(' ')} Run \`tributary preflight ${connection.name}\` for the full report.`,
      },
    );
  }
}

/**
 * The source says why its log is gone and how to keep it from happening again; the pipeline adds the two
 * ways to recover, by name. Both keep the bronze tables queryable until their new snapshot replaces them.
 */
function withRecovery(error: TributaryError, pipelineName: string): TributaryError {
  return new TributaryError(error.code, error.message, {
    hint: `${error.hint ? `${error.hint} ` : ''}To recover, run \`tributary refresh ${pipelineName}\` (a full refresh of every table of the gateway: the bronze tables stay queryable and each is replaced in one commit when its new snapshot is complete), or set \`auto_full_refresh: true\` on the pipeline to let it do so by itself.`,
    retry: error.retry,
    cause: error,
  });
}

/**
 * One catch-up run: capture from the source up to its position at the start of the run, then apply
 * everything staged to the pipeline's bronze tables.
 */
export async function runPipelineOnce(
  config: TributaryConfig,
  pipelineName: string,
  options: RunOnceOptions,
): Promise<RunReport> {
  const where = gatewayVolumeOf(config, pipelineName);
  const { gateway, warehouse, volume } = where;
  // Even these few bytes fail on a volume filled to the last block: that is STAGING_FULL too, not INTERNAL.
  const stagingFull = async (error: unknown) =>
    (await volume.storageFullError(
      error,
      'starting the run',
      'Nothing was captured or applied in this run.',
    )) ?? error;
  const lock = await (async () => {
    try {
      await warehouse.ensureVolume(parseVolumeName(gateway.storage));
      await mkdir(volume.dir, { recursive: true });
      return await acquireRunLock(join(volume.dir, '.run.lock'), {
        what: `Gateway ${gateway.name}`,
        pipeline: pipelineName,
        ...(options.updateId === undefined ? {} : { updateId: options.updateId }),
        busy: 'transient',
      });
    } catch (error) {
      throw await stagingFull(error);
    }
  })();
  await using _lock = lock;
  if (lock.tookOverFrom !== undefined) await options.onCrashedRound?.(lock.tookOverFrom);
  options.onLocked?.();
  let report: RunReport;
  try {
    report = await roundUnderLock(config, pipelineName, options, where);
  } catch (error) {
    await options.beforeUnlock?.({ error });
    throw error;
  }
  await options.beforeUnlock?.({ report });
  return report;
}

async function roundUnderLock(
  config: TributaryConfig,
  pipelineName: string,
  options: RunOnceOptions,
  where: ReturnType<typeof gatewayVolumeOf>,
): Promise<RunReport> {
  const kept = options.resources;
  if (!kept) {
    await using source = await openSource(config, where.gateway.name, options.log);
    await using db = await DuckDb.open();
    return await roundWith(config, pipelineName, options, { where, source, db });
  }
  try {
    const source = await kept.source(config, where.gateway.name, options.log);
    return await roundWith(config, pipelineName, options, { where, source, db: await kept.db(), kept });
  } catch (error) {
    await kept.dropSource();
    throw error;
  }
}

/** The round itself, under the gateway's lock, with the source and DuckDB it was given. */
async function roundWith(
  config: TributaryConfig,
  pipelineName: string,
  options: RunOnceOptions,
  held: {
    readonly where: ReturnType<typeof gatewayVolumeOf>;
    readonly source: SourceConnector;
    readonly db: DuckDb;
    readonly kept?: RoundResources;
  },
): Promise<RunReport> {
  const { source, db, kept } = held;
  const { gateway, warehouse, volume } = held.where;

  // The head is read before the table shapes, so every change up to the head was written with a shape no
  // newer than the one read: a column added meanwhile is already known.
  const headAt = new Date();
  const head = await source.readHead(options.signal);
  const selection = gatewaySelection(config, gateway.name);
  const tables = await source.listTables(selection, options.signal);
  for (const t of tables) {
    if (!t.keySource?.startsWith('unique:')) continue;
    const key = `${tableKey(t.id)}:${t.keySource}`;
    if (warned.has(key)) continue;
    warned.add(key);
    options.log.warn(
      `${tableKey(t.id)} has no primary key; rows are matched by its unique index ${t.keySource.slice(7)} (${t.primaryKey.join(', ')}). Set table_configuration.primary_keys to choose the key explicitly.`,
    );
  }
  if (kept?.preflightDue(Date.now()) ?? true) {
    await requireReadySource(source, config, gateway, options);
    kept?.preflightPassed(Date.now());
  }
  options.log.info(`${pipelineName}: catching up to ${head} on ${await source.describe(options.signal)}`);

  // A full staging volume stops capture, but what was sealed before it is still applied (and retention may
  // then free space) before the run reports STAGING_FULL: the next round needs less room.
  let captureFailed: TributaryError | undefined;
  // Rows from before a DDL statement may carry columns the shapes read above no longer have (log-shapes.ts).
  const logShapes = new LogShapes();
  const captureOnce = () =>
    capture({
      source: logShapes.watch(source),
      volume,
      db,
      tables,
      snapshotChunkRows:
        options.snapshotChunkRows ?? envInt('TRIBUTARY_SNAPSHOT_CHUNK_ROWS') ?? DEFAULT_SNAPSHOT_CHUNK_ROWS,
      snapshotParallelTables: gateway.snapshot_parallel_tables,
      segmentMaxChanges:
        options.segmentMaxChanges ?? envInt('TRIBUTARY_SEGMENT_MAX_CHANGES') ?? DEFAULT_SEGMENT_CHANGES,
      ...idleSeal(),
      until: head,
      signal: options.signal,
      log: options.log,
      name: gateway.name,
      refreshSchema: (id) =>
        logShapes.refresh(
          id,
          selection,
          async () =>
            (await source.listTables({ ...selection, tables: [id], schemas: [] }, options.signal))[0],
        ),
    });
  // Read before capture, which marks requests done once their snapshot is staged.
  const refreshAsked = (await volume.refreshRequests()).length > 0;
  const captured = await captureOnce()
    .catch(async (error: unknown) => {
      // The source's log is gone (purged binlog, dropped slot): with auto_full_refresh, or once the user
      // asked for a refresh (`tributary refresh`), the whole gateway is snapshotted again, streaming from the
      // new snapshot's position, and each bronze table is replaced in one commit. Otherwise the error stops
      // the run, saying how to recover.
      if (!isTributaryError(error) || error.retry !== 'resnapshot') throw error;
      const why = pipelineOf(config, pipelineName).auto_full_refresh
        ? 'auto_full_refresh is on'
        : refreshAsked
          ? 'a full refresh was requested'
          : undefined;
      if (why === undefined) throw withRecovery(error, pipelineName);
      options.log.warn(
        `${error.code}: ${error.message} ${why}: taking a new snapshot of every table of gateway ${gateway.name}.`,
      );
      await volume.requestRefresh(['*'], { restartLog: true });
      return captureOnce();
    })
    .catch((error: unknown) => {
      if (!isTributaryError(error) || error.code !== 'STAGING_FULL' || options.signal.aborted) throw error;
      captureFailed = error;
      options.log.warn(`${error.message} Applying the segments sealed so far before stopping.`);
      return undefined;
    });
  // Capture read the log up to the head and sealed every change of the captured tables up to it: staging
  // holds everything the source committed before headAt. `tributary status` reports the lag from this.
  if (captured !== undefined) {
    await recordSourceContact(volume.dir, { at: headAt.toISOString(), head }).catch((error: unknown) =>
      options.log.warn(`could not record the source contact for tributary status: ${messageOf(error)}`),
    );
  }

  let applied: TableApplyReport[];
  let retention: RetentionReport = { deleted: [], overdue: [] };
  try {
    applied = await applyStaged({
      pipeline: pipelineName,
      db,
      volume,
      targets: targetsOf(config, pipelineName, tables, warehouse),
      maxSegmentsPerCommit: 64,
      signal: options.signal,
      log: options.log,
      ...(options.observer ? { observer: options.observer } : {}),
    });

    retention = await enforceStagingRetention({
      volume,
      progress: () => gatewayProgress(config, gateway.name, tables, warehouse),
      retentionMs: gateway.staging_retention_days * 86_400_000,
      now: Date.now(),
      log: options.log,
      urgent: captureFailed !== undefined,
    });
  } catch (error) {
    // The full staging volume is what stopped this run; the apply failure (already logged per table) is
    // secondary, and likely the same disk.
    if (captureFailed) throw captureFailed;
    if (isTributaryError(error) && / table\(s\) could not be applied/.test(error.message)) {
      options.log.warn(
        `${pipelineName}: the consistent cut does not move while a table fails: queries keep reading every table as of the last complete round (tributary sql --latest shows the healthy tables' newer rows).`,
      );
    }
    throw error;
  }
  // Every table has applied every sealed segment, and segments end on transaction boundaries: together the
  // tables' versions show the source at one point. (A round with a failed table threw above and leaves the
  // previous cut in place.)
  const state = await volume.loadState();
  await writeConsistentCut(warehouse.root, {
    pipeline: pipelineName,
    segment: state.seq,
    position: state.position,
    recordedAt: new Date().toISOString(),
    tables: Object.fromEntries(
      applied.flatMap((t) => (t.version === null ? [] : [[t.destination, t.version] as const])),
    ),
  });
  if (captureFailed) throw captureFailed;
  if (captured === undefined) throw new TributaryError('INTERNAL', 'capture ended without a report');
  return { pipeline: pipelineName, capture: captured, tables: applied, overdue: retention.overdue };
}

/** How far every pipeline reading the gateway has applied each of its tables, from the tables' own logs. */
async function gatewayProgress(
  config: TributaryConfig,
  gateway: string,
  tables: readonly TableSchema[],
  warehouse: Warehouse,
): Promise<TableProgress[]> {
  const progress: TableProgress[] = [];
  for (const p of Object.values(config.pipelines)) {
    if (p.gateway !== gateway) continue;
    for (const target of targetsOf(config, p.name, tables, warehouse)) {
      const snapshot = await latestSnapshot(target.tableRoot);
      progress.push({
        pipeline: p.name,
        sourceKey: target.sourceKey,
        appliedSeq: snapshot?.txnVersion(txnAppId(p.name, target.destination)) ?? 0,
      });
    }
  }
  return progress;
}

/** The configured connections for `tributary sql` (DESCRIBE CONNECTION, SHOW TABLES ... USING CONNECTION). */
export function connectionDirectory(config: TributaryConfig): ConnectionDirectory {
  const connection = (name: string): ConnectionConfig => {
    const c = config.connections[name];
    if (!c) throw new TributaryError('INTERNAL', `connection ${name} not checked`);
    return c;
  };
  return {
    names: () => Object.keys(config.connections).sort(),
    describe(name) {
      const c = connection(name);
      const reference = parseSecretReference(c.password);
      const gateways = Object.values(config.gateways).filter((g) => g.connection === name);
      return [
        { key: 'Connection Name', value: c.name },
        { key: 'Connection Type', value: c.type.toUpperCase() },
        { key: 'Credential Type', value: 'USERNAME_PASSWORD' },
        { key: 'Host', value: c.host },
        { key: 'Port', value: String(c.port) },
        { key: 'User', value: c.user },
        // The reference says where the password lives; the password itself is never resolved here.
        { key: 'Password', value: reference ? `secret ${reference.scope}/${reference.key}` : '(not set)' },
        { key: 'Gateways', value: gateways.map((g) => g.name).join(', ') },
        { key: 'Config', value: config.configPath },
      ];
    },
    async tableNames(name, schema, signal) {
      const c = connection(name);
      await using source = await openConnectionSource(config, c);
      return source.tableNames(schema, signal);
    },
  };
}
