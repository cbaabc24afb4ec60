/**
 * Deletes staged segments that are no longer needed (invariant 5 of docs/architecture.md): a segment goes
 * only when every table it holds has been applied by every pipeline that reads the gateway, and it is older
 * than the gateway's retention. The newest segment always stays, because its manifest is the gateway's
 * checkpoint. A segment that is past retention but not yet applied is kept — data is never dropped — and
 * reported, because it means a pipeline has fallen behind.
 */
import type { StagingVolume } from '../staging/staging-volume.js';
import type { Logger } from './logger.js';

/** How far one consumer of the gateway has applied one source table. */
export interface TableProgress {
  readonly pipeline: string;
  readonly sourceKey: string;
  /** The last segment applied (the Delta txn version); 0 when nothing is applied yet. */
  readonly appliedSeq: number;
}

export interface RetentionReport {
  readonly deleted: readonly number[];
  /** Segments past retention that some pipeline has not applied yet. */
  readonly overdue: ReadonlyArray<{ readonly seq: number; readonly waitingFor: readonly string[] }>;
}

/**
 * Retention is checked at most this often per gateway and process, and at least ten times per retention
 * period: segments expire by the day, and listing a long retention's directory costs a few tenths of a second.
 */
const CHECK_EVERY_MS = 10 * 60_000;
const lastChecked = new Map<string, number>();

export async function enforceStagingRetention(options: {
  readonly volume: StagingVolume;
  /** How far every consumer has applied each table; asked only when retention is checked. */
  readonly progress: () => Promise<readonly TableProgress[]>;
  readonly retentionMs: number;
  readonly now: number;
  readonly log: Logger;
  /** Check now whatever the interval says (the volume is full: space is wanted). */
  readonly urgent?: boolean;
}): Promise<RetentionReport> {
  const checked = lastChecked.get(options.volume.dir);
  const interval = Math.min(CHECK_EVERY_MS, options.retentionMs / 10);
  if (!options.urgent && checked !== undefined && options.now - checked < interval)
    return { deleted: [], overdue: [] };
  lastChecked.set(options.volume.dir, options.now);

  const seqs = await options.volume.listSegments();
  const newest = seqs.at(-1);
  if (newest === undefined) return { deleted: [], overdue: [] };
  // Snapshots complete in order, so only the one under way (if any) has segments that must wait for it.
  const pendingEpoch = (await options.volume.readManifest(newest)).state.pendingSnapshot?.epoch;

  const progress = await options.progress();
  const deleted: number[] = [];
  const overdue: Array<{ seq: number; waitingFor: string[] }> = [];
  for (const seq of seqs) {
    if (seq === newest) break;
    const m = await options.volume.readManifest(seq);
    // Segments are sealed in time order: the first one inside retention ends the search.
    if (options.now - Date.parse(m.createdAt) < options.retentionMs) break;
    if (m.snapshot && m.snapshot.epoch === pendingEpoch) continue;
    const waitingFor = Object.keys(m.tables).flatMap((key) =>
      progress.filter((p) => p.sourceKey === key && p.appliedSeq < m.seq).map((p) => `${p.pipeline}:${key}`),
    );
    if (waitingFor.length > 0) {
      overdue.push({ seq: m.seq, waitingFor });
      continue;
    }
    deleted.push(m.seq);
  }
  await options.volume.discard(deleted);
  if (deleted.length > 0)
    options.log.info(`staging: removed ${deleted.length} applied segment(s) past retention`);
  if (overdue.length > 0) {
    const first = overdue[0];
    options.log.warn(
      `STAGING_RETENTION_EXCEEDED: ${overdue.length} segment(s) are past retention but not applied yet (oldest seq ${first?.seq}, waiting for ${first?.waitingFor.join(', ')}); they are kept. Run those pipelines.`,
    );
  }
  return { deleted, overdue };
}
