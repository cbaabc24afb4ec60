/**
 * Applying 10,000 changed keys (70% updates of random keys, 10% deletes, 20% inserts) to bronze tables of
 * 1M and 10M rows, through the real apply path (staged segment → planMerge → commit), copy-on-write against
 * merge-on-read with deletion vectors. Targets from the Delta issue: with deletion vectors the cost follows
 * the number of changes, not the table size (10M within 2× of 1M), and stays ahead of copy-on-write; memory
 * stays bounded while rewriting a 10M-row table (peak RSS reported).
 *
 * Usage: npm run bench -- delta-merge   (BENCH_SIZES, default "1000000,10000000"; BENCH_RUNS, default 5)
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bronzeSchema } from '../src/bronze/bronze-schema.js';
import { planMerge } from '../src/bronze/merge-changes.js';
import type { TableSchema } from '../src/core/table.js';
import type { Action } from '../src/delta/actions.js';
import { commit, newDataFileName, newTableMetadata } from '../src/delta/commit.js';
import { loadSnapshot } from '../src/delta/snapshot.js';
import { protocolFor } from '../src/delta/table-features.js';
import { DuckDb, quoteDuckString } from '../src/engine/duckdb.js';
import { computeFileStats } from '../src/engine/file-stats.js';
import { StagingVolume } from '../src/staging/staging-volume.js';
import { seededRandom } from '../src/testing/seeded-random.js';
import { timeRuns } from './measure.js';

const SIZES = (process.env['BENCH_SIZES'] ?? '1000000,10000000').split(',').map(Number);
const RUNS = Number(process.env['BENCH_RUNS'] ?? 5);
const CHANGES = 10_000;
const ROWS_PER_FILE = 1_000_000;

const SOURCE: TableSchema = {
  id: { schema: 'bench', table: 't' },
  primaryKey: ['id'],
  columns: [
    { name: 'id', type: 'long', nullable: false, sourceType: 'bigint' },
    { name: 'v', type: 'string', nullable: true, sourceType: 'varchar(40)' },
    { name: 'n', type: 'integer', nullable: true, sourceType: 'int' },
  ],
};

/** A bronze table of `rows` rows in files of ROWS_PER_FILE, written directly (as a snapshot apply would). */
async function buildTable(
  db: DuckDb,
  root: string,
  rows: number,
  properties: Record<string, string>,
): Promise<void> {
  const schema = bronzeSchema(SOURCE);
  const actions: Action[] = [
    { protocol: protocolFor(properties, schema) },
    { metaData: newTableMetadata(schema, { configuration: properties }) },
  ];
  const { mkdir } = await import('node:fs/promises');
  await mkdir(root, { recursive: true });
  for (let start = 0; start < rows; start += ROWS_PER_FILE) {
    const name = newDataFileName();
    const path = join(root, name);
    await db.run(
      `COPY (SELECT i::BIGINT AS id, 'value-' || i AS v, (i % 1000)::INTEGER AS n,
                    TIMESTAMPTZ '2026-01-01 00:00:00+00' AS _commit_timestamp
               FROM range(${start}, ${Math.min(rows, start + ROWS_PER_FILE)}) r(i))
         TO ${quoteDuckString(path)} (FORMAT parquet, COMPRESSION snappy)`,
    );
    const info = await stat(path);
    actions.push({
      add: {
        path: name,
        partitionValues: {},
        size: info.size,
        modificationTime: Math.floor(info.mtimeMs),
        dataChange: true,
        stats: await computeFileStats(db, path, schema.fields),
      },
    });
  }
  await commit(root, -1, actions, { operation: 'WRITE', operationParameters: { mode: 'Overwrite' } });
}

