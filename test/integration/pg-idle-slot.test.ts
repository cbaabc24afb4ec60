/**
 * A slot whose captured tables are quiet must not pin WAL: traffic on other tables moves the slot on, but
 * only once the position past it is sealed in staging.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseLsn } from '../../src/sources/postgres/lsn.js';
import { type PgPipelineFixture, pgPipelineFixture } from '../harness/pg-pipeline-fixture.js';

describe('an idle captured table on PostgreSQL', () => {
  let f: PgPipelineFixture;
  const confirmed = async () => {
    const r = await f.client.query(
      "SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'tributary_gw'",
    );
    return parseLsn(String((r.rows[0] as { lsn: string }).lsn));
  };
  const walNow = async () =>
    parseLsn(String((await f.client.query('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]?.lsn));

  beforeAll(async () => {
    f = await pgPipelineFixture({
      prefix: 'pg_idle',
      setup: async (client) => {
        await client.query('CREATE TABLE quiet (id INT PRIMARY KEY, v TEXT)');
        await client.query('CREATE TABLE noise (id SERIAL PRIMARY KEY, v TEXT)');
        await client.query("INSERT INTO quiet VALUES (1, 'a')");
      },
      objects: (db) => `      - table:
          source_catalog: ${db}
          source_schema: public
          source_table: quiet
          destination_catalog: retail_analytics
          destination_schema: bronze`,
    });
    await f.run();
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('moves the slot past other tables’ traffic once the position is staged', async () => {
    const before = await confirmed();
    for (let i = 0; i < 20; i++) {
      await f.client.query("INSERT INTO noise (v) SELECT repeat('x', 100) FROM generate_series(1, 200)");
    }
    const written = await walNow();
    expect(written > before).toBe(true);
    const r = await f.cli(['run', 'p', '--once'], { env: { TRIBUTARY_IDLE_SEAL_SECONDS: '0' } });
    expect(r.code, r.stderr).toBe(0);
    expect((await confirmed()) >= written).toBe(true);
    expect(await f.sql('SELECT id, v FROM bronze.quiet')).toEqual([{ id: 1, v: 'a' }]);
  });

  it('confirms a change of the captured table at the end of the run, whatever the idle interval', async () => {
    await f.client.query("UPDATE quiet SET v = 'b' WHERE id = 1");
    const afterChange = await walNow();
    const r = await f.cli(['run', 'p', '--once'], { env: { TRIBUTARY_IDLE_SEAL_SECONDS: '3600' } });
    expect(r.code, r.stderr).toBe(0);
    expect((await confirmed()) >= afterChange).toBe(true);
    expect(await f.sql('SELECT id, v FROM bronze.quiet')).toEqual([{ id: 1, v: 'b' }]);
  });
});
