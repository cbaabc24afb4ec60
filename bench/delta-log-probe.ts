/**
 * Child process of the `delta-log` bench, so that no figure is taken in the process that built the tables (its
 * heap and DuckDB instances carry a thousand checkpoint writes):
 *
 * - `time <with checkpoints> <without checkpoints> <version>`: `loadSnapshot` of both tables against DuckDB
 *   reading that version's live files, interleaved (a warm-up, then BENCH_RUNS rounds); prints JSON.
 * - `baseline|snapshot|scan <root> [version]`, `read <root> <files.json>`: does one thing and prints its peak
 *   RSS. Peak RSS never goes down, so each memory figure needs a fresh process; `baseline` loads Node, the
 *   modules and DuckDB but reads nothing.
 */
import { readFile } from 'node:fs/promises';
import { withConnection } from '../src/delta/duckdb.js';
import { scanSql } from '../src/delta/scan.js';
import { loadSnapshot, type Snapshot } from '../src/delta/snapshot.js';
import { DuckDb, quoteDuckString } from '../src/engine/duckdb.js';
import { ROWS_PER_FILE, ratio, timeInterleaved } from './delta-log.bench.js';

function fileList(snapshot: Snapshot): string {
  return `[${snapshot.files.map((a) => quoteDuckString(snapshot.dataFilePath(a))).join(', ')}]`;
}

async function replayVersusRead(
  db: DuckDb,
  withCheckpoints: string,
  withoutCheckpoints: string,
  version: number,
): Promise<Record<string, unknown>> {
  const reference = await loadSnapshot(withCheckpoints, { version });
  const plain = await loadSnapshot(withoutCheckpoints, { version });
  if (plain.files.length !== reference.files.length) {
    throw new Error(`version ${version}: ${reference.files.length} vs ${plain.files.length} live files`);
  }
  const expectedRows = reference.files.length * ROWS_PER_FILE;
  const list = fileList(reference);

  const t = await timeInterleaved({
    replay: { body: () => loadSnapshot(withCheckpoints, { version }) },
    replayNoCheckpoints: { body: () => loadSnapshot(withoutCheckpoints, { version }) },
    count: {
      body: async () => {
        const rows = await db.rows(`SELECT count(*) AS n FROM read_parquet(${list})`);
        if (Number(rows[0]?.['n']) !== expectedRows) throw new Error(`count(*) = ${rows[0]?.['n']}`);
      },
    },
    fullRead: {
      body: () => db.run(`CREATE TEMP TABLE bench_read AS SELECT * FROM read_parquet(${list})`),
      after: () => db.run('DROP TABLE bench_read'),
    },
    // For reference (no target): the whole Delta read, replay + scan planning + the scan itself.
    deltaRead: {
      body: async () => {
        const snapshot = await loadSnapshot(withCheckpoints, { version });
        await db.run(`CREATE TEMP TABLE bench_scan AS ${await scanSql(snapshot, db.connection)}`);
      },
      after: () => db.run('DROP TABLE bench_scan'),
    },
  });
  const { replay, replayNoCheckpoints, count, fullRead, deltaRead } = t;
  return {
    version,
    checkpointVersion: reference.checkpointVersion ?? null,
    liveFiles: reference.files.length,
    rows: expectedRows,
    loadSnapshotMs: replay,
    loadSnapshotWithoutCheckpointsMs: replayNoCheckpoints,
    duckdbCountStarMs: count,
    duckdbSelectStarMs: fullRead,
    ratioReplayToCountStar: ratio(replay, count),
    ratioReplayToSelectStar: ratio(replay, fullRead),
    target: '< 1',
    targetMet: { countStar: ratio(replay, count) < 1, selectStar: ratio(replay, fullRead) < 1 },
    checkpointSpeedup: Number((replayNoCheckpoints.medianMs / replay.medianMs).toFixed(1)),
    deltaScanEndToEndMs: deltaRead,
    ratioDeltaScanToSelectStar: ratio(deltaRead, fullRead),
  };
}

const [mode, root, ...rest] = process.argv.slice(2);
if (!mode || !root) throw new Error('usage: delta-log-probe <time|baseline|snapshot|scan|read> <root> ...');

await using db = await DuckDb.open();
await db.rows('SELECT 1');
// The Delta layer's own DuckDB instance (checkpoint reads) is part of the baseline too.
await withConnection((c) => c.run('SELECT 1'));
let output: Record<string, unknown>;
if (mode === 'time') {
  const [withoutCheckpoints, version] = rest;
  if (withoutCheckpoints === undefined || version === undefined)
    throw new Error('time needs two roots and a version');
  output = await replayVersusRead(db, root, withoutCheckpoints, Number(version));
} else {
  const version = mode !== 'read' && rest[0] !== undefined ? Number(rest[0]) : undefined;
  let detail: Record<string, unknown> = {};
  if (mode === 'snapshot') {
    const snapshot = await loadSnapshot(root, { version });
    detail = { files: snapshot.files.length };
  } else if (mode === 'scan') {
    const snapshot = await loadSnapshot(root, { version });
    await db.run(`CREATE TEMP TABLE probe AS ${await scanSql(snapshot, db.connection)}`);
    detail = {
      files: snapshot.files.length,
      rows: (await db.rows('SELECT count(*) AS n FROM probe'))[0]?.['n'],
    };
  } else if (mode === 'read') {
    if (rest[0] === undefined) throw new Error('read needs a JSON file listing the data files');
    const files = JSON.parse(await readFile(rest[0], 'utf8')) as string[];
    await db.run(
      `CREATE TEMP TABLE probe AS SELECT * FROM read_parquet([${files.map(quoteDuckString).join(', ')}])`,
    );
    detail = { files: files.length, rows: (await db.rows('SELECT count(*) AS n FROM probe'))[0]?.['n'] };
  } else if (mode !== 'baseline') {
    throw new Error(`unknown probe mode ${mode}`);
  }
  // `maxRSS` (getrusage) of a process spawned by a bigger one starts at the parent's peak: Linux carries the
  // forked address space's high-water mark across exec. `VmHWM` is the same peak for this address space only.
  const status = await readFile('/proc/self/status', 'utf8');
  const hwm = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  output = { mode, peakRssKiB: Number(hwm), maxRssKiB: process.resourceUsage().maxRSS, ...detail };
}
process.stdout.write(`${JSON.stringify(output)}\n`);
