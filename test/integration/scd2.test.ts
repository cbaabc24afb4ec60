/**
 * SCD type 2 through the real CLI on MariaDB: the retail workshop's tables with `scd_type: SCD_TYPE_2`
 * (customers copy-on-write, orders with deletion vectors, products left at SCD_TYPE_1), the workshop-like
 * scenario of one key (insert, update twice, delete, re-insert) as history rows with __START_AT/__END_AT, the
 * current rows (`__END_AT IS NULL`) equal to the source, a re-run that changes nothing, and a TRUNCATE that
 * closes every open row.
 *
 * The scenario's statements run with `SET TIMESTAMP`, which sets the time MariaDB writes into their binlog
 * events: binlog times are whole seconds, so changes made within one second would share their times, and the
 * test could not tell the versions' order from __START_AT alone.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSnapshot } from '../../src/delta/snapshot.js';
import { createRetailSchema, mysqlRetailDatabase } from '../../src/demo/retail-workshop.js';
import { comparable, type PipelineFixture, pipelineFixture } from '../harness/pipeline-fixture.js';

/** ms since the epoch of a TIMESTAMPTZ text from `tributary sql` (`2024-06-01 12:00:01.5+00`). */
function ms(value: unknown): number {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(\.\d+)?\+00$/.exec(String(value));
  if (!m) throw new Error(`not a timestamp: ${String(value)}`);
  return Date.parse(`${m[1]}T${m[2]}Z`) + Math.floor(Number(m[3] ?? 0) * 1000);
}

/** Rows as comparable text, without the given columns. */
function plain(rows: readonly Record<string, unknown>[], drop: readonly string[] = []) {
  return rows.map((r) =>
    Object.fromEntries(
      Object.entries(r)
        .filter(([k]) => !drop.includes(k))
        .map(([k, v]) => [k, comparable(v)]),
    ),
  );
}

const HISTORY = ['_commit_timestamp', '__START_AT', '__END_AT'];

