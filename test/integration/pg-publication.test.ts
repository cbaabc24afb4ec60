/**
 * The publication: created by Tributary when the CDC role owns the tables (by name, since FOR ALL TABLES needs
 * a superuser), and extended when a table appears later in a captured schema.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PgPipelineFixture, pgPipelineFixture } from '../harness/pg-pipeline-fixture.js';

describe('a publication Tributary creates itself', () => {
  let f: PgPipelineFixture;
  const published = async () =>
    (
      await f.client.query(
        "SELECT tablename FROM pg_publication_tables WHERE pubname = 'tributary_gw' ORDER BY tablename",
      )
    ).rows.map((r: { tablename: string }) => r.tablename);

  beforeAll(async () => {
    f = await pgPipelineFixture({
      prefix: 'pg_pub',
      publication: 'tributary',
      setup: async (client) => {
        await client.query('CREATE TABLE a (id INT PRIMARY KEY, v TEXT)');
        await client.query("INSERT INTO a VALUES (1, 'x')");
        // No primary key: a unique index over NOT NULL columns is the key, and REPLICA IDENTITY DEFAULT
        // would log nothing for it.
        await client.query('CREATE TABLE u (code TEXT NOT NULL, v TEXT)');
        await client.query('CREATE UNIQUE INDEX u_code ON u (code)');
        await client.query("INSERT INTO u VALUES ('k1', 'one'), ('k2', 'two')");
      },
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('creates it for the captured tables on the first run', async () => {
    const preflight = await f.cli(['preflight', 'src']);
    expect(preflight.code, preflight.stdout).toBe(0);
    expect(preflight.stdout).toContain(
      'Tributary sets REPLICA IDENTITY USING INDEX "u_code" before capturing it',
    );
    const r = await f.run();
    expect(r.stderr).toContain('public.u: set REPLICA IDENTITY USING INDEX "u_code"');
    const identity = await f.client.query("SELECT relreplident FROM pg_class WHERE relname = 'u'");
    expect(identity.rows[0]).toEqual({ relreplident: 'i' });
    expect(await published()).toEqual(['a', 'u']);
    expect(await f.sql('SELECT id, v FROM bronze.a')).toEqual([{ id: 1, v: 'x' }]);
  });

  it('adds a table created later in the captured schema, and captures it', async () => {
    await f.client.query('CREATE TABLE b (id INT PRIMARY KEY, w TEXT)');
    await f.client.query(`ALTER TABLE b OWNER TO ${f.user}`);
    await f.client.query("INSERT INTO b VALUES (7, 'new')");
    await f.client.query("UPDATE a SET v = 'y'");
    await f.run();
    expect(await published()).toEqual(['a', 'b', 'u']);
    expect(await f.sql('SELECT id, w FROM bronze.b')).toEqual([{ id: 7, w: 'new' }]);
    expect(await f.sql('SELECT id, v FROM bronze.a')).toEqual([{ id: 1, v: 'y' }]);
    // Changes after the table joined the publication stream as usual, and the unique-keyed table's updates
    // and deletes find their rows.
    await f.client.query("UPDATE b SET w = 'changed'");
    await f.client.query("UPDATE u SET v = 'ONE' WHERE code = 'k1'");
    await f.client.query("DELETE FROM u WHERE code = 'k2'");
    await f.run();
    expect(await f.sql('SELECT id, w FROM bronze.b')).toEqual([{ id: 7, w: 'changed' }]);
    expect(await f.sql('SELECT code, v FROM bronze.u')).toEqual([{ code: 'k1', v: 'ONE' }]);
  });
});
