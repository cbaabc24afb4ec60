/**
 * Changes no merge can carry into a bronze table: a new primary key, and a type a history table cannot widen
 * to. Under `schema_evolution: evolve` the pipeline asks for the table's full refresh itself and the next run
 * replaces the table; under `fail` the table stops with an error that names the refresh, which then works.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PipelineFixture, pipelineFixture } from '../harness/pipeline-fixture.js';

const rowsOf = async (f: PipelineFixture, sql: string) =>
  (await f.sql(sql)).map((r) => Object.values(r).map(String).join(':'));
const sourceRows = async (f: PipelineFixture, sql: string) =>
  ((await f.conn.query(sql)) as unknown as [Array<Record<string, unknown>>])[0].map((r) =>
    Object.values(r).map(String).join(':'),
  );

describe('incompatible changes under schema_evolution: evolve', () => {
  let f: PipelineFixture;

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'incompat',
      setup: async (conn) => {
        await conn.query('CREATE TABLE accounts (id INT PRIMARY KEY, code VARCHAR(10) NOT NULL, v INT)');
        await conn.query("INSERT INTO accounts VALUES (1, 'a', 10), (2, 'b', 20)");
        await conn.query('CREATE TABLE hist (id INT PRIMARY KEY, n INT)');
        await conn.query('INSERT INTO hist VALUES (1, 1), (2, 2)');
      },
      objects: (db) => `      - table:
          source_schema: ${db}
          source_table: accounts
          destination_catalog: retail_analytics
          destination_schema: bronze
      - table:
          source_schema: ${db}
          source_table: hist
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration: { scd_type: SCD_TYPE_2 }`,
    });
    await f.run();
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('a new primary key: the merge is refused, the refresh asked for, and the next run rekeys the table', async () => {
    await f.conn.query('ALTER TABLE accounts DROP PRIMARY KEY, ADD PRIMARY KEY (code)');
    // Under the new key, id 1 and a new row with the same id are different rows.
    await f.conn.query("INSERT INTO accounts VALUES (1, 'c', 30)");
    const refused = await f.cli(['run', 'p', '--once']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('The primary key of');
    expect(refused.stderr).toContain('changed from (id) to (code)');
    expect(refused.stderr).toContain('A full refresh of the table was requested');

    const next = await f.cli(['run', 'p', '--once']);
    expect(next.code, next.stderr).toBe(0);
    const all = 'SELECT code, id, v FROM accounts ORDER BY code';
    expect(await rowsOf(f, `SELECT code, id, v FROM bronze.accounts ORDER BY code`)).toEqual(
      await sourceRows(f, all),
    );
    // Changes now merge by the new key: an update of one of the two id-1 rows touches only that one.
    await f.conn.query("UPDATE accounts SET v = 31 WHERE code = 'c'");
    await f.run();
    expect(await rowsOf(f, `SELECT code, id, v FROM bronze.accounts ORDER BY code`)).toEqual(
      await sourceRows(f, all),
    );
  });

  // The column is named n on purpose: the history merge's working columns once included one of that name.
  it('a type a history table cannot widen to: the next run replaces the history table', async () => {
    await f.conn.query('UPDATE hist SET n = 3 WHERE id = 1');
    await f.run();
    await f.conn.query('ALTER TABLE hist MODIFY n VARCHAR(20)');
    await f.conn.query("UPDATE hist SET n = 'two' WHERE id = 2");
    const refused = await f.cli(['run', 'p', '--once']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('n: integer -> string');
    expect(refused.stderr).toContain('A full refresh of the table was requested');

    const next = await f.cli(['run', 'p', '--once']);
    expect(next.code, next.stderr).toBe(0);
    // A new history, starting at the refresh: one open row per key, with the new type.
    expect(await rowsOf(f, 'SELECT id, n, __END_AT IS NULL AS open FROM bronze.hist ORDER BY id')).toEqual([
      '1:3:true',
      '2:two:true',
    ]);
    await f.conn.query("UPDATE hist SET n = 'three' WHERE id = 1");
    await f.run();
    expect(
      await rowsOf(f, 'SELECT id, n, __END_AT IS NULL AS open FROM bronze.hist ORDER BY id, __START_AT'),
    ).toEqual(['1:3:false', '1:three:true', '2:two:true']);
  });
});

describe('incompatible changes under schema_evolution: fail', () => {
  it('stops the table with an error naming the refresh, which then replaces it', async () => {
    await using f = await pipelineFixture({
      prefix: 'incompat_fail',
      setup: async (conn) => {
        await conn.query('CREATE TABLE t (id INT PRIMARY KEY, n INT)');
        await conn.query('INSERT INTO t VALUES (1, 1)');
      },
    });
    const config = join(f.dir, 'tributary.yaml');
    const text = await readFile(config, 'utf8');
    await writeFile(
      config,
      text.replace('    gateway: gw\n', '    gateway: gw\n    schema_evolution: fail\n'),
    );
    await f.run();
    await f.conn.query('ALTER TABLE t MODIFY n VARCHAR(20)');
    await f.conn.query("UPDATE t SET n = 'one' WHERE id = 1");
    for (let i = 0; i < 2; i++) {
      const stopped = await f.cli(['run', 'p', '--once']);
      expect(stopped.code).not.toBe(0);
      expect(stopped.stderr).toContain('SOURCE_SCHEMA_CHANGED');
      expect(stopped.stderr).toMatch(/tributary refresh <pipeline> --table \S+\.t`/);
      expect(stopped.stderr).not.toContain('was requested');
    }
    const refreshed = await f.cli(['refresh', 'p', '--table', 't']);
    expect(refreshed.code, refreshed.stderr).toBe(0);
    expect(await rowsOf(f, 'SELECT id, n FROM bronze.t ORDER BY id')).toEqual(['1:one']);
  });
});
