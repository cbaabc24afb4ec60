/**
 * `tributary status`: where each pipeline stands, read from the same records recovery uses — the gateway's
 * newest manifest and each bronze table's Delta log — plus the source's current position when it answers.
 * Nothing here is a second bookkeeping store that could disagree with them.
 *
 * Lag is freshness: how long ago the newest moment is before which every source change is captured
 * (`capturedThrough`), and for a bronze table, applied. It is 0 when the staged position is the source's
 * head now (an idle source, caught up). It grows from the last completed catch-up round when the source has
 * moved on since, and it is unknown (null, never 0) when the source cannot be reached: nothing is known
 * after the last contact. The last contact is recorded by each completed round (staging/source-contact.ts).
 */
import { formatTableName } from '../catalog/warehouse.js';
import type { TributaryConfig } from '../config/load-config.js';
import { isTributaryError, messageOf } from '../core/errors.js';
import type { Position } from '../core/position.js';
import { isDeltaTable, loadSnapshot } from '../delta/snapshot.js';
import { txnAppId } from '../pipeline/apply.js';
import type { GatewayState, SegmentManifest } from '../staging/segment-format.js';
import { readSourceContact } from '../staging/source-contact.js';
import type { StagingVolume } from '../staging/staging-volume.js';
import { gatewayVolumeOf } from './gateway-volume.js';
import { openSource } from './open-source.js';
import { pipelineOf } from './pipeline-of.js';

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
  /**
   * End-to-end lag of the bronze table: seconds since the moment before which every source change of the
   * table is in it (the older of the pipeline's `capturedThrough` and the oldest staged change not applied
   * yet). 0 when caught up; null when unknown (the source cannot be reached, or nothing was captured yet).
   */
  readonly lagSeconds: number | null;
}

/** How far staging trails the source, and why the figure is what it is. */
export interface CaptureLag {
  /** Staging holds everything the source has committed, as of this status check. */
  readonly caughtUp: boolean;
  /** Seconds since `capturedThrough`: 0 when caught up now; null when unknown. Never 0 when unknown. */
  readonly seconds: number | null;
  /** Every change the source committed before this time (ISO) is staged; null when unknown. */
  readonly capturedThrough: string | null;
  /** The last time Tributary reached the source: this status check, or the last completed catch-up round. */
  readonly lastContact: string | null;
  /** Seconds since `lastContact`; grows while the source cannot be reached. */
  readonly secondsSinceContact: number | null;
  /** The figure in words, e.g. `caught up with the source at 2026-01-01T00:00:00.000Z`. */
  readonly reason: string;
}

export interface PipelineStatus {
  readonly pipeline: string;
  readonly gateway: string;
  /**
   * `IDLE` (nothing staged yet), `SNAPSHOTTING`, `SOURCE_UNREACHABLE` (the source's position cannot be read),
   * `UP_TO_DATE` or `BEHIND`.
   */
  readonly state: string;
  readonly stagedPosition: string | null;
  readonly sourcePosition: string | null;
  /** False when the source's position could not be read; `sourceError` says why. */
  readonly sourceReachable: boolean;
  /** Why the source position is missing, e.g. the source is unreachable. */
  readonly sourceError: string | null;
  /** How far staging trails the source. */
  readonly lag: CaptureLag;
  readonly stagedSegments: number;
  /** Source commit time of the newest staged change of a captured table (change-free segments do not count). */
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
  const { gateway, warehouse, volume } = gatewayVolumeOf(config, name);
  const staged = await stagedSegments(volume);
  const state = staged.state;

  let sourcePosition: Position | null = null;
  let sourceError: string | null = null;
  const now = new Date();
  try {
    await using source = await openSource(config, gateway.name);
    sourcePosition = await source.readHead(signal);
  } catch (error) {
    sourceError = isTributaryError(error) ? `${error.code}: ${error.message}` : messageOf(error);
  }
  const lag = captureLag({
    now,
    staged: state?.position ?? null,
    head: sourcePosition,
    sourceError,
    contact: await readSourceContact(volume.dir),
    snapshotting: state?.pendingSnapshot != null,
  });
  const secondsSince = (iso: string) => Math.max(0, Math.round((now.getTime() - Date.parse(iso)) / 100) / 10);

