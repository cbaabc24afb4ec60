/**
 * Transactions larger than logical_decoding_work_mem, which PostgreSQL streams to Tributary while they are
 * still open (pgoutput protocol 2, `streaming 'on'`): Stream Start/Stop blocks interleaved with other
 * transactions, subtransaction aborts, and a Stream Commit or Stream Abort at the end. The CDC role's
 * logical_decoding_work_mem is set to its 64 kB minimum, so a few thousand rows are enough; the server's own
 * statistics (pg_stat_replication_slots.stream_txns) prove the transactions were streamed to the run rather
 * than decoded whole. Bronze must equal the source after each run.
 *
 * Also TRUNCATE: followed by inserts in the same transaction (streamed, and small), and in a later one.
 */

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SegmentManifest } from '../../src/staging/segment-format.js';
import { type PgPipelineFixture, pgPipelineFixture } from '../harness/pg-pipeline-fixture.js';
import { pgAdmin } from '../harness/postgres.js';

async function expectConverged(f: PgPipelineFixture, table: string): Promise<void> {
  const source = await f.client.query(`SELECT id::text AS id, v, n::text AS n FROM ${table} ORDER BY id`);
  const bronze = await f.sql(
    `SELECT CAST(id AS VARCHAR) AS id, v, CAST(n AS VARCHAR) AS n FROM bronze.${table} ORDER BY id`,
  );
  expect(bronze.length, table).toBe(source.rows.length);
  expect(bronze, table).toEqual(source.rows);
}

/** How many transactions the server has streamed (sent while in progress) from the slot so far. */
async function streamedTxns(f: PgPipelineFixture): Promise<number> {
  const r = await f.client.query(
    "SELECT stream_txns::int AS n FROM pg_stat_replication_slots WHERE slot_name = 'tributary_gw'",
  );
  return Number((r.rows[0] as { n: string } | undefined)?.n ?? 0);
}

/**
 * A run, and the number of transactions the server streamed to it. (A run may also show spilled ones in
 * pg_stat_replication_slots: decoding restarts at the slot's restart_lsn, and what lies before the confirmed
 * position is decoded again but may not be streamed, only spilled and skipped.)
 */
async function runStreamed(f: PgPipelineFixture): Promise<number> {
  const before = await streamedTxns(f);
  await f.run();
  return (await streamedTxns(f)) - before;
}

