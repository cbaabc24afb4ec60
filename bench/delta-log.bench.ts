/**
 * Delta log replay against the data read it precedes, measured in the same run.
 *
 * One table is built with the real `commit()` (checkpoints every 10 commits, as `delta.checkpointInterval`
 * defaults to): BENCH_COMMITS commits shaped like Tributary's bronze MERGEs (one small DuckDB-written Parquet
 * file added per commit with stats, a `txn` per commit, and every 10th commit removing 7 earlier files), so
 * about 30% of the files are live at the end and the checkpoints carry the other 70% as tombstones. A second
 * table gets the same commits with checkpoints disabled (`delta.checkpointInterval` 10^9) and the same data
 * files (hard links).
 *
 * - replay: `loadSnapshot` (latest, and time travel to a version in the middle that is not a checkpoint),
 *   against DuckDB reading the snapshot's live Parquet files (`count(*)`, and `SELECT *` into a temp table).
 *   Target: replay / read < 1. The table without checkpoints shows what checkpoints buy. Timed in a fresh
 *   process (`delta-log-probe.ts`), not in the one that built the tables.
 * - memory: peak RSS of fresh processes doing `loadSnapshot`, or a full scan through `scanSql`, against one
 *   that only loaded the modules and DuckDB, and one that reads the same files with `read_parquet` directly.
 *
 * Usage: npm run bench -- delta-log   (BENCH_COMMITS, default 10000; BENCH_RUNS, default 3; BENCH_KEEP=1
 * keeps the tables in the temp directory, for profiling)
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { link, mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { DuckDBValue } from '@duckdb/node-api';
import type { Action, AddFile, Metadata } from '../src/delta/actions.js';
import { type CommitRequest, commit, newDataFileName, newTableActions } from '../src/delta/commit.js';
import type { StructType } from '../src/delta/schema.js';
import { loadSnapshot } from '../src/delta/snapshot.js';
import { formatStats } from '../src/delta/stats.js';
import { DuckDb, quoteDuckString } from '../src/engine/duckdb.js';
import { seededRandom as prng } from '../src/testing/seeded-random.js';

const COMMITS = Number(process.env['BENCH_COMMITS'] ?? 10_000);
export const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);
export const ROWS_PER_FILE = 100;
/** Every REMOVE_EVERY-th commit (offset 5, so never a checkpoint version) removes REMOVE_COUNT earlier files. */
const REMOVE_EVERY = 10;
const REMOVE_COUNT = 7;
/** Files written per DuckDB `COPY ... PARTITION_BY` (below DuckDB's 100 open files per partitioned write). */
const FILES_PER_COPY = 90;
const APP_ID = 'tributary-bench-delta-log';

const SCHEMA: StructType = {
  type: 'struct',
  fields: [
    { name: 'id', type: 'long', nullable: true, metadata: {} },
    { name: 'customer', type: 'string', nullable: true, metadata: {} },
    { name: 'amount', type: 'decimal(12,2)', nullable: true, metadata: {} },
    { name: 'status', type: 'string', nullable: true, metadata: {} },
    { name: 'updated_at', type: 'timestamp', nullable: true, metadata: {} },
    { name: '_commit_timestamp', type: 'timestamp', nullable: true, metadata: {} },
  ],
};
const COLUMNS = SCHEMA.fields.map((f) => f.name);

export interface Timing {
  medianMs: number;
  runsMs: number[];
}

export interface Measured {
  body: () => Promise<unknown>;
  /** Runs untimed after each run (cleanup). */
  after?: () => Promise<unknown>;
}

/**
 * One unmeasured warm-up of each body (page cache, JIT), then RUNS rounds that time every body once each, in
 * turn: the machine's drift over the rounds then affects all of them alike, which matters for their ratios.
 */
