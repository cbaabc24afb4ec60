/**
 * A table without a primary key but with a unique index over NOT NULL columns is captured by that index, with
 * a warning; a unique index over nullable columns is not a key, and the table is refused.
 */
import { expect, it } from 'vitest';
import { pipelineFixture, sourceAndBronze } from '../harness/pipeline-fixture.js';

it('matches rows by a NOT NULL unique index when there is no primary key, and says so', async () => {
  await using f = await pipelineFixture({
    prefix: 'uniq',
    setup: async (conn) => {
      await conn.query('CREATE TABLE t (code VARCHAR(10) NOT NULL, v INT, UNIQUE KEY by_code (code))');
      await conn.query("INSERT INTO t VALUES ('a', 1), ('b', 2)");
    },
  });
  const first = await f.cli(['run', 'p', '--once']);
  expect(first.code, first.stderr).toBe(0);
  expect(first.stderr).toContain('has no primary key; rows are matched by its unique index by_code (code)');
  await f.conn.query("UPDATE t SET v = 10 WHERE code = 'a'");
  await f.conn.query("DELETE FROM t WHERE code = 'b'");
  await f.conn.query("INSERT INTO t VALUES ('c', 3)");
  await f.run();
  const { source, bronze } = await sourceAndBronze(f, 't', 'code');
  expect(bronze.map(({ _commit_timestamp, ...rest }) => rest)).toEqual(source);
  expect(source).toEqual([
    { code: 'a', v: '10' },
    { code: 'c', v: '3' },
  ]);
});

it('does not take a unique index over nullable columns as the key', async () => {
  await using f = await pipelineFixture({
    prefix: 'uniqnull',
    setup: async (conn) => {
      await conn.query('CREATE TABLE t (code VARCHAR(10) NULL, v INT, UNIQUE KEY by_code (code))');
    },
  });
  const r = await f.cli(['run', 'p', '--once']);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain('SOURCE_NO_PRIMARY_KEY');
  const pre = await f.cli(['preflight', 'src', '--format', 'json']);
  const key = (JSON.parse(pre.stdout) as Array<{ check: string; status: string }>).find((x) =>
    x.check.startsWith('primary_key:'),
  );
  expect(key?.status).toBe('FAIL');
});