describe('large transactions streamed by PostgreSQL, and TRUNCATE', () => {
  let f: PgPipelineFixture;
  let other: pg.Client;

  beforeAll(async () => {
    f = await pgPipelineFixture({
      prefix: 'pg_large_txn',
      setup: async (client) => {
        for (const t of ['items', 'trunc']) {
          await client.query(`CREATE TABLE ${t} (id int PRIMARY KEY, v text, n int)`);
          await client.query(`INSERT INTO ${t} SELECT g, 'initial ' || g, g FROM generate_series(1, 500) g`);
        }
      },
    });
    // Applies to the walsender sessions of the CDC role: every transaction above 64 kB is streamed.
    await f.client.query(`ALTER ROLE ${f.user} SET logical_decoding_work_mem = '64kB'`);
    other = await pgAdmin(f.db.name);
    await f.run();
    await expectConverged(f, 'items');
  });
  afterAll(async () => {
    await other?.end();
    await f?.[Symbol.asyncDispose]();
  });

  it('applies a streamed transaction of inserts, updates, deletes and rolled-back savepoints', async () => {
    const c = f.client;
    await c.query('BEGIN');
    await c.query(
      `INSERT INTO items SELECT g, 'big ' || g || repeat('x', 60), g FROM generate_series(1000, 4999) g`,
    );
    // A concurrent transaction commits while the big one is open and already streamed in part: it must be
    // applied, and the big one must not be applied before its commit.
    await other.query(`UPDATE items SET v = 'concurrent', n = -1 WHERE id BETWEEN 1 AND 10`);
    await other.query(`INSERT INTO items VALUES (900, 'concurrent insert', 900)`);
    await c.query(`UPDATE items SET v = v || ' updated', n = n * 2 WHERE id % 3 = 0`);
    await c.query('DELETE FROM items WHERE id % 7 = 0');
    // A savepoint larger than the work memory, so part of it was streamed before the rollback.
    await c.query('SAVEPOINT s1');
    await c.query(
      `INSERT INTO items SELECT g, 'rolled back ' || repeat('y', 60), g FROM generate_series(10000, 12999) g`,
    );
    await c.query(`UPDATE items SET v = 'rolled back', n = 0 WHERE id < 5000`);
    await c.query('DELETE FROM items WHERE id BETWEEN 2000 AND 2999');
    await c.query('ROLLBACK TO SAVEPOINT s1');
    // A savepoint that is released is part of the transaction; a nested one inside it is rolled back.
    await c.query('SAVEPOINT s2');
    await c.query(`UPDATE items SET v = 'kept from s2' WHERE id BETWEEN 4000 AND 4099`);
    await c.query('SAVEPOINT s3');
    await c.query(`UPDATE items SET v = 'rolled back s3 ' || repeat('z', 60) WHERE id BETWEEN 1000 AND 3999`);
    await c.query('ROLLBACK TO SAVEPOINT s3');
    await c.query(`INSERT INTO items VALUES (5000, 'after s3', 5000)`);
    await c.query('RELEASE SAVEPOINT s2');
    await c.query(`UPDATE items SET n = n + 1 WHERE id BETWEEN 1 AND 600`);
    await c.query('COMMIT');
    const streamed = await runStreamed(f);
    expect(streamed).toBeGreaterThanOrEqual(1);
    await expectConverged(f, 'items');
    const [count] = await f.sql(
      "SELECT count(*) FILTER (WHERE v LIKE 'rolled back%') AS rolled_back, count(*) FILTER (WHERE v = 'kept from s2') AS kept FROM bronze.items",
    );
    expect(count).toEqual({ rolled_back: 0, kept: 100 - 14 });
  });

  it('applies nothing of a streamed transaction that is rolled back', async () => {
    const c = f.client;
    await c.query('BEGIN');
    await c.query(
      `INSERT INTO items SELECT g, 'aborted ' || repeat('x', 60), g FROM generate_series(20000, 23999) g`,
    );
    await c.query(`UPDATE items SET v = 'aborted' WHERE id < 5000`);
    await other.query(`INSERT INTO items VALUES (901, 'committed meanwhile', 901)`);
    await c.query('ROLLBACK');
    // Streamed (and so aborted as a stream) only if it reached the walsender before the abort: the count is
    // checked on the server, the result in bronze.
    await runStreamed(f);
    await expectConverged(f, 'items');
  });

  it('applies a large transaction in small staging segments', async () => {
    await f.client.query('BEGIN');
    await f.client.query(`UPDATE items SET v = 'segmented ' || id, n = -n WHERE id % 2 = 0`);
    await f.client.query('DELETE FROM items WHERE id % 5 = 0');
    await f.client.query('COMMIT');
    const r = await f.cli(['run', 'p', '--once'], { env: { TRIBUTARY_SEGMENT_MAX_CHANGES: '100' } });
    expect(r.code, r.stderr).toBe(0);
    await expectConverged(f, 'items');
    // The transaction was never split, and never held whole in memory: its segment has several parts.
    const gateway = join(f.dir, 'lakehouse', 'retail_analytics', 'landing', 'ingestion_volume', 'gw');
    const manifests = await Promise.all(
      (await readdir(gateway))
        .filter((n) => n.startsWith('seg-'))
        .map(
          async (n) =>
            JSON.parse(await readFile(join(gateway, n, '_manifest.json'), 'utf8')) as SegmentManifest,
        ),
    );
    const parts = manifests.flatMap((m) => Object.values(m.tables).map((t) => t.files?.length ?? 1));
    expect(Math.max(...parts)).toBeGreaterThan(1);
  });

  it('empties the table at a TRUNCATE followed by inserts in the same transaction, small or streamed', async () => {
    await f.client.query('BEGIN');
    await f.client.query('TRUNCATE trunc');
    await f.client.query(`INSERT INTO trunc SELECT g, 'after truncate', g FROM generate_series(1, 5) g`);
    await f.client.query('COMMIT');
    const r = await f.run();
    expect(r.stderr).toContain('public.trunc: TRUNCATE captured');
    await expectConverged(f, 'trunc');

    await f.client.query('BEGIN');
    await f.client.query(`INSERT INTO trunc SELECT g, 'before truncate', g FROM generate_series(100, 199) g`);
    await f.client.query('TRUNCATE trunc');
    await f.client.query(
      `INSERT INTO trunc SELECT g, 'streamed after truncate ' || repeat('t', 60), g FROM generate_series(1000, 3999) g`,
    );
    await f.client.query('UPDATE trunc SET n = -n WHERE id % 2 = 0');
    await f.client.query('COMMIT');
    expect(await runStreamed(f)).toBeGreaterThanOrEqual(1);
    await expectConverged(f, 'trunc');
  });

  it('empties the table at a TRUNCATE whose inserts come in a later transaction, in the same run or the next', async () => {
    await f.client.query('TRUNCATE trunc');
    await f.client.query(`INSERT INTO trunc VALUES (7, 'later transaction', 7), (8, 'later transaction', 8)`);
    let r = await f.run();
    expect(r.stderr).toContain('public.trunc: TRUNCATE captured');
    await expectConverged(f, 'trunc');

    await f.client.query('TRUNCATE trunc');
    r = await f.run();
    expect(await f.sql('SELECT count(*) AS n FROM bronze.trunc')).toEqual([{ n: 0 }]);
    await f.client.query(`INSERT INTO trunc VALUES (9, 'next run', 9)`);
    await f.client.query(`UPDATE items SET v = 'untouched by the truncate' WHERE id = 1`);
    await f.run();
    await expectConverged(f, 'trunc');
    await expectConverged(f, 'items');
  });
});
