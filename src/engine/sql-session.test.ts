import { chmod, cp, mkdtemp, readdir, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Warehouse } from '../catalog/warehouse.js';
import { commit, commitWithRetry, DEFAULT_PROTOCOL, newTableMetadata } from '../delta/commit.js';
import { withConnection } from '../delta/duckdb.js';
import { commitFileName } from '../delta/log-files.js';
import { writeDataFile } from '../delta/operations/write-files.js';
import type { StructType } from '../delta/schema.js';
import { loadSnapshot } from '../delta/snapshot.js';
import { SqlSession } from './sql-session.js';
import { statementKind } from './statements/router.js';

const CORPUS = '/work/shared/conformance/delta';

let dir: string;
let warehouse: Warehouse;
let ordersRoot: string;
/** Commit times of lake.bronze.orders, by version. */
const orderTimes = new Map<number, number>();

const schema: StructType = {
  type: 'struct',
  fields: [
    { name: 'order_id', type: 'long', nullable: false, metadata: {} },
    { name: 'amount', type: 'decimal(10,2)', nullable: true, metadata: {} },
    { name: 'order_date', type: 'timestamp', nullable: true, metadata: {} },
    { name: 'region', type: 'string', nullable: true, metadata: {} },
  ],
};

async function append(root: string, rows: string, region: string): Promise<number> {
  const snapshot = await loadSnapshot(root);
  const add = await withConnection(async (c) => {
    await c.run("SET TimeZone = 'UTC'");
    return writeDataFile(c, {
      snapshot,
      query: `SELECT order_id::BIGINT AS order_id, amount::DECIMAL(10,2) AS amount, order_date::TIMESTAMPTZ AS order_date, '${region}' AS region FROM (VALUES ${rows}) AS t(order_id, amount, order_date)`,
      partitionValues: { region },
      dataChange: true,
    });
  });
  const { version } = await commitWithRetry(
    root,
    async () => ({
      actions: [{ add }],
      request: { operation: 'WRITE', operationParameters: { mode: 'Append' } },
    }),
    { snapshot },
  );
  return version;
}

/** lake.bronze.orders: v1 two EU orders, v2 one US order, v3 one more EU order; commits a day apart in 2026. */
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tributary-sql-'));
  warehouse = new Warehouse(path.join(dir, 'lakehouse'));
  ordersRoot = warehouse.tablePath({ catalog: 'lake', schema: 'bronze', table: 'orders' });
  await commit(
    ordersRoot,
    -1,
    [
      { protocol: DEFAULT_PROTOCOL },
      { metaData: newTableMetadata(schema, { partitionColumns: ['region'] }) },
    ],
    { operation: 'CREATE TABLE' },
  );
  await append(ordersRoot, "(1, 10.50, '2026-01-01 10:00:00'), (2, 20.00, '2026-01-02 11:00:00')", 'eu');
  await append(ordersRoot, "(3, 30.25, '2026-01-03 12:00:00')", 'us');
  await append(ordersRoot, "(4, 5.00, '2026-01-04 13:00:00')", 'eu');
  for (let v = 0; v <= 3; v++) {
    const t = Date.UTC(2026, 0, 1 + v, 12);
    orderTimes.set(v, t);
    await utimes(path.join(ordersRoot, '_delta_log', commitFileName(v)), t / 1000, t / 1000);
  }
  const customers = warehouse.tablePath({ catalog: 'lake', schema: 'bronze', table: 'customers' });
  await commit(
    customers,
    -1,
    [
      { protocol: DEFAULT_PROTOCOL },
      {
        metaData: newTableMetadata({
          type: 'struct',
          fields: [{ name: 'customer_id', type: 'long', nullable: true, metadata: {} }],
        }),
      },
    ],
    { operation: 'CREATE TABLE' },
  );
  await warehouse.ensureVolume({ catalog: 'lake', schema: 'landing', volume: 'ingestion_volume' });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function session(): Promise<SqlSession> {
  return SqlSession.open(warehouse, { defaultCatalog: 'lake' });
}

