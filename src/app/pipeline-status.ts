/**
 * `tributary status`: where each pipeline stands, read from the same records recovery uses — the gateway's
 * newest manifest and each bronze table's Delta log — plus the source's current position when it answers.
 * Nothing here is a second bookkeeping store that could disagree with them.
 */
import { join } from 'node:path';
import { formatTableName, parseVolumeName, Warehouse } from '../catalog/warehouse.js';
import type { TributaryConfig } from '../config/load-config.js';
import { isTributaryError, messageOf } from '../core/errors.js';
import { isDeltaTable, loadSnapshot } from '../delta/snapshot.js';
import { txnAppId } from '../pipeline/apply.js';
import type { SegmentManifest } from '../staging/segment-format.js';
import { StagingVolume } from '../staging/staging-volume.js';
import { openSource } from './open-source.js';
import { pipelineOf } from './run-pipeline.js';

export interface TableStatus {
  readonly destination: string;
  readonly source: string;
  /** Bronze Delta version; null before the first apply. */
  readonly version: number | null;
  /** Last staged segment applied to this table. */
  readonly appliedSegment: number;
  /** Staged segments holding this table that are not applied yet. */
  readonly pendingSegments: number;
  /** Source commit time of the newest change applied (ISO), when known. */
  readonly appliedThrough: string | null;
  /** Seconds between the newest staged change and the newest applied change of this table. */
  readonly applyLagSeconds: number | null;
}

export interface PipelineStatus {
  readonly pipeline: string;
  readonly gateway: string;
  /** `SNAPSHOTTING`, `IDLE` (nothing staged yet), `UP_TO_DATE` or `BEHIND`. */
  readonly state: string;
  readonly stagedPosition: string | null;
  readonly sourcePosition: string | null;
  /** Why the source position is missing, e.g. the source is unreachable. */
  readonly sourceError: string | null;
  readonly stagedSegments: number;
  readonly newestStagedCommit: string | null;
  readonly snapshot: {
    readonly rowsStaged: number;
    readonly tablesDone: number;
    readonly tables: number;
  } | null;
  readonly tables: readonly TableStatus[];
}

export async function pipelineStatus(
  config: TributaryConfig,
  name: string,
  signal: AbortSignal,
): Promise<PipelineStatus> {
  const pipeline = pipelineOf(config, name);
  const gateway = config.gateways[pipeline.gateway];
  if (!gateway) throw new Error(`gateway ${pipeline.gateway} not validated`);
  const warehouse = new Warehouse(config.warehouse);
  const volume = new StagingVolume(
    join(warehouse.volumePath(parseVolumeName(gateway.storage)), gateway.name),
    gateway.name,
  );
  const seqs = await volume.listSegments();
  const manifests: SegmentManifest[] = [];
  for (const seq of seqs) manifests.push(await volume.readManifest(seq));
  const state = manifests.at(-1)?.state ?? null;

  let sourcePosition: string | null = null;
  let sourceError: string | null = null;
  try {
    await using source = await openSource(config, gateway.name);
    sourcePosition = await source.readHead(signal);
  } catch (error) {
    sourceError = isTributaryError(error) ? `${error.code}: ${error.message}` : messageOf(error);
  }

  // Destinations: named tables, and for whole schemas every table the gateway has staged from them.
  const stagedKeys = new Set(manifests.flatMap((m) => Object.keys(m.tables)));
  const targets: Array<{ source: string; name: { catalog: string; schema: string; table: string } }> = [];
  for (const o of pipeline.objects) {
    if ('table' in o) {
      targets.push({
        source: `${o.table.source_schema}.${o.table.source_table}`,
        name: {
          catalog: o.table.destination_catalog,
          schema: o.table.destination_schema,
          table: o.table.destination_table,
        },
      });
    } else {
      for (const key of [...stagedKeys].sort()) {
        if (!key.startsWith(`${o.schema.source_schema}.`) || targets.some((t) => t.source === key)) continue;
        const table = key.slice(o.schema.source_schema.length + 1);
        targets.push({
          source: key,
          name: { catalog: o.schema.destination_catalog, schema: o.schema.destination_schema, table },
        });
      }
    }
  }

  const tables: TableStatus[] = [];
  for (const t of targets) {
    const destination = formatTableName(t.name);
    const root = warehouse.tablePath(t.name);
    const snapshot = (await isDeltaTable(root)) ? await loadSnapshot(root) : null;
    const applied = snapshot?.txnVersion(txnAppId(name, destination)) ?? 0;
    const holding = manifests.filter((m) => m.tables[t.source] !== undefined);
    const appliedManifest = [...holding].reverse().find((m) => m.seq <= applied);
    const newest = holding.at(-1);
    const appliedThrough = appliedManifest?.lastCommitTime ?? null;
    const newestTime = newest?.lastCommitTime ?? null;
    tables.push({
      destination,
      source: t.source,
      version: snapshot?.version ?? null,
      appliedSegment: applied,
      pendingSegments: holding.filter((m) => m.seq > applied).length,
      appliedThrough,
      applyLagSeconds:
        appliedThrough && newestTime
          ? Math.max(0, (Date.parse(newestTime) - Date.parse(appliedThrough)) / 1000)
          : null,
    });
  }

  const behind =
    tables.some((t) => t.pendingSegments > 0) ||
    (sourcePosition !== null &&
      state?.position !== null &&
      state?.position !== undefined &&
      state.position < sourcePosition);
  const status =
    state === null ? 'IDLE' : state.pendingSnapshot ? 'SNAPSHOTTING' : behind ? 'BEHIND' : 'UP_TO_DATE';
  return {
    pipeline: name,
    gateway: gateway.name,
    state: status,
    stagedPosition: state?.position ?? null,
    sourcePosition,
    sourceError,
    stagedSegments: seqs.length,
    newestStagedCommit:
      manifests
        .map((m) => m.lastCommitTime)
        .filter((t): t is string => t !== null)
        .at(-1) ?? null,
    snapshot: state?.pendingSnapshot
      ? {
          rowsStaged: state.pendingSnapshot.rows,
          tablesDone: state.pendingSnapshot.done.length,
          tables: state.pendingSnapshot.tables.length,
        }
      : null,
    tables,
  };
}
