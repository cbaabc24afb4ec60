/**
 * Tables snapshotted in parallel (gateway `snapshot_parallel_tables`), each in a consistent-snapshot
 * transaction of its own at its own binlog position, while the source keeps committing: every table's rows
 * are read whole and in key order, batches of different tables interleave, the stream takes each table's
 * changes from its own point (bronze equals the source afterwards), and the first round's consistent cut never
 * shows an order without its customer although the two tables were read at different points.
 */
import { describe, expect, inject, it } from 'vitest';
import type { ChangeBatch } from '../../src/core/change.js';
import { tableKey } from '../../src/core/table.js';
import { MySqlSource } from '../../src/sources/mysql/mysql-source.js';
import { adminConnection, freshDatabase } from '../harness/mysql.js';
import { pipelineFixture, sourceAndBronze } from '../harness/pipeline-fixture.js';

const ORPHANS = `SELECT COUNT(*) AS n FROM retail_analytics.bronze.orders o
LEFT JOIN retail_analytics.bronze.customers c ON o.customer_id = c.customer_id
WHERE c.customer_id IS NULL`;

describe('parallel table snapshots (MySQL/MariaDB)', () => {
  it('read each table whole and in key order, interleaved, on connections of their own', async () => {
    const db = await freshDatabase('par_src');
    try {
      for (const t of ['a', 'b', 'c']) {
        await db.conn.query(`CREATE TABLE ${t} (id INT PRIMARY KEY, v VARCHAR(20))`);
        await db.conn.query(`INSERT INTO ${t} VALUES ?`, [
          Array.from({ length: 6000 }, (_, i) => [i * 2, `${t}${i}`]),
        ]);
      }
      const { host, port, user, password } = inject('mysql');
      await using source = new MySqlSource({ name: 'test', host, port, user, password }, { serverId: 4411 });
      const signal = new AbortController().signal;
      const tables = await source.listTables({ tables: [], schemas: [db.name] }, signal);
      const batches: ChangeBatch[] = [];
      // A consumer that takes its time, as staging does: the second reader is under way long before a is done.
      for await (const batch of source.snapshot(tables, { chunkRows: 200, parallelTables: 2, signal })) {
        batches.push(batch);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const order = batches.map((b) => tableKey(b.snapshotTable as never));
      const key = (t: string) => `${db.name}.${t}`;
      // Two tables were under way at once: b's first batch came before a's last.
      const lastOfA = order.lastIndexOf(key('a'));
      expect(order.indexOf(key('b'))).toBeLessThan(lastOfA);
      for (const t of ['a', 'b', 'c']) {
        const own = batches.filter((b) => tableKey(b.snapshotTable as never) === key(t));
        const ids = own.flatMap((b) =>
          b.events.map((e) => Number((e as unknown as { after: { id: number } }).after.id)),
        );
        expect(ids, t).toEqual(Array.from({ length: 6000 }, (_, i) => i * 2));
        // One final batch per table, last; one position per table (its transaction's).
        expect(own.map((b) => b.snapshotTableComplete === true)).toEqual(
          own.map((_, i) => i === own.length - 1),
        );
        expect(new Set(own.map((b) => b.position)).size, t).toBe(1);
      }
      // A snapshot abandoned at any point (before its first batch, after a few, with readers still connecting or
      // paused on a full batch) returns at once and leaves no reader waiting.
      for (let taken = 0; taken < 8; taken++) {
        const reading = source
          .snapshot(tables, { chunkRows: 100, parallelTables: 3, signal })
          [Symbol.asyncIterator]();
        for (let n = 0; n < taken; n++) await reading.next();
        await reading.return?.();
      }
    } finally {
      await db.drop();
    }
  });

  it('stream each table from its own point: bronze equals the source, and the first cut is consistent', async () => {
    let nextId = 1;
    await using f = await pipelineFixture({
      prefix: 'par',
      setup: async (conn) => {
        await conn.query('CREATE TABLE customers (customer_id INT PRIMARY KEY, name VARCHAR(50))');
        await conn.query(
          'CREATE TABLE orders (order_id INT PRIMARY KEY, customer_id INT NOT NULL, total DECIMAL(10,2), FOREIGN KEY (customer_id) REFERENCES customers (customer_id))',
        );
        await conn.query('CREATE TABLE notes (id INT PRIMARY KEY, body TEXT)');
        for (let i = 0; i < 2000; i++) {
          const id = nextId++;
          await conn.query('INSERT INTO customers VALUES (?, ?)', [id, `c${id}`]);
        }
        await conn.query('INSERT INTO orders SELECT customer_id * 10, customer_id, 1.00 FROM customers');
        await conn.query('INSERT INTO notes SELECT customer_id, name FROM customers');
      },
      gateway: '    snapshot_parallel_tables: 3',
    });
    // A customer and its first order in one transaction, and a note changed, committed continuously while the
    // snapshot transactions start.
    let writing = true;
    // Three writers on connections of their own, so that commits land between the snapshot transactions' starts.
    const writers = Array.from({ length: 3 }, async () => {
      const conn = await adminConnection({ database: f.db.name });
      try {
        while (writing) {
          const id = nextId++;
          try {
            await conn.query('START TRANSACTION');
            await conn.query('INSERT INTO customers VALUES (?, ?)', [id, `c${id}`]);
            await conn.query('INSERT INTO orders VALUES (?, ?, ?)', [id * 10, id, 2.5]);
            await conn.query('UPDATE notes SET body = ? WHERE id = ?', [`n${id}`, id % 2000]);
            await conn.query('COMMIT');
          } catch (error) {
            // Two writers on one note may deadlock; the server rolled that transaction back whole.
            if ((error as { errno?: number }).errno !== 1213) throw error;
            await conn.query('ROLLBACK');
          }
        }
      } finally {
        await conn.end();
      }
    });
    try {
      const first = await f.run();
      expect(first.code, first.stderr).toBe(0);
      const [orphans] = await f.sql(ORPHANS);
      expect(orphans).toEqual({ n: 0 });
    } finally {
      writing = false;
      await Promise.all(writers);
    }
    await f.run();
    for (const [table, key] of [
      ['customers', 'customer_id'],
      ['orders', 'order_id'],
      ['notes', 'id'],
    ] as const) {
      const { source, bronze } = await sourceAndBronze(f, table, key);
      expect(bronze.length, table).toBeGreaterThanOrEqual(2000);
      expect(bronze, table).toEqual(source);
    }
  });
});