async function rows(sql: string): Promise<Record<string, unknown>[]> {
  await using s = await session();
  return [...(await s.execute(sql)).rows];
}

/** A private copy of the orders table (statements that write must not disturb the other tests). */
async function copyOrders(table: string): Promise<string> {
  const root = warehouse.tablePath({ catalog: 'lake', schema: 'bronze', table });
  await cp(ordersRoot, root, { recursive: true, preserveTimestamps: true });
  return root;
}

async function copyCorpus(relative: string, name: string): Promise<string> {
  const target = path.join(dir, name);
  await cp(path.join(CORPUS, relative), target, { recursive: true });
  const writable = async (d: string): Promise<void> => {
    await chmod(d, 0o755);
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await writable(path.join(d, e.name));
      else await chmod(path.join(d, e.name), 0o644);
    }
  };
  await writable(target);
  return target;
}

describe('queries', () => {
  it('reads catalog.schema.table and schema.table, with Databricks functions', async () => {
    expect(await rows('SELECT count(*) AS n, sum(amount) AS total FROM lake.bronze.orders')).toEqual([
      { n: 4, total: '65.75' },
    ]);
    expect(
      await rows(
        "SELECT order_id FROM bronze.orders WHERE order_date >= CURRENT_TIMESTAMP() - INTERVAL 7 DAYS OR region = 'us' ORDER BY 1",
      ),
    ).toEqual([{ order_id: 3 }]);
    expect(await rows('SELECT count(*) AS n FROM bronze.customers')).toEqual([{ n: 0 }]);
  });

  it('time travels by version, timestamp and @v, for names and paths, keeping the table alias', async () => {
    expect(await rows('SELECT count(*) AS n FROM lake.bronze.orders VERSION AS OF 1')).toEqual([{ n: 2 }]);
    expect(await rows('SELECT count(*) AS n FROM bronze.orders@v2')).toEqual([{ n: 3 }]);
    expect(
      await rows("SELECT count(*) AS n FROM bronze.orders TIMESTAMP AS OF '2026-01-03 13:00:00'"),
    ).toEqual([{ n: 3 }]);
    expect(
      await rows(
        `SELECT count(*) AS n FROM delta.\`${ordersRoot}\` FOR SYSTEM_TIME AS OF DATE '2026-01-02' + INTERVAL 12 HOURS`,
      ),
    ).toEqual([{ n: 2 }]);
    expect(
      await rows(
        'SELECT orders.order_id FROM bronze.orders VERSION AS OF 3 WHERE orders.order_id NOT IN (SELECT order_id FROM bronze.orders VERSION AS OF 2)',
      ),
    ).toEqual([{ order_id: 4 }]);
    expect(
      await rows(
        'SELECT count(*) AS n FROM bronze.orders cur JOIN bronze.orders VERSION AS OF 1 old ON cur.order_id = old.order_id',
      ),
    ).toEqual([{ n: 2 }]);
  });

  it('reads tables with deletion vectors and column mapping through the Delta reader', async () => {
    const root = await copyCorpus('kernel-rs/data/table-with-dv-small', 'dv-small');
    expect(await rows(`SELECT count(*) AS n FROM delta.\`${root}\``)).toEqual([{ n: 8 }]);
    expect(await rows(`SELECT count(*) AS n FROM delta.\`${root}\` VERSION AS OF 0`)).toEqual([{ n: 10 }]);
    const cm = await copyCorpus('kernel-rs/golden/table-with-columnmapping-mode-name/delta', 'cm');
    expect(await rows(`SELECT count(*) AS n, count(StringType) AS s FROM delta.\`${cm}\``)).toEqual([
      { n: 6, s: 5 },
    ]);
  });

  it('names unknown tables with SQL_UNKNOWN_TABLE and passes DuckDB syntax errors as SQL_ERROR', async () => {
    await using s = await session();
    await expect(s.execute('SELECT * FROM lake.bronze.nope')).rejects.toMatchObject({
      code: 'SQL_UNKNOWN_TABLE',
      message: 'Table or view not found: lake.bronze.nope',
      hint: expect.stringContaining('lake.bronze.orders'),
    });
    await expect(s.execute('SELECT * FROM other.bronze.orders')).rejects.toMatchObject({
      code: 'SQL_UNKNOWN_TABLE',
      message: 'Table or view not found: other.bronze.orders',
    });
    await expect(s.execute('SELECT * FROM bronze.nope VERSION AS OF 1')).rejects.toMatchObject({
      code: 'SQL_UNKNOWN_TABLE',
      message: 'Table or view not found: bronze.nope',
    });
    await expect(s.execute('DESCRIBE HISTORY delta.`/no/such/table`')).rejects.toMatchObject({
      code: 'SQL_UNKNOWN_TABLE',
      message: 'Table or view not found: delta.`/no/such/table`',
    });
    await expect(s.execute('SELEC 1')).rejects.toMatchObject({
      code: 'SQL_ERROR',
      message: expect.stringContaining('Parser Error: syntax error at or near "SELEC"'),
    });
    await expect(s.execute('VACUUM lake.bronze.orders RETAIN many HOURS')).rejects.toMatchObject({
      code: 'SQL_ERROR',
      message: expect.stringContaining('expected a number'),
    });
    await expect(s.execute('SELECT * FROM bronze.orders VERSION AS OF 99')).rejects.toMatchObject({
      message: expect.stringContaining('Version 99'),
    });
  });

  it("reads the change data feed with table_changes('table', start [, end]), by version or timestamp", async () => {
    await using s = await session();
    // Spark's feed of a table with updates and deletes, read by path (the transcribed kernel test's totals).
    const cdf = await copyCorpus('kernel-rs/data/cdf-table-non-partitioned', 'cdf-np');
    const feed = await s.execute(
      `SELECT _commit_version AS v, _change_type AS type, count(*) AS n FROM table_changes('delta.\`${cdf}\`', 0, 2) GROUP BY ALL ORDER BY v, type`,
    );
    expect(feed.rows).toEqual([
      { v: 0, type: 'insert', n: 10 },
      { v: 1, type: 'update_postimage', n: 3 },
      { v: 1, type: 'update_preimage', n: 3 },
      { v: 2, type: 'update_postimage', n: 3 },
      { v: 2, type: 'update_preimage', n: 3 },
    ]);
    // By name, from a version the feed was turned on at, with timestamps as bounds.
    const root = await copyOrders('orders_cdf');
    await s.execute(
      "ALTER TABLE bronze.orders_cdf SET TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')",
    );
    await append(root, "(5, 1.00, '2026-02-01 00:00:00')", 'us');
    await append(root, "(6, 2.00, '2026-02-02 00:00:00')", 'eu');
    for (let v = 4; v <= 6; v++) {
      const t = Date.UTC(2026, 1, v, 12);
      await utimes(path.join(root, '_delta_log', commitFileName(v)), t / 1000, t / 1000);
    }
    const ids = async (args: string) =>
      (await s.execute(`SELECT order_id, _commit_version AS v FROM table_changes(${args}) ORDER BY v`)).rows;
    expect(await ids("'lake.bronze.orders_cdf', 4")).toEqual([
      { order_id: 5, v: 5 },
      { order_id: 6, v: 6 },
    ]);
    expect(await ids("'bronze.orders_cdf', 5, 5")).toEqual([{ order_id: 5, v: 5 }]);
    // From the first commit at or after the start, to the last at or before the end.
    expect(await ids("'bronze.orders_cdf', '2026-02-05 00:00:00', '2026-02-05 23:00:00'")).toEqual([
      { order_id: 5, v: 5 },
    ]);
    expect(await ids("'bronze.orders_cdf', '2026-02-05 12:00:00'")).toEqual([
      { order_id: 5, v: 5 },
      { order_id: 6, v: 6 },
    ]);
    // Before the feed was on, and malformed calls, are errors that say so.
    await expect(s.execute("SELECT * FROM table_changes('bronze.orders_cdf', 2)")).rejects.toMatchObject({
      code: 'DELTA_PROTOCOL',
      message: expect.stringContaining('not enabled'),
    });
    await expect(s.execute('SELECT * FROM table_changes(bronze.orders_cdf, 2)')).rejects.toMatchObject({
      code: 'SQL_ERROR',
      hint: expect.stringContaining("table_changes('catalog.schema.table'"),
    });
    await expect(s.execute("SELECT * FROM table_changes('bronze.orders_cdf', x)")).rejects.toMatchObject({
      code: 'SQL_ERROR',
      message: expect.stringContaining('version number or a timestamp'),
    });
  });

  it('runs several statements, returning the last result, and follows USE', async () => {
    await using s = await SqlSession.open(warehouse);
    expect((await s.execute("SELECT 1 AS a; -- comment\nSELECT ';' AS b;")).rows).toEqual([{ b: ';' }]);
    await expect(s.execute('SELECT * FROM bronze.orders')).rejects.toMatchObject({
      code: 'SQL_UNKNOWN_TABLE',
    });
    expect((await s.execute('USE CATALOG lake; SELECT count(*) AS n FROM bronze.orders')).rows).toEqual([
      { n: 4 },
    ]);
    expect((await s.execute('USE lake.bronze; DESCRIBE HISTORY orders LIMIT 1')).rows).toHaveLength(1);
    expect((await s.execute('SELECT count(*) AS n FROM orders')).rows).toEqual([{ n: 4 }]);
  });
});

