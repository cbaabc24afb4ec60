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
      },
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('creates it for the captured tables on the first run', async () => {
    await f.run();
    expect(await published()).toEqual(['a']);
    expect(await f.sql('SELECT id, v FROM bronze.a')).toEqual([{ id: 1, v: 'x' }]);
  });

  it('adds a table created later in the captured schema, and captures it', async () => {
    await f.client.query('CREATE TABLE b (id INT PRIMARY KEY, w TEXT)');
    await f.client.query(`ALTER TABLE b OWNER TO ${f.user}`);
    await f.client.query("INSERT INTO b VALUES (7, 'new')");
    await f.client.query("UPDATE a SET v = 'y'");
    await f.run();
    expect(await published()).toEqual(['a', 'b']);
    expect(await f.sql('SELECT id, w FROM bronze.b')).toEqual([{ id: 7, w: 'new' }]);
    expect(await f.sql('SELECT id, v FROM bronze.a')).toEqual([{ id: 1, v: 'y' }]);
    // Changes after the table joined the publication stream as usual.
    await f.client.query("UPDATE b SET w = 'changed'");
    await f.run();
    expect(await f.sql('SELECT id, w FROM bronze.b')).toEqual([{ id: 7, w: 'changed' }]);
  });
});
