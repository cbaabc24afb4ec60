/**
 * The first transaction committed after the snapshot, when it is large enough to reach capture in parts (over
 * 1,000 changes): every part belongs after the snapshot. The parts carry the previous commit as their resume
 * position, which here is the snapshot's own position; deciding "already in the snapshot" from that position
 * dropped all but the last part (found by the end-to-end benchmark: 30,000 deletes left 29,001 rows behind).
 * Both kinds are covered: decoded at commit, and streamed while open (logical_decoding_work_mem exceeded).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PgPipelineFixture, pgPipelineFixture } from '../harness/pg-pipeline-fixture.js';

async function expectConverged(f: PgPipelineFixture): Promise<void> {
  const source = await f.client.query('SELECT id::text AS id, v FROM t ORDER BY id');
  const bronze = await f.sql('SELECT CAST(id AS VARCHAR) AS id, v FROM bronze.t ORDER BY id');
  expect(bronze.length).toBe(source.rows.length);
  expect(bronze).toEqual(source.rows);
}

describe('the first large transaction after a snapshot', () => {
  let f: PgPipelineFixture;
  beforeAll(async () => {
    f = await pgPipelineFixture({
      prefix: 'pg_first_txn',
      setup: async (client) => {
        await client.query('CREATE TABLE t (id int PRIMARY KEY, v text)');
        await client.query("INSERT INTO t SELECT g, 'initial' FROM generate_series(1, 5000) g");
      },
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  for (const [kind, workMem] of [
    ['decoded at commit', '64MB'],
    ['streamed while open', '64kB'],
  ] as const) {
    it(`applies every part of it (${kind})`, async () => {
      await f.client.query(`ALTER ROLE ${f.user} SET logical_decoding_work_mem = '${workMem}'`);
      // A fresh snapshot each time, so the transaction below is the first one after it.
      const refresh = await f.cli(['refresh', 'p']);
      expect(refresh.code, refresh.stderr).toBe(0);
      await expectConverged(f);
      await f.client.query('BEGIN');
      await f.client.query(`UPDATE t SET v = '${kind}' WHERE id <= 2500`);
      await f.client.query('DELETE FROM t WHERE id > 4000');
      await f.client.query('COMMIT');
      await f.run();
      await expectConverged(f);
      const [changed] = await f.sql(`SELECT count(*) AS n FROM bronze.t WHERE v = '${kind}'`);
      expect(Number(changed?.['n'])).toBe(2500);
    });
  }
});