describe('DESCRIBE', () => {
  it('DESCRIBE HISTORY lists commits newest first with Databricks columns', async () => {
    await using s = await session();
    const result = await s.execute('DESCRIBE HISTORY lake.bronze.orders');
    expect(result.columns).toEqual([
      'version',
      'timestamp',
      'userId',
      'userName',
      'operation',
      'operationParameters',
      'job',
      'notebook',
      'clusterId',
      'readVersion',
      'isolationLevel',
      'isBlindAppend',
      'operationMetrics',
      'userMetadata',
      'engineInfo',
    ]);
    expect(result.rows.map((r) => [r['version'], r['operation'], r['timestamp']])).toEqual([
      [3, 'WRITE', '2026-01-04 12:00:00+00'],
      [2, 'WRITE', '2026-01-03 12:00:00+00'],
      [1, 'WRITE', '2026-01-02 12:00:00+00'],
      [0, 'CREATE TABLE', '2026-01-01 12:00:00+00'],
    ]);
    expect(result.rows[0]).toMatchObject({
      operationParameters: { mode: 'Append' },
      readVersion: 2,
      isBlindAppend: true,
    });
    expect((await s.execute('DESC HISTORY bronze.orders LIMIT 2')).rows).toHaveLength(2);
  });

  it('DESCRIBE DETAIL describes the table', async () => {
    const [detail] = await rows('DESCRIBE DETAIL bronze.orders');
    expect(detail).toMatchObject({
      format: 'delta',
      name: 'lake.bronze.orders',
      location: ordersRoot,
      partitionColumns: ['region'],
      numFiles: 3,
      properties: {},
      minReaderVersion: 1,
      minWriterVersion: 2,
      tableFeatures: ['appendOnly', 'invariants'],
      lastModified: '2026-01-04 12:00:00+00',
    });
    const [byPath] = await rows(`DESCRIBE DETAIL delta.\`${ordersRoot}\``);
    expect(byPath).toMatchObject({ name: null, numFiles: 3 });
  });
});

