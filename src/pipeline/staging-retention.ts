/**
 * Deletes staged segments that are no longer needed (invariant 5 of docs/architecture.md): a segment goes
 * only when every table it holds has been applied by every pipeline that reads the gateway, and it is older
 * than the gateway's retention. The newest segment always stays, because its manifest is the gateway's
 * checkpoint. A segment that is past retention but not yet applied is kept — data is never dropped — and
 * reported, because it means a pipeline has fallen behind.
 */
import type { SegmentManifest } from '../staging/segment-format.js';
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

export async function enforceStagingRetention(options: {
  readonly volume: StagingVolume;
  readonly progress: readonly TableProgress[];
  readonly retentionMs: number;
  readonly now: number;
  readonly log: Logger;
}): Promise<RetentionReport> {
  const seqs = await options.volume.listSegments();
  const newest = seqs.at(-1);
  const manifests: SegmentManifest[] = [];
  for (const seq of seqs) manifests.push(await options.volume.readManifest(seq));
  // A snapshot's segments belong together until it completes; none of them goes early.
  const complete = new Set(manifests.filter((m) => m.snapshot?.last).map((m) => m.snapshot?.epoch));

  const deleted: number[] = [];
  const overdue: Array<{ seq: number; waitingFor: string[] }> = [];
  for (const m of manifests) {
    if (m.seq === newest) continue;
    if (m.snapshot && !complete.has(m.snapshot.epoch)) continue;
    if (options.now - Date.parse(m.createdAt) < options.retentionMs) continue;
    const waitingFor = Object.keys(m.tables).flatMap((key) =>
      options.progress
        .filter((p) => p.sourceKey === key && p.appliedSeq < m.seq)
        .map((p) => `${p.pipeline}:${key}`),
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
      `staging: ${overdue.length} segment(s) are past retention but not applied yet (oldest seq ${first?.seq}, waiting for ${first?.waitingFor.join(', ')}); they are kept. Run those pipelines.`,
    );
  }
  return { deleted, overdue };
}
