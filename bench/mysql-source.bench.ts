/**
 * MariaDB source throughput against the source's own tools, measured in the same run:
 *
 * - binlog decode: Tributary's binlog reader (zongji, regrouped into transactions) against
 *   `mariadb-binlog --read-from-remote-server --verbose` decoding the same range (the C tool is the limit);
 * - snapshot: Tributary's snapshot reader against the `mariadb` client reading the same table into
 *   /dev/null, and the full snapshot path (read + stage to Parquet) for reference.
 *
 * Usage: npm run bench -- mysql-source   (BENCH_ROWS, default 200000; BENCH_RUNS, default 3)
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { DuckDb } from '../src/engine/duckdb.js';
import { capture } from '../src/pipeline/capture.js';
import { silentLogger } from '../src/pipeline/logger.js';
import { decodeBinlogPosition } from '../src/sources/mysql/binlog-position.js';
import { MySqlSource } from '../src/sources/mysql/mysql-source.js';
import { StagingVolume } from '../src/staging/staging-volume.js';
import { startMariaDb } from '../src/testing/mariadb-server.js';
import { rate, runDiscarding, timeRuns } from './measure.js';

const ROWS = Number(process.env['BENCH_ROWS'] ?? 200_000);
const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);

export async function benchMysqlSource(): Promise<Record<string, unknown>> {
  const server = await startMariaDb({ serverId: 201, extraArgs: ['--max-binlog-size=1073741824'] });
  const work = await mkdtemp(join(tmpdir(), 'tributary-bench-'));
  try {
    const admin = await mysql.createConnection({
      host: server.host,
      port: server.port,
      user: 'root',
      password: server.rootPassword,
      charset: 'utf8mb4',
    });
    await admin.query('CREATE DATABASE bench');
    await admin.query(`CREATE TABLE bench.t (
      id BIGINT PRIMARY KEY, a INT, b VARCHAR(64), c DECIMAL(12,2), d DATETIME(6),
      e DOUBLE, f TEXT, g BIGINT UNSIGNED, h VARCHAR(20), i DATE)`);
    const signal = new AbortController().signal;
    const endpoint = {
      name: 'bench',
      host: server.host,
      port: server.port,
      user: 'root',
      password: server.rootPassword,
    };
    await using source = new MySqlSource(endpoint, { serverId: 4242 });
    const from = await source.readHead(signal);
    for (let start = 0; start < ROWS; start += 1000) {
      const rows = [];
      for (let id = start; id < Math.min(ROWS, start + 1000); id++) {
        rows.push([
          id,
          id % 1000,
          `name-${id}`,
          (id % 100000) / 100,
          '2024-05-06 07:08:09.123456',
          id / 7,
          `text ${id} `.repeat(3),
          id * 1000,
          `s${id % 97}`,
          '2024-05-06',
        ]);
      }
      await admin.query('INSERT INTO bench.t VALUES ?', [rows]);
    }
    const until = await source.readHead(signal);
    await admin.end();
    const tables = await source.listTables(
      { tables: [{ schema: 'bench', table: 't' }], schemas: [] },
      signal,
    );

    // Binlog decode.
    const start = decodeBinlogPosition(from);
    const stop = decodeBinlogPosition(until);
    const pwd = { MYSQL_PWD: server.rootPassword };
    const binlogArgs = [
      '--read-from-remote-server',
      `--host=${server.host}`,
      `--port=${server.port}`,
      '--user=root',
      '--verbose',
      '--base64-output=DECODE-ROWS',
      `--start-position=${start.offset}`,
      `--stop-position=${stop.offset}`,
      start.file,
    ];
    const decodeLimit = await timeRuns(RUNS, () => runDiscarding('mariadb-binlog', binlogArgs, pwd));
    let decoded = 0;
    const decodeOurs = await timeRuns(RUNS, async () => {
      decoded = 0;
      for await (const batch of source.stream(from, { tables, until, signal }))
        decoded += batch.events.length;
    });
    if (decoded !== ROWS) throw new Error(`decoded ${decoded} changes, expected ${ROWS}`);

    // Snapshot read.
    const clientArgs = [
      `--host=${server.host}`,
      `--port=${server.port}`,
      '--user=root',
      '--quick',
      '--batch',
      '--skip-column-names',
      '-e',
      'SELECT * FROM bench.t',
    ];
    const snapshotLimit = await timeRuns(RUNS, () => runDiscarding('mariadb', clientArgs, pwd));
    let read = 0;
    const snapshotOurs = await timeRuns(RUNS, async () => {
      read = 0;
      for await (const batch of source.snapshot(tables, { chunkRows: 50_000, signal }))
        read += batch.events.length;
    });
    if (read !== ROWS) throw new Error(`snapshot read ${read} rows, expected ${ROWS}`);

    // The full snapshot path: read and stage sealed Parquet segments.
    await using db = await DuckDb.open();
    let run = 0;
    const snapshotStaged = await timeRuns(RUNS, async () => {
      const volume = new StagingVolume(join(work, `staging-${run++}`), 'gw');
      await capture({
        source,
        volume,
        db,
        tables,
        snapshotChunkRows: 50_000,
        segmentMaxChanges: 50_000,
        until,
        signal,
        log: silentLogger,
      });
    });

    const result = {
      rows: ROWS,
      runs: RUNS,
      binlogDecode: {
        limitTool: 'mariadb-binlog --read-from-remote-server --verbose',
        limitRowsPerSec: rate(ROWS, decodeLimit.medianMs),
        tributaryRowsPerSec: rate(ROWS, decodeOurs.medianMs),
        ratio: Number((decodeLimit.medianMs / decodeOurs.medianMs).toFixed(2)),
        target: 0.5,
      },
      snapshot: {
        limitTool: 'mariadb --quick --batch SELECT * > /dev/null',
        limitRowsPerSec: rate(ROWS, snapshotLimit.medianMs),
        tributaryReadRowsPerSec: rate(ROWS, snapshotOurs.medianMs),
        ratio: Number((snapshotLimit.medianMs / snapshotOurs.medianMs).toFixed(2)),
        target: 0.8,
        tributaryReadAndStageRowsPerSec: rate(ROWS, snapshotStaged.medianMs),
      },
      peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    };
    await writeFile(
      join(process.cwd(), 'bench', 'results', 'mysql-source.json'),
      `${JSON.stringify(result, null, 2)}\n`,
    );
    return result;
  } finally {
    await server.stop();
    await rm(work, { recursive: true, force: true });
  }
}