describe('maintenance statements', () => {
  it('OPTIMIZE with WHERE and ZORDER BY returns path and metrics, and later reads see the new files', async () => {
    const root = await copyOrders('orders_opt');
    await using s = await session();
    const result = await s.execute(
      "OPTIMIZE lake.bronze.orders_opt WHERE region = 'eu' ZORDER BY (order_date, amount)",
    );
    expect(result.columns).toEqual(['path', 'metrics']);
    expect(result.rows[0]).toMatchObject({
      path: root,
      metrics: { numFilesRemoved: 2, numFilesAdded: 1, zOrderStats: { strategyName: 'all' } },
    });
    expect((await s.execute('DESCRIBE DETAIL bronze.orders_opt')).rows[0]).toMatchObject({ numFiles: 2 });
    expect((await s.execute('SELECT count(*) AS n, sum(amount) AS t FROM bronze.orders_opt')).rows).toEqual([
      { n: 4, t: '65.75' },
    ]);
    const history = await s.execute('DESCRIBE HISTORY bronze.orders_opt LIMIT 1');
    expect(history.rows[0]).toMatchObject({
      operation: 'OPTIMIZE',
      operationParameters: { predicate: `["region = 'eu'"]`, zOrderBy: '["order_date","amount"]' },
    });
    await expect(s.execute('OPTIMIZE bronze.orders_opt WHERE amount > 1')).rejects.toMatchObject({
      code: 'SQL_ERROR',
      message: expect.stringContaining('partition columns'),
    });
  });

  it('OPTIMIZE takes delta.targetFileSize, else the session maxFileSize', async () => {
    await copyOrders('orders_target');
    await using s = await session();
    // A 1-byte target: every file is already "big", nothing to compact.
    await s.execute("ALTER TABLE bronze.orders_target SET TBLPROPERTIES ('delta.targetFileSize' = '1')");
    expect((await s.execute('OPTIMIZE bronze.orders_target')).rows[0]).toMatchObject({
      metrics: { numFilesRemoved: 0 },
    });
    await s.execute("ALTER TABLE bronze.orders_target UNSET TBLPROPERTIES ('delta.targetFileSize')");
    await s.execute('SET spark.databricks.delta.optimize.maxFileSize = 1');
    expect((await s.execute('OPTIMIZE bronze.orders_target')).rows[0]).toMatchObject({
      metrics: { numFilesRemoved: 0 },
    });
    await s.execute('RESET spark.databricks.delta.optimize.maxFileSize');
    expect((await s.execute('OPTIMIZE bronze.orders_target')).rows[0]).toMatchObject({
      metrics: { numFilesRemoved: 2 },
    });
  });

  it('VACUUM refuses a short retention unless SET in the same session, and DRY RUN lists files', async () => {
    const root = await copyOrders('orders_vac');
    await using s = await session();
    await s.execute('OPTIMIZE bronze.orders_vac');
    // Make the replaced files old enough for the retention to matter.
    const old = (Date.now() - 3_600_000) / 1000;
    for (const d of await readdir(root)) {
      if (!d.startsWith('region=')) continue;
      for (const f of await readdir(path.join(root, d))) await utimes(path.join(root, d, f), old, old);
    }
    await expect(s.execute('VACUUM bronze.orders_vac RETAIN 0 HOURS DRY RUN')).rejects.toMatchObject({
      code: 'SQL_ERROR',
      hint: expect.stringContaining('SET spark.databricks.delta.retentionDurationCheck.enabled = false'),
    });
    expect((await s.execute('VACUUM bronze.orders_vac DRY RUN')).rows).toEqual([]);
    const dry = await s.execute(
      'SET spark.databricks.delta.retentionDurationCheck.enabled = false; VACUUM bronze.orders_vac RETAIN 0 HOURS DRY RUN',
    );
    expect(dry.columns).toEqual(['path']);
    expect(dry.rows).toHaveLength(2);
    const real = await s.execute('VACUUM bronze.orders_vac RETAIN 0 HOURS');
    expect(real.rows).toEqual([{ path: root, numDeletedFiles: 2, numDeletedBytes: expect.any(Number) }]);
    for (const r of dry.rows) await expect(stat(String(r['path']))).rejects.toThrow();
    expect((await s.execute('SELECT count(*) AS n FROM bronze.orders_vac')).rows).toEqual([{ n: 4 }]);
    const history = await s.execute('DESCRIBE HISTORY bronze.orders_vac LIMIT 2');
    expect(history.rows.map((r) => r['operation'])).toEqual(['VACUUM END', 'VACUUM START']);
  });

  it('RESTORE TABLE goes back by version or timestamp and returns the metrics row', async () => {
    await copyOrders('orders_restore');
    await using s = await session();
    const back = await s.execute('RESTORE TABLE lake.bronze.orders_restore TO VERSION AS OF 1');
    expect(back.rows).toEqual([
      {
        table_size_after_restore: expect.any(Number),
        num_of_files_after_restore: 1,
        num_removed_files: 2,
        num_restored_files: 0,
        removed_files_size: expect.any(Number),
        restored_files_size: 0,
      },
    ]);
    expect((await s.execute('SELECT count(*) AS n FROM bronze.orders_restore')).rows).toEqual([{ n: 2 }]);
    await s.execute("RESTORE bronze.orders_restore TO TIMESTAMP AS OF '2026-01-03 12:30:00'");
    expect((await s.execute('SELECT count(*) AS n FROM bronze.orders_restore')).rows).toEqual([{ n: 3 }]);
    const [last] = (await s.execute('DESCRIBE HISTORY bronze.orders_restore LIMIT 1')).rows;
    expect(last).toMatchObject({ version: 5, operation: 'RESTORE' });
    await expect(s.execute('RESTORE TABLE bronze.orders_restore')).rejects.toMatchObject({
      code: 'SQL_ERROR',
    });
  });

  it('CREATE TABLE ... SHALLOW CLONE makes a queryable clone of a version; DEEP CLONE is refused', async () => {
    await using s = await session();
    const created = await s.execute(
      "CREATE TABLE lake.silver.orders_snapshot SHALLOW CLONE lake.bronze.orders VERSION AS OF 2 TBLPROPERTIES ('owner' = 'ops')",
    );
    expect(created.rows[0]).toMatchObject({ source_num_of_files: 2, num_copied_files: 0 });
    expect((await s.execute('SELECT count(*) AS n FROM lake.silver.orders_snapshot')).rows).toEqual([
      { n: 3 },
    ]);
    const [detail] = (await s.execute('DESCRIBE DETAIL lake.silver.orders_snapshot')).rows;
    expect(detail).toMatchObject({ properties: { owner: 'ops' }, numFiles: 2 });
    const [history] = (await s.execute('DESCRIBE HISTORY lake.silver.orders_snapshot')).rows;
    expect(history).toMatchObject({
      operation: 'CLONE',
      operationParameters: { source: 'lake.bronze.orders', sourceVersion: '2', isShallow: 'true' },
    });
    await expect(
      s.execute('CREATE TABLE lake.silver.orders_snapshot SHALLOW CLONE lake.bronze.orders'),
    ).rejects.toMatchObject({ code: 'SQL_ERROR', message: expect.stringContaining('already exists') });
    await s.execute(
      'CREATE TABLE IF NOT EXISTS lake.silver.orders_snapshot SHALLOW CLONE lake.bronze.orders',
    );
    await s.execute('CREATE OR REPLACE TABLE lake.silver.orders_snapshot SHALLOW CLONE lake.bronze.orders');
    expect((await s.execute('SELECT count(*) AS n FROM lake.silver.orders_snapshot')).rows).toEqual([
      { n: 4 },
    ]);
    await expect(s.execute('CREATE TABLE lake.silver.x DEEP CLONE lake.bronze.orders')).rejects.toMatchObject(
      {
        code: 'SQL_ERROR',
        message: expect.stringContaining('DEEP CLONE is not supported'),
      },
    );
    await expect(
      s.execute('CREATE TABLE lake.silver.y SHALLOW CLONE lake.bronze.missing'),
    ).rejects.toMatchObject({
      code: 'SQL_UNKNOWN_TABLE',
    });
  });

  it('ALTER TABLE SET / UNSET TBLPROPERTIES and SHOW TBLPROPERTIES', async () => {
    await copyOrders('orders_props');
    await using s = await session();
    const set = await s.execute(`ALTER TABLE lake.bronze.orders_props SET TBLPROPERTIES (
      'delta.autoOptimize.optimizeWrite' = 'true',
      'delta.autoOptimize.autoCompact' = 'true'
    )`);
    expect(set.rows).toEqual([]);
    expect((await s.execute('SHOW TBLPROPERTIES bronze.orders_props')).rows).toEqual([
      { key: 'delta.autoOptimize.autoCompact', value: 'true' },
      { key: 'delta.autoOptimize.optimizeWrite', value: 'true' },
      { key: 'delta.minReaderVersion', value: '1' },
      { key: 'delta.minWriterVersion', value: '2' },
    ]);
    await s.execute(
      "ALTER TABLE bronze.orders_props UNSET TBLPROPERTIES IF EXISTS ('delta.autoOptimize.autoCompact', 'x')",
    );
    expect(
      (await s.execute("SHOW TBLPROPERTIES bronze.orders_props ('delta.autoOptimize.autoCompact')")).rows,
    ).toEqual([
      {
        key: 'delta.autoOptimize.autoCompact',
        value: 'Table lake.bronze.orders_props does not have property: delta.autoOptimize.autoCompact',
      },
    ]);
    // The change data feed is written by Tributary's merges: turning it on upgrades the protocol.
    await s.execute(
      "ALTER TABLE bronze.orders_props SET TBLPROPERTIES ('delta.enableChangeDataFeed' = 'true')",
    );
    const props = await loadSnapshot(
      warehouse.tablePath({ catalog: 'lake', schema: 'bronze', table: 'orders_props' }),
    );
    expect(props.protocol.minWriterVersion).toBeGreaterThanOrEqual(4);
    expect(props.metadata.configuration['delta.enableChangeDataFeed']).toBe('true');
    await expect(
      s.execute(
        "ALTER TABLE bronze.orders_props SET TBLPROPERTIES ('delta.autoOptimize.optimizeWrite' = 'maybe')",
      ),
    ).rejects.toMatchObject({ code: 'SQL_ERROR' });
  });

  it('SET shows and keeps dotted settings; DuckDB settings pass through', async () => {
    await using s = await session();
    expect((await s.execute('SET spark.sql.shuffle.partitions = 8')).rows).toEqual([
      { key: 'spark.sql.shuffle.partitions', value: '8' },
    ]);
    expect((await s.execute('SET spark.sql.shuffle.partitions')).rows).toEqual([
      { key: 'spark.sql.shuffle.partitions', value: '8' },
    ]);
    await s.execute('SET threads = 2');
    expect((await s.execute("SELECT current_setting('threads') AS t")).rows).toEqual([{ t: 2 }]);
  });
});