describe('SCD type 2 pipeline', () => {
  let f: PipelineFixture;
  /** Each history table's snapshot time: tables are read in parallel, each in a transaction of its own. */
  const snapshotAt: Record<string, number> = {};
  /** Whole seconds after the snapshot; `at(k)` is the scenario's k-th second. */
  let base: number;
  const at = (k: number) => (base + k) * 1000;
  const table = (name: string) => join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', name);
  const tables = ['customers', 'orders', 'products', 'notes'];
  const versions = () => Promise.all(tables.map(async (t) => (await loadSnapshot(table(t))).version));

  async function sourceRows(sql: string): Promise<Record<string, string | null>[]> {
    const [rows] = await f.conn.query(sql);
    return plain(rows as Record<string, unknown>[]) as Record<string, string | null>[];
  }

  /** `SET TIMESTAMP` for the statements: their binlog events carry this time. */
  async function atSecond(k: number, ...statements: string[]): Promise<void> {
    await f.conn.query(`SET TIMESTAMP = ${base + k}`);
    for (const s of statements) await f.conn.query(s);
    await f.conn.query('SET TIMESTAMP = DEFAULT');
  }

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'scd2',
      setup: async (conn) => {
        await createRetailSchema(mysqlRetailDatabase(conn));
        await conn.query('CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(20))');
        await conn.query("INSERT INTO notes VALUES (1, 'one'), (2, 'two')");
      },
      objects: (db) => `      - table:
          source_schema: ${db}
          source_table: customers
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration: { scd_type: SCD_TYPE_2 }
      - table:
          source_schema: ${db}
          source_table: orders
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration:
            scd_type: SCD_TYPE_2
            table_properties: { delta.enableDeletionVectors: "true" }
      - table:
          source_schema: ${db}
          source_table: notes
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration: { scd_type: SCD_TYPE_2 }
      - schema:
          source_schema: ${db}
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration: { scd_type: SCD_TYPE_1 }`,
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('snapshots into history tables whose rows start at the snapshot time', async () => {
    const before = Date.now();
    await f.run();
    const after = Date.now();
    for (const [name, key] of [
      ['customers', 'customer_id'],
      ['orders', 'order_id'],
      ['notes', 'id'],
    ] as const) {
      const fields = (await loadSnapshot(table(name))).schema.fields.map((c) => [c.name, c.type]);
      expect(fields.slice(-3)).toEqual([
        ['_commit_timestamp', 'timestamp'],
        ['__START_AT', 'timestamp'],
        ['__END_AT', 'timestamp'],
      ]);
      const bronze = await f.sql(`SELECT * FROM bronze.${name} ORDER BY ${key}`);
      expect(plain(bronze, HISTORY)).toEqual(await sourceRows(`SELECT * FROM ${name} ORDER BY ${key}`));
      const [times] = await f.sql(
        `SELECT count(DISTINCT __START_AT) AS starts, min(__START_AT) AS s, count(__END_AT) AS ended,
                count(*) FILTER (WHERE _commit_timestamp <> __START_AT) AS differ
           FROM bronze.${name}`,
      );
      expect(times).toMatchObject({ starts: 1, ended: 0, differ: 0 });
      const at = ms(times?.['s']);
      snapshotAt[name] = at;
      // The server's clock (same machine), with microseconds.
      expect(at).toBeGreaterThanOrEqual(before - 2000);
      expect(at).toBeLessThanOrEqual(after + 2000);
    }
    // SCD_TYPE_1 tables of the same pipeline keep their layout.
    const products = (await loadSnapshot(table('products'))).schema.fields.map((c) => c.name);
    expect(products).not.toContain('__START_AT');
    expect((await loadSnapshot(table('orders'))).protocol).toMatchObject({
      readerFeatures: ['deletionVectors'],
    });
  });

  it('keeps one history row per version: insert, update twice, delete, re-insert', async () => {
    base = Math.ceil(Math.max(Date.now(), ...Object.values(snapshotAt)) / 1000) + 5;
    await atSecond(
      1,
      `INSERT INTO customers (customer_id, first_name, last_name, email, phone, city, state, created_date)
       VALUES (10001, 'Jane', 'Smith', 'jane.smith@email.com', '555-0123', 'Seattle', 'WA', NOW())`,
    );
    await atSecond(
      2,
      "UPDATE customers SET email = 'jane.s@email.com', last_updated = NOW() WHERE customer_id = 10001",
      "UPDATE orders SET order_status = 'SHIPPED', last_updated = NOW() WHERE order_id = 5001",
    );
    await atSecond(
      3,
      "UPDATE customers SET city = 'Portland', state = 'OR', last_updated = NOW() WHERE customer_id = 10001",
      "UPDATE orders SET order_status = 'DELIVERED', last_updated = NOW() WHERE order_id = 5001",
    );
    await atSecond(
      4,
      'DELETE FROM customers WHERE customer_id = 10001',
      'DELETE FROM orders WHERE customer_id = 9999',
      'DELETE FROM customers WHERE customer_id = 9999',
    );
    await atSecond(
      5,
      `INSERT INTO customers (customer_id, first_name, last_name, email, phone, city, state, created_date)
       VALUES (10001, 'Jane', 'Smith', 'jane@newmail.com', '555-0123', 'Seattle', 'WA', NOW())`,
    );
    await f.run();

    const jane = await f.sql(
      'SELECT email, city, state, _commit_timestamp, __START_AT, __END_AT FROM bronze.customers WHERE customer_id = 10001 ORDER BY __START_AT',
    );
    expect(
      jane.map((r) => [
        r['email'],
        r['city'],
        ms(r['_commit_timestamp']),
        ms(r['__START_AT']),
        r['__END_AT'] === null ? null : ms(r['__END_AT']),
      ]),
    ).toEqual([
      ['jane.smith@email.com', 'Seattle', at(1), at(1), at(2)],
      ['jane.s@email.com', 'Seattle', at(2), at(2), at(3)],
      ['jane.s@email.com', 'Portland', at(3), at(3), at(4)],
      ['jane@newmail.com', 'Seattle', at(5), at(5), null],
    ]);

    // A snapshot row that was deleted: closed by the delete, nothing added.
    const deleted = await f.sql('SELECT __START_AT, __END_AT FROM bronze.customers WHERE customer_id = 9999');
    expect(deleted.map((r) => [ms(r['__START_AT']), ms(r['__END_AT'])])).toEqual([
      [snapshotAt['customers'], at(4)],
    ]);

    // The deletion-vector table: order 5001's snapshot version, then its two updates.
    const order = await f.sql(
      'SELECT order_status, __START_AT, __END_AT FROM bronze.orders WHERE order_id = 5001 ORDER BY __START_AT',
    );
    expect(
      order.map((r) => [
        r['order_status'],
        ms(r['__START_AT']),
        r['__END_AT'] === null ? null : ms(r['__END_AT']),
      ]),
    ).toEqual([
      [expect.any(String), snapshotAt['orders'], at(2)],
      ['SHIPPED', at(2), at(3)],
      ['DELIVERED', at(3), null],
    ]);
    const [orphans] = await f.sql(
      'SELECT count(*) AS n, count(*) FILTER (WHERE __END_AT IS NULL) AS open, min(__END_AT) AS lo, max(__END_AT) AS hi FROM bronze.orders WHERE customer_id = 9999',
    );
    expect(Number(orphans?.['n'])).toBeGreaterThan(0);
    expect(orphans?.['open']).toBe(0);
    expect([ms(orphans?.['lo']), ms(orphans?.['hi'])]).toEqual([at(4), at(4)]);
    expect((await loadSnapshot(table('orders'))).files.some((a) => a.deletionVector)).toBe(true);

    // The current rows are the source, row for row.
    for (const [name, key] of [
      ['customers', 'customer_id'],
      ['orders', 'order_id'],
    ] as const) {
      const current = await f.sql(`SELECT * FROM bronze.${name} WHERE __END_AT IS NULL ORDER BY ${key}`);
      expect(plain(current, HISTORY), name).toEqual(
        await sourceRows(`SELECT * FROM ${name} ORDER BY ${key}`),
      );
    }
    // Every version of every key: no overlaps, none ends before it starts.
    const [bad] = await f.sql(
      `SELECT count(*) AS n FROM (
         SELECT __START_AT, __END_AT, lead(__START_AT) OVER (PARTITION BY customer_id ORDER BY __START_AT, __END_AT NULLS LAST) AS next
           FROM bronze.customers)
        WHERE __END_AT < __START_AT OR next < __END_AT OR (__END_AT IS NULL AND next IS NOT NULL)`,
    );
    expect(bad?.['n']).toBe(0);
  });

  it('a second run with no source changes commits nothing', async () => {
    const before = await versions();
    await f.run();
    expect(await versions()).toEqual(before);
  });

  it('a TRUNCATE closes every open row at its time; rows after it start new versions', async () => {
    await atSecond(10, "UPDATE notes SET body = 'uno' WHERE id = 1");
    await atSecond(11, 'TRUNCATE TABLE notes');
    await atSecond(12, "INSERT INTO notes VALUES (3, 'three')");
    const r = await f.run();
    expect(r.stderr).toContain('TRUNCATE captured');
    const notes = await f.sql(
      'SELECT id, body, __START_AT, __END_AT FROM bronze.notes ORDER BY id, __START_AT',
    );
    expect(
      notes.map((n) => [
        n['id'],
        n['body'],
        ms(n['__START_AT']),
        n['__END_AT'] === null ? null : ms(n['__END_AT']),
      ]),
    ).toEqual([
      [1, 'one', snapshotAt['notes'], at(10)],
      [1, 'uno', at(10), at(11)],
      [2, 'two', snapshotAt['notes'], at(11)],
      [3, 'three', at(12), null],
    ]);
    expect(await f.sql('SELECT id, body FROM bronze.notes WHERE __END_AT IS NULL')).toEqual([
      { id: 3, body: 'three' },
    ]);
    const before = await versions();
    await f.run();
    expect(await versions()).toEqual(before);
  });
});
