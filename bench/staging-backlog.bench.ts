/**
 * The staging work of one round when retention keeps many applied segments (25 days of a busy continuous
 * pipeline is a few hundred thousand), against the work the same round did before the gateway state indexed
 * each table's newest segment, measured in the same run.
 *
 * A volume gets BENCH_SEGMENTS segments of two tables (`quiet` only in the first, `busy` in every one), each
 * applied already (the bronze tables' txn versions say so); then one more segment of `busy` arrives.
 *
 * - now: what a round does with staging: `loadState` twice (capture, the consistent cut), `applyStaged` of
 *   both tables (applying the new segment) and `enforceStagingRetention` (checked at most every 10 minutes:
 *   the first round lists the directory, the later ones do not; the first is reported on its own).
 * - before: the same round plus the staging reads the earlier code made on top of it: a directory listing
 *   per `loadState` (two each) and per `applyStaged` and retention, and the manifest of every segment read
 *   (stat, then parsed from the per-process cache) by apply and by retention.
 *
 * Usage: npm run bench -- staging-backlog   (BENCH_SEGMENTS, default 100000; BENCH_RUNS, default 5)
 */
import { copyFile, link, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { commit } from '../src/delta/commit.js';
import { latestSnapshot } from '../src/delta/latest-snapshot.js';
import { DuckDb } from '../src/engine/duckdb.js';
import { type ApplyTarget, applyStaged, txnAppId } from '../src/pipeline/apply.js';
import { silentLogger } from '../src/pipeline/logger.js';
import { enforceStagingRetention } from '../src/pipeline/staging-retention.js';
import {
  afterSegment,
  type GatewayState,
  INITIAL_GATEWAY_STATE,
  MANIFEST_FILE,
  type SegmentManifest,
} from '../src/staging/segment-format.js';
import { StagingVolume } from '../src/staging/staging-volume.js';
import { sealShopSegment } from '../src/testing/staged-segments.js';
import { timeRuns } from './measure.js';
import { machine, writeResult } from './pipeline-config.js';

const SEGMENTS = Number(process.env['BENCH_SEGMENTS'] ?? 100_000);
const RUNS = Number(process.env['BENCH_RUNS'] ?? 5);

export async function benchStagingBacklog(): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'bench-staging-'));
  await using db = await DuckDb.open();
  try {
    const volume = new StagingVolume(join(dir, 'volume', 'gw'), 'gw');
    const targets: ApplyTarget[] = ['quiet', 'busy'].map((t) => ({
      sourceKey: `shop.${t}`,
      destination: `c.bronze.${t}`,
      tableRoot: join(dir, 'warehouse', t),
    }));
    const seal = (state: GatewayState, tables: readonly string[]) =>
      sealShopSegment(volume, db, state, tables);
    const apply = () =>
      applyStaged({
        pipeline: 'p',
        db,
        volume,
        targets,
        maxSegmentsPerCommit: 64,
        signal: new AbortController().signal,
        log: silentLogger,
      });

    // Segment 1 for real, and both tables created from it.
    let state = await seal(INITIAL_GATEWAY_STATE, ['quiet', 'busy']);
    await apply();
    // Segments 2..N of `busy`: copies of segment 1's busy file under new manifests, written directly (sealing
    // 100k segments through DuckDB would take most of an hour and measure nothing of interest here).
    const first = JSON.parse(
      await readFile(join(volume.segmentDir(1), MANIFEST_FILE), 'utf8'),
    ) as SegmentManifest;
    const busy = first.tables['shop.busy'];
    if (!busy) throw new Error('segment 1 lacks shop.busy');
    const built = Date.now();
    for (let seq = 2; seq <= SEGMENTS; seq++) {
      state = { ...state, ...afterSegment(state, seq, ['shop.busy']) };
      const segment = volume.segmentDir(seq);
      await mkdir(segment);
      // A file takes at most 65,000 links (ext4): each block of 60,000 segments links to a copy of its own.
      const origin = seq - ((seq - 1) % 60_000);
      if (origin === seq) await copyFile(join(volume.segmentDir(1), busy.file), join(segment, busy.file));
      else await link(join(volume.segmentDir(origin), busy.file), join(segment, busy.file));
      const manifest: SegmentManifest = { ...first, seq, tables: { 'shop.busy': busy }, state };
      await writeFile(join(segment, MANIFEST_FILE), JSON.stringify(manifest));
    }
    const buildSeconds = (Date.now() - built) / 1000;
    // The bronze tables have applied them all.
    for (const target of targets) {
      const snapshot = await latestSnapshot(target.tableRoot);
      await commit(
        target.tableRoot,
        snapshot?.version ?? 0,
        [{ txn: { appId: txnAppId('p', target.destination), version: SEGMENTS, lastUpdated: Date.now() } }],
        { operation: 'WRITE', operationParameters: {}, isBlindAppend: true },
        { snapshot },
      );
    }

    const progress = async () =>
      targets.map((t) => ({ pipeline: 'p', sourceKey: t.sourceKey, appliedSeq: SEGMENTS }));
    const retention = () =>
      enforceStagingRetention({
        volume,
        progress,
        retentionMs: 25 * 86_400_000,
        now: Date.now(),
        log: silentLogger,
      });
    // One new segment per round, as a busy continuous pipeline has.
    const nowRound = async () => {
      state = await seal(state, ['busy']);
      await volume.loadState();
      const applied = await apply();
      if (applied.find((r) => r.destination === 'c.bronze.busy')?.inserted !== 1)
        throw new Error('the round did not apply its one new segment');
      await retention();
      await volume.loadState();
    };
    const firstRound = await timeRuns(1, nowRound);
    const now = await timeRuns(RUNS, nowRound);

    // The earlier code's staging reads for the same round: listings, and every manifest by apply and retention.
    const seqs = await volume.listSegments();
    for (const seq of seqs) await volume.readManifest(seq);
    const oldReads = async () => {
      for (let i = 0; i < 4; i++) await volume.listSegments();
      for (let pass = 0; pass < 2; pass++) {
        for (const seq of await volume.listSegments()) await volume.readManifest(seq);
      }
    };
    const reads = await timeRuns(RUNS, oldReads);
    const before = await timeRuns(RUNS, async () => {
      await nowRound();
      await oldReads();
    });

    const result = {
      machine: machine(),
      segments: SEGMENTS,
      runs: RUNS,
      buildSeconds,
      roundMs: {
        now: now.medianMs,
        nowFirstRoundOfProcess: firstRound.medianMs,
        before: before.medianMs,
        /** Of which the listings and manifest reads the index made unnecessary. */
        beforeStagingReads: reads.medianMs,
      },
      nowRuns: now.runsMs,
      beforeRuns: before.runsMs,
      speedup: Math.round((before.medianMs / now.medianMs) * 10) / 10,
    };
    await writeResult('staging-backlog', result);
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