/** One staged segment of CHANGES changes over keys of a `rows`-row table. */
async function stageChanges(
  db: DuckDb,
  dir: string,
  rows: number,
  seq: number,
  seed: number,
): Promise<string> {
  const rand = seededRandom(seed);
  const staged = [];
  for (let ord = 0; ord < CHANGES; ord++) {
    const r = rand();
    const id = r < 0.8 ? Math.floor(rand() * rows) : rows + seq * CHANGES + ord;
    const op = r < 0.7 ? 'u' : r < 0.8 ? 'd' : 'c';
    staged.push({
      ord,
      op: op as 'u' | 'd' | 'c',
      commitUs: 1_790_000_000_000_000n,
      row: { id: String(id), v: `changed-${seq}-${ord}`, n: String(ord % 1000) },
    });
  }
  const volume = new StagingVolume(join(dir, 'staging'), 'gw');
  const state = { seq, position: null, snapshotPositions: {}, pendingSnapshot: null, snapshotEpoch: 0 };
  const manifest = await volume.writeSegment(db, {
    seq,
    origin: 'stream',
    snapshot: null,
    startPosition: null,
    endPosition: 'bench:0' as never,
    firstCommitTime: null,
    lastCommitTime: null,
    tables: new Map([['bench.t', { schema: SOURCE, reset: false, rows: staged }]]),
    state,
  });
  return join(volume.segmentDir(seq), manifest.tables['bench.t']?.file as string);
}

async function applyOnce(db: DuckDb, root: string, staged: string): Promise<void> {
  const snapshot = await loadSnapshot(root);
  const plan = await planMerge(db, {
    tableRoot: root,
    snapshot,
    source: SOURCE,
    stagedFiles: [staged],
    stagedColumns: new Set(['id', 'v', 'n']),
    overwrite: false,
  });
  await commit(
    root,
    snapshot.version,
    plan.actions,
    { operation: plan.operation, isBlindAppend: false },
    { snapshot },
  );
}

export async function benchDeltaMerge(): Promise<Record<string, unknown>> {
  const dir = await mkdtemp(join(tmpdir(), 'tributary-bench-merge-'));
  await using db = await DuckDb.open();
  const results: Record<string, unknown>[] = [];
  // Segment numbers are unique across the whole run, as a gateway's are.
  let seq = 0;
  try {
    for (const rows of SIZES) {
      const cowRoot = join(dir, `cow-${rows}`);
      const dvRoot = join(dir, `dv-${rows}`);
      await buildTable(db, cowRoot, rows, {});
      await buildTable(db, dvRoot, rows, { 'delta.enableDeletionVectors': 'true' });
      const rssBefore = process.resourceUsage().maxRSS;
      const cow = await timeRuns(RUNS, async () =>
        applyOnce(db, cowRoot, await stageChanges(db, join(dir, `s${seq}`), rows, ++seq, seq)),
      );
      const cowPeakMiB = Math.round(process.resourceUsage().maxRSS / 1024);
      const dv = await timeRuns(RUNS, async () =>
        applyOnce(db, dvRoot, await stageChanges(db, join(dir, `s${seq}`), rows, ++seq, seq)),
      );
      results.push({
        rows,
        changes: CHANGES,
        copyOnWriteMs: Math.round(cow.medianMs),
        deletionVectorsMs: Math.round(dv.medianMs),
        dvAdvantage: Number((cow.medianMs / dv.medianMs).toFixed(2)),
        copyOnWriteRunsMs: cow.runsMs.map(Math.round),
        deletionVectorsRunsMs: dv.runsMs.map(Math.round),
        peakRssMiBAfterCopyOnWrite: cowPeakMiB,
        peakRssMiBBefore: Math.round(rssBefore / 1024),
      });
    }
    const small = results[0] as { deletionVectorsMs: number; copyOnWriteMs: number } | undefined;
    const large = results.at(-1) as { deletionVectorsMs: number; copyOnWriteMs: number } | undefined;
    const result = {
      runs: RUNS,
      note: 'each run stages its own 10k changes (including the staging write) and applies them with planMerge + commit',
      sizes: results,
      dvScaling:
        small && large ? Number((large.deletionVectorsMs / small.deletionVectorsMs).toFixed(2)) : null,
      dvScalingTarget: 2,
      copyOnWriteScaling:
        small && large ? Number((large.copyOnWriteMs / small.copyOnWriteMs).toFixed(2)) : null,
      peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    };
    await writeFile(
      join(process.cwd(), 'bench', 'results', 'delta-merge.json'),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    return result;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