  // Destinations: named tables, and for whole schemas every table the gateway has staged from them.
  const stagedKeys = staged.keys;
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
    const { appliedManifest, newest, pending } = await staged.ofTable(t.source, applied);
    const appliedThrough = appliedManifest?.lastCommitTime ?? null;
    const newestTime = newest?.lastCommitTime ?? null;
    // Bronze holds every change committed before the oldest staged change not applied yet (if any), and
    // staging every change committed before capturedThrough.
    const firstPending = pending[0];
    const completeThrough = [lag.capturedThrough, firstPending?.firstCommitTime ?? null]
      .filter((t): t is string => t !== null)
      .sort()[0];
    tables.push({
      destination,
      source: t.source,
      version: snapshot?.version ?? null,
      appliedSegment: applied,
      pendingSegments: pending.length,
      appliedThrough,
      applyLagSeconds:
        appliedThrough && newestTime
          ? Math.max(0, (Date.parse(newestTime) - Date.parse(appliedThrough)) / 1000)
          : null,
      lagSeconds:
        lag.seconds === null || completeThrough === undefined || snapshot === null
          ? null
          : secondsSince(completeThrough),
    });
  }

  const behind = tables.some((t) => t.pendingSegments > 0) || !lag.caughtUp;
  const status =
    state === null
      ? 'IDLE'
      : state.pendingSnapshot
        ? 'SNAPSHOTTING'
        : sourceError !== null
          ? 'SOURCE_UNREACHABLE'
          : behind
            ? 'BEHIND'
            : 'UP_TO_DATE';
  return {
    pipeline: name,
    gateway: gateway.name,
    state: status,
    stagedPosition: state?.position ?? null,
    sourcePosition,
    sourceReachable: sourceError === null,
    sourceError,
    lag,
    stagedSegments: staged.count,
    newestStagedCommit: staged.newestCommit,
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

/**
 * The capture lag from the staged position, the source's head now (null when it could not be read) and the
 * last completed round's contact:
 * - staged at or past the head: caught up now, lag 0;
 * - the last round read through a head at or past today's: caught up now too; the stretch after the staged
 *   position holds no change of the captured tables and is sealed at most once per TRIBUTARY_IDLE_SEAL_SECONDS;
 * - otherwise the source has moved on since the last round caught up with it: lag grows from then;
 * - the head cannot be read: unknown, and the time since the last contact grows.
 */
export function captureLag(input: {
  readonly now: Date;
  readonly staged: Position | null;
  readonly head: Position | null;
  readonly sourceError: string | null;
  readonly contact: { readonly at: string; readonly head: Position } | undefined;
  readonly snapshotting: boolean;
}): CaptureLag {
  const { now, staged, head, contact } = input;
  const nowIso = now.toISOString();
  const since = (iso: string) => Math.max(0, Math.round((now.getTime() - Date.parse(iso)) / 100) / 10);
  if (head === null) {
    const last = contact?.at ?? null;
    return {
      caughtUp: false,
      seconds: null,
      capturedThrough: last,
      lastContact: last,
      secondsSinceContact: last === null ? null : since(last),
      reason: `the source cannot be reached (${input.sourceError ?? 'no answer'}): the lag is unknown${
        last === null
          ? ', and no catch-up round has recorded a contact with it'
          : `, and grows from the last successful contact at ${last} (${since(last)} s ago), before which every change is staged`
      }`,
    };
  }
  const reached = { lastContact: nowIso, secondsSinceContact: 0 };
  if (staged === null) {
    return {
      caughtUp: false,
      seconds: null,
      capturedThrough: null,
      ...reached,
      reason: 'nothing is staged yet: the first run has not finished its snapshot',
    };
  }
  if (input.snapshotting) {
    return {
      caughtUp: false,
      seconds: null,
      capturedThrough: null,
      ...reached,
      reason: 'a snapshot is being staged; the lag is known once it completes',
    };
  }
  if (staged >= head) {
    return {
      caughtUp: true,
      seconds: 0,
      capturedThrough: nowIso,
      ...reached,
      reason: `caught up with the source at ${nowIso}`,
    };
  }
  if (contact && contact.head >= head) {
    return {
      caughtUp: true,
      seconds: 0,
      capturedThrough: nowIso,
      ...reached,
      reason: `caught up with the source at ${nowIso}: the last catch-up round (at ${contact.at}) read the log to its end and found no change of the captured tables after the staged position; such a change-free stretch is sealed at most once per TRIBUTARY_IDLE_SEAL_SECONDS`,
    };
  }
  if (!contact) {
    return {
      caughtUp: false,
      seconds: null,
      capturedThrough: null,
      ...reached,
      reason:
        'behind the source; no completed catch-up round has recorded when it last caught up, so the lag is unknown until the next one',
    };
  }
  return {
    caughtUp: false,
    // Behind is never shown as 0, however recent the last round.
    seconds: Math.max(0.1, since(contact.at)),
    capturedThrough: contact.at,
    ...reached,
    reason: `behind the source: every change committed before ${contact.at} (the last catch-up round) is staged; later ones may not be yet`,
  };
}

/** What status needs of the staged segments, per table: the manifest it applied last, its newest, its backlog. */
interface StagedSegments {
  readonly state: GatewayState | null;
  readonly count: number;
  /** Every source table the gateway has staged (schema objects show them all). */
  readonly keys: ReadonlySet<string>;
  /** The newest source commit of a segment that holds changes. */
  readonly newestCommit: string | null;
  ofTable(
    sourceKey: string,
    applied: number,
  ): Promise<{
    appliedManifest: SegmentManifest | undefined;
    newest: SegmentManifest | undefined;
    pending: SegmentManifest[];
  }>;
}

/**
 * With the gateway state's index of each table's newest segment, only each table's backlog and a few
 * manifests are read, however many segments retention keeps; a volume staged before the index existed is read
 * whole, as it always was.
 */
async function stagedSegments(volume: StagingVolume): Promise<StagedSegments> {
  const seqs = await volume.listSegments();
  const newestSeq = seqs.at(-1);
  const state = newestSeq === undefined ? null : (await volume.readManifest(newestSeq)).state;
  const index = state?.tableSeqs;
  const holds = (key: string) => (m: SegmentManifest) => m.tables[key] !== undefined;
  if (!state || !index || index.from > (seqs[0] ?? 1)) {
    const manifests: SegmentManifest[] = [];
    for (const seq of seqs) manifests.push(await volume.readManifest(seq));
    return {
      state,
      count: seqs.length,
      keys: new Set(manifests.flatMap((m) => Object.keys(m.tables))),
      newestCommit:
        manifests
          .filter((m) => Object.keys(m.tables).length > 0)
          .map((m) => m.lastCommitTime)
          .filter((t): t is string => t !== null)
          .at(-1) ?? null,
      async ofTable(key, applied) {
        const holding = manifests.filter(holds(key));
        return {
          appliedManifest: [...holding].reverse().find((m) => m.seq <= applied),
          newest: holding.at(-1),
          pending: holding.filter((m) => m.seq > applied),
        };
      },
    };
  }
  const present = new Set(seqs);
  const read = async (seq: number) => (present.has(seq) ? volume.readManifest(seq) : undefined);
  let newestCommit: string | null = null;
  for (let i = seqs.length - 1; i >= 0 && newestCommit === null; i--) {
    const m = await volume.readManifest(seqs[i] as number);
    if (Object.keys(m.tables).length > 0) newestCommit = m.lastCommitTime;
  }
  return {
    state,
    count: seqs.length,
    keys: new Set(Object.keys(index.last)),
    newestCommit,
    async ofTable(key, applied) {
      const last = index.last[key] ?? 0;
      const pending =
        last > applied ? (await volume.manifestsBetween(applied + 1, last)).filter(holds(key)) : [];
      // Apply's txn version is the last segment of its batch, which holds the table.
      const appliedManifest = applied > 0 ? await read(applied) : undefined;
      const newest = last > 0 ? await read(last) : undefined;
      return {
        appliedManifest: appliedManifest && holds(key)(appliedManifest) ? appliedManifest : undefined,
        newest,
        pending,
      };
    },
  };
}
