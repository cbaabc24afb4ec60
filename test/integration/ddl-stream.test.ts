/**
 * DDL in the middle of the binlog, through the real CLI: TRUNCATE empties the bronze table at its point in
 * the log (changes before it are gone, changes after it stay), and an added column evolves the bronze schema.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PipelineFixture, pipelineFixture, sourceAndBronze } from '../harness/pipeline-fixture.js';

describe('DDL mid-stream', () => {
  let f: PipelineFixture;

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'ddl',
      setup: async (conn) => {
        await conn.query('CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))');
        await conn.query('CREATE TABLE other (id INT PRIMARY KEY)');
        await conn.query("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')");
        await conn.query('INSERT INTO other VALUES (1), (2)');
      },
    });
    await f.run();
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('applies TRUNCATE at its point in the log, in one run with changes before and after it', async () => {
    await f.conn.query("INSERT INTO t VALUES (4, 'd')");
    await f.conn.query("UPDATE t SET v = 'z' WHERE id = 1");
    await f.conn.query('INSERT INTO other VALUES (3)');
    await f.conn.query('TRUNCATE TABLE t');
    await f.conn.query("INSERT INTO t VALUES (7, 'after')");
    await f.conn.query('INSERT INTO other VALUES (4)');
    const r = await f.run();
    expect(r.stderr).toContain('TRUNCATE captured');
    expect(await f.sql('SELECT id, v FROM bronze.t ORDER BY id')).toEqual([{ id: 7, v: 'after' }]);
    // The other table is untouched by the TRUNCATE and keeps every change.
    expect(await f.sql('SELECT id FROM bronze.other ORDER BY id')).toEqual([
      { id: 1 },
      { id: 2 },
      { id: 3 },
      { id: 4 },
    ]);
  });

  it('a TRUNCATE as the last change leaves an empty table', async () => {
    await f.conn.query('TRUNCATE t');
    await f.run();
    expect(await f.sql('SELECT count(*) AS n FROM bronze.t')).toEqual([{ n: 0 }]);
  });

  it('an added column evolves the bronze schema and carries its values', async () => {
    await f.conn.query("INSERT INTO t VALUES (1, 'x')");
    await f.conn.query('ALTER TABLE t ADD COLUMN qty INT');
    await f.conn.query("INSERT INTO t VALUES (2, 'y', 5)");
    await f.conn.query('UPDATE t SET qty = 9 WHERE id = 1');
    await f.run();
    const { source, bronze } = await sourceAndBronze(f, 't', 'id');
    expect(bronze.map(({ _commit_timestamp, ...rest }) => rest)).toEqual(source);
    expect(source).toEqual([
      { id: '1', v: 'x', qty: '9' },
      { id: '2', v: 'y', qty: '5' },
    ]);
  });
});