describe('router', () => {
  it('recognises each statement kind and leaves the rest to DuckDB', () => {
    expect(statementKind('describe history t')).toBe('DESCRIBE HISTORY');
    expect(statementKind('DESCRIBE DETAIL a.b.c')).toBe('DESCRIBE DETAIL');
    expect(statementKind('DESCRIBE lake.bronze.orders')).toBe('QUERY');
    expect(statementKind('OPTIMIZE t ZORDER BY a, b')).toBe('OPTIMIZE');
    expect(statementKind('VACUUM t RETAIN 168 HOURS DRY RUN')).toBe('VACUUM');
    expect(statementKind("RESTORE t TO TIMESTAMP AS OF '2026-01-01'")).toBe('RESTORE');
    expect(statementKind('CREATE TABLE a SHALLOW CLONE b')).toBe('SHALLOW CLONE');
    expect(statementKind('CREATE TABLE a AS SELECT 1')).toBe('QUERY');
    expect(statementKind("ALTER TABLE t SET TBLPROPERTIES ('a' = 'b')")).toBe(
      'ALTER TABLE ... TBLPROPERTIES',
    );
    expect(statementKind('ALTER TABLE t ADD COLUMN c INT')).toBe('QUERY');
    expect(statementKind('SHOW TBLPROPERTIES t')).toBe('SHOW TBLPROPERTIES');
    expect(statementKind('SET a.b = c')).toBe('SET');
    expect(statementKind('SET threads = 4')).toBe('QUERY');
    expect(statementKind('USE lake')).toBe('USE');
    expect(() => statementKind('OPTIMIZE t WHERE')).toThrow(expect.objectContaining({ code: 'SQL_ERROR' }));
    expect(() => statementKind('VACUUM t RETAIN 5 DAYS')).toThrow(/expected HOURS/);
  });
});