export async function timeInterleaved<K extends string>(
  measured: Record<K, Measured>,
): Promise<Record<K, Timing>> {
  const entries = Object.entries(measured) as [K, Measured][];
  const runs = new Map<K, number[]>(entries.map(([k]) => [k, []]));
  for (let round = -1; round < RUNS; round++) {
    for (const [name, { body, after }] of entries) {
      const start = process.hrtime.bigint();
      await body();
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      await after?.();
      if (round >= 0) runs.get(name)?.push(ms);
    }
  }
  return Object.fromEntries(
    entries.map(([k]) => {
      const ms = runs.get(k) ?? [];
      return [k, { medianMs: median(ms), runsMs: ms.map(round) }];
    }),
  ) as Record<K, Timing>;
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return round(sorted[Math.floor(sorted.length / 2)] ?? Number.NaN);
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function seconds(ms: number): number {
  return Math.round(ms / 100) / 10;
}

export function ratio(ours: Timing, limit: Timing): number {
  return Number((ours.medianMs / limit.medianMs).toFixed(3));
}

interface BuiltTables {
  withCheckpoints: string;
  withoutCheckpoints: string;
  dataFiles: number;
  dataBytes: number;
  writeDataMs: number;
  commitWithCheckpointsMs: number;
  commitWithoutCheckpointsMs: number;
  /** Latency of the commits that also write a checkpoint, over the last tenth of the build. */
  lastTenthCheckpointingCommitMs: number;
  lastTenthOtherCommitMs: number;
}

/** Writes one Parquet file of ROWS_PER_FILE rows per commit and returns their `add` actions (stats included). */
async function writeDataFiles(db: DuckDb, root: string, work: string): Promise<AddFile[]> {
  await db.run(`CREATE TEMP TABLE gen AS
    SELECT (i // ${ROWS_PER_FILE})::INTEGER AS f, i::BIGINT AS id, 'customer-' || (i % 5003) AS customer,
           ((i % 100000) / 100)::DECIMAL(12,2) AS amount, ['new', 'paid', 'shipped', 'returned'][i % 4 + 1] AS status,
           TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i) AS updated_at,
           TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds((i // ${ROWS_PER_FILE}) * 60) AS _commit_timestamp
      FROM range(${COMMITS * ROWS_PER_FILE}) t(i)`);
  const staging = join(work, 'staging');
  await mkdir(staging, { recursive: true });
  const names: string[] = new Array(COMMITS);
  for (let from = 0; from < COMMITS; from += FILES_PER_COPY) {
    const to = Math.min(COMMITS, from + FILES_PER_COPY);
    const dir = join(staging, String(from));
    await db.run(
      `COPY (SELECT * FROM gen WHERE f >= ${from} AND f < ${to}) TO ${quoteDuckString(dir)} (FORMAT parquet, COMPRESSION snappy, PARTITION_BY (f))`,
    );
    for (let f = from; f < to; f++) {
      const written = await readdir(join(dir, `f=${f}`));
      if (written.length !== 1) throw new Error(`DuckDB wrote ${written.length} files for data file ${f}`);
      const name = newDataFileName();
      await rename(join(dir, `f=${f}`, written[0] as string), join(root, name));
      names[f] = name;
    }
  }
  await rm(staging, { recursive: true, force: true });

  const selects = ['f', 'count(*) AS n'];
  COLUMNS.forEach((c, i) => {
    selects.push(
      `count(*) - count("${c}") AS nulls_${i}`,
      `min("${c}") AS min_${i}`,
      `max("${c}") AS max_${i}`,
    );
  });
  const rows = (
    await db.connection.runAndReadAll(`SELECT ${selects.join(', ')} FROM gen GROUP BY f ORDER BY f`)
  ).getRowObjects() as Record<string, DuckDBValue>[];
  await db.run('DROP TABLE gen');
  return Promise.all(
    rows.map(async (row, f) => {
      const name = names[f] as string;
      const info = await stat(join(root, name));
      const minValues: Record<string, unknown> = {};
      const maxValues: Record<string, unknown> = {};
      const nullCount: Record<string, number> = {};
      COLUMNS.forEach((c, i) => {
        nullCount[c] = Number(row[`nulls_${i}`]);
        minValues[c] = row[`min_${i}`];
        maxValues[c] = row[`max_${i}`];
      });
      return {
        path: name,
        partitionValues: {},
        size: info.size,
        modificationTime: Math.floor(info.mtimeMs),
        dataChange: true,
        stats: formatStats({ numRecords: Number(row['n']), minValues, maxValues, nullCount }),
      };
    }),
  );
}

/** The commits: version 0 creates the table with file 0; version v adds file v (and sometimes removes some). */
function* commitPlan(adds: readonly AddFile[]): Generator<{ actions: Action[]; request: CommitRequest }> {
  const random = prng(42);
  const live: number[] = [];
  for (let v = 0; v < adds.length; v++) {
    const actions: Action[] = [];
    let removed = 0;
    if (v % REMOVE_EVERY === 5 && live.length > REMOVE_COUNT) {
      const now = Date.now();
      for (let k = 0; k < REMOVE_COUNT; k++) {
        const at = Math.floor(random() * live.length);
        const victim = adds[live[at] as number] as AddFile;
        live[at] = live[live.length - 1] as number;
        live.pop();
        removed++;
        actions.push({
          remove: {
            path: victim.path,
            deletionTimestamp: now,
            dataChange: true,
            extendedFileMetadata: true,
            partitionValues: {},
            size: victim.size,
          },
        });
      }
    }
    actions.push({ add: adds[v] as AddFile });
    live.push(v);
    if (v > 0) actions.push({ txn: { appId: APP_ID, version: v, lastUpdated: Date.now() } });
    const request: CommitRequest =
      v === 0
        ? { operation: 'WRITE', operationParameters: { mode: 'Append', partitionBy: [] } }
        : {
            operation: 'MERGE',
            operationParameters: { predicate: 'target.id = source.id' },
            operationMetrics: {
              numTargetRowsInserted: String(ROWS_PER_FILE),
              numTargetRowsUpdated: '0',
              numTargetRowsDeleted: '0',
              numTargetFilesAdded: '1',
              numTargetFilesRemoved: String(removed),
              numOutputRows: String(ROWS_PER_FILE),
            },
            isBlindAppend: false,
          };
    yield { actions, request };
  }
}

async function buildTables(db: DuckDb, work: string): Promise<BuiltTables> {
  const withCheckpoints = join(work, 'with-checkpoints');
  const withoutCheckpoints = join(work, 'without-checkpoints');
  await mkdir(withCheckpoints, { recursive: true });
  await mkdir(withoutCheckpoints, { recursive: true });

  const start = performance.now();
  const adds = await writeDataFiles(db, withCheckpoints, work);
  for (const add of adds) await link(join(withCheckpoints, add.path), join(withoutCheckpoints, add.path));
  const writeDataMs = performance.now() - start;

  const [protocol, metaData] = newTableActions(SCHEMA);
  const plainMetadata: Metadata = {
    ...metaData.metaData,
    id: randomUUID(),
    configuration: { 'delta.checkpointInterval': '1000000000' },
  };
  const warnings: string[] = [];
  const log = { warn: (message: string) => warnings.push(message) };
  const plan = [...commitPlan(adds)];
  /** Commits the plan to one table; returns its wall time and the commit latencies of its last tenth. */
  const commitAll = async (root: string, metadata: Metadata) => {
    const begin = performance.now();
    const checkpointing: number[] = [];
    const plain: number[] = [];
    for (const [v, { actions, request }] of plan.entries()) {
      const start = performance.now();
      const all: Action[] = v === 0 ? [protocol, { metaData: metadata }, ...actions] : actions;
      await commit(root, v - 1, all, request, { log });
      if (v >= plan.length * 0.9) (v % 10 === 0 ? checkpointing : plain).push(performance.now() - start);
    }
    return { ms: performance.now() - begin, checkpointing, plain };
  };
  // The tables are independent: committing to both at once overlaps one's fsyncs with the other's work.
  const [withResult, withoutResult] = await Promise.all([
    commitAll(withCheckpoints, metaData.metaData),
    commitAll(withoutCheckpoints, plainMetadata),
  ]);
  // A failed checkpoint does not fail a commit; here it would make the figures meaningless.
  if (warnings.length > 0) throw new Error(`post-commit work failed: ${warnings[0]}`);
  const dataBytes = adds.reduce((sum, a) => sum + a.size, 0);
  return {
    withCheckpoints,
    withoutCheckpoints,
    dataFiles: adds.length,
    dataBytes,
    writeDataMs,
    commitWithCheckpointsMs: withResult.ms,
    commitWithoutCheckpointsMs: withoutResult.ms,
    lastTenthCheckpointingCommitMs: median(withResult.checkpointing),
    lastTenthOtherCommitMs: median(withResult.plain),
  };
}

const execFileAsync = promisify(execFile);
const PROBE = join(dirname(fileURLToPath(import.meta.url)), 'delta-log-probe.js');

async function child(args: readonly string[]): Promise<Record<string, unknown>> {
  const { stdout } = await execFileAsync(process.execPath, [PROBE, ...args], { maxBuffer: 1 << 24 });
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** Peak RSS (MiB) of a fresh process running the probe; the median of RUNS processes. */
async function probe(args: readonly string[]): Promise<{ peakRssMiB: number; runs: number[] }> {
  const runs: number[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(Math.round(Number((await child(args))['peakRssKiB']) / 1024));
  return { peakRssMiB: median(runs), runs };
}

function loadAverage(): number {
  return Number((loadavg()[0] as number).toFixed(2));
}

async function logStats(root: string): Promise<Record<string, unknown>> {
  const logDir = join(root, '_delta_log');
  const names = await readdir(logDir);
  const commits = names.filter((n) => /^\d{20}\.json$/.test(n));
  const checkpoints = names.filter((n) => n.endsWith('.checkpoint.parquet')).sort();
  let commitBytes = 0;
  for (const n of commits) commitBytes += (await stat(join(logDir, n))).size;
  const newest = checkpoints.at(-1);
  return {
    commitFiles: commits.length,
    commitBytes,
    checkpoints: checkpoints.length,
    newestCheckpointBytes: newest ? (await stat(join(logDir, newest))).size : 0,
  };
}

export async function benchDeltaLog(): Promise<Record<string, unknown>> {
  const work = await mkdtemp(join(tmpdir(), 'tributary-bench-delta-'));
  try {
    const loadBefore = loadAverage();
    await using db = await DuckDb.open();
    const buildStart = performance.now();
    const tables = await buildTables(db, work);
    const buildMs = performance.now() - buildStart;
    const latest = COMMITS - 1;
    // Not a checkpoint version: replay is a checkpoint plus a few commits, as for most versions.
    const middle = Math.floor(COMMITS / 2 / 10) * 10 + 5;

    const loadAfterBuild = loadAverage();
    const roots = [tables.withCheckpoints, tables.withoutCheckpoints];
    const latestFigures = await child(['time', ...roots, String(latest)]);
    const middleFigures = await child(['time', ...roots, String(middle)]);

    const snapshot = await loadSnapshot(tables.withCheckpoints);
    const filesJson = join(work, 'live-files.json');
    await writeFile(filesJson, JSON.stringify(snapshot.files.map((a) => snapshot.dataFilePath(a))));
    const baseline = await probe(['baseline', tables.withCheckpoints]);
    const snapshotRss = await probe(['snapshot', tables.withCheckpoints]);
    const snapshotPlainRss = await probe(['snapshot', tables.withoutCheckpoints]);
    const scanRss = await probe(['scan', tables.withCheckpoints]);
    const readRss = await probe(['read', tables.withCheckpoints, filesJson]);

    const result = {
      machine: {
        cpus: availableParallelism(),
        memoryGiB: Math.round(totalmem() / 2 ** 30),
        node: process.version,
        date: new Date().toISOString(),
        // Other work on the machine skews the figures; one minute averages before and after the build and at the end.
        loadAverage1m: [loadBefore, loadAfterBuild, loadAverage()],
      },
      commits: COMMITS,
      runs: RUNS,
      table: {
        rowsPerFile: ROWS_PER_FILE,
        dataFilesWritten: tables.dataFiles,
        dataMiB: Number((tables.dataBytes / 2 ** 20).toFixed(1)),
        liveFilesLatest: snapshot.files.length,
        withCheckpoints: await logStats(tables.withCheckpoints),
        withoutCheckpoints: await logStats(tables.withoutCheckpoints),
      },
      build: {
        totalSeconds: seconds(buildMs),
        writeDataFilesSeconds: seconds(tables.writeDataMs),
        // The two tables are committed concurrently: these are the wall times of each, overlapping.
        commitsWithCheckpointsSeconds: seconds(tables.commitWithCheckpointsMs),
        commitsWithoutCheckpointsSeconds: seconds(tables.commitWithoutCheckpointsMs),
        lastTenthCheckpointingCommitMs: tables.lastTenthCheckpointingCommitMs,
        lastTenthOtherCommitMs: tables.lastTenthOtherCommitMs,
      },
      latest: latestFigures,
      timeTravelMiddle: middleFigures,
      memory: {
        method: 'peak RSS (VmHWM) of a fresh node process per figure, median of BENCH_RUNS processes',
        baselineMiB: baseline.peakRssMiB,
        loadSnapshotMiB: snapshotRss.peakRssMiB,
        loadSnapshotWithoutCheckpointsMiB: snapshotPlainRss.peakRssMiB,
        scanSqlIntoTempTableMiB: scanRss.peakRssMiB,
        duckdbReadParquetIntoTempTableMiB: readRss.peakRssMiB,
        loadSnapshotOverBaselineMiB: snapshotRss.peakRssMiB - baseline.peakRssMiB,
        scanOverBaselineMiB: scanRss.peakRssMiB - baseline.peakRssMiB,
        readOverBaselineMiB: readRss.peakRssMiB - baseline.peakRssMiB,
      },
    };
    await mkdir(join(process.cwd(), 'bench', 'results'), { recursive: true });
    await writeFile(
      join(process.cwd(), 'bench', 'results', 'delta-log.json'),
      // Number arrays on one line, as `biome format` writes them.
      `${JSON.stringify(result, null, 2).replace(/\[\s+([-\d.,\s]+?)\s+\]/g, (_, xs: string) => `[${xs.split(/,\s*/).join(', ')}]`)}\n`,
    );
    return result;
  } finally {
    if (process.env['BENCH_KEEP'] === '1') process.stderr.write(`delta-log: tables kept in ${work}\n`);
    else await rm(work, { recursive: true, force: true });
  }
}
