/**
 * Per-table fault isolation: a table whose changes cannot be applied is reported and left where it is, while
 * the other tables of the pipeline are still brought up to date.
 */
import { expect, it } from 'vitest';
import { pipelineFixture } from '../harness/pipeline-fixture.js';

it('applies the healthy tables when one table fails, and reports the failing one', async () => {
  await using f = await pipelineFixture({
    prefix: 'iso',
    setup: async (conn) => {
      // Tables are applied in name order: the broken one comes first, so the healthy one proves isolation.
      await conn.query('CREATE TABLE a_broken (id INT PRIMARY KEY, v VARCHAR(10))');
      await conn.query('CREATE TABLE b_healthy (id INT PRIMARY KEY, v VARCHAR(10))');
      await conn.query("INSERT INTO a_broken VALUES (1, 'y'); INSERT INTO b_healthy VALUES (1, 'x')");
    },
  });
  await f.run();

  // a_broken's column changes type incompatibly (string to integer), which apply refuses.
  await f.conn.query('UPDATE a_broken SET v = NULL');
  await f.conn.query('ALTER TABLE a_broken MODIFY v INT');
  await f.conn.query('INSERT INTO a_broken VALUES (2, 5)');
  await f.conn.query("INSERT INTO b_healthy VALUES (2, 'z')");
  const r = await f.cli(['run', 'p', '--once']);
  expect(r.code).toBe(1);
  expect(r.stderr).toContain('SOURCE_SCHEMA_CHANGED');
  expect(r.stderr).toContain('1 of 2 table(s) could not be applied: retail_analytics.bronze.a_broken');
  // The healthy table is applied; by default queries read the last consistent cut, which a failing table
  // holds back, and say so.
  expect(r.stderr).toContain('the consistent cut does not move while a table fails');
  const latest = await f.cli([
    'sql',
    'SELECT id, v FROM bronze.b_healthy ORDER BY id',
    '--format',
    'json',
    '--latest',
  ]);
  expect(JSON.parse(latest.stdout)).toEqual([
    { id: 1, v: 'x' },
    { id: 2, v: 'z' },
  ]);
  expect(await f.sql('SELECT id, v FROM bronze.b_healthy ORDER BY id')).toEqual([{ id: 1, v: 'x' }]);
  // The broken table stays at its last good state.
  expect(await f.sql('SELECT id, v FROM bronze.a_broken ORDER BY id')).toEqual([{ id: 1, v: 'y' }]);
});
