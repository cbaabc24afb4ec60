/**
 * The pipeline's schema_evolution policy, with DDL in the middle of the stream: three pipelines read one
 * gateway, one per policy, and each bronze table follows (evolve), stops (fail) or keeps its schema (ignore).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PipelineFixture, pipelineFixture } from '../harness/pipeline-fixture.js';

const pipeline = (name: string, policy: string, schema: string) => `  ${name}:
    gateway: gw
    schema_evolution: ${policy}
    objects:
      - schema:
          source_schema: $DB
          destination_catalog: retail_analytics
          destination_schema: ${schema}
`;

describe('schema_evolution policies', () => {
  let f: PipelineFixture;
  const run = (name: string) => f.cli(['run', name, '--once']);
  const columns = async (schema: string) =>
    (await f.sql(`DESCRIBE retail_analytics.${schema}.items`)).map(
      (r) => `${r['column_name']} ${r['column_type']}`,
    );

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'evolution',
      setup: async (conn) => {
        await conn.query('CREATE TABLE items (id INT PRIMARY KEY, qty INT)');
        await conn.query('INSERT INTO items VALUES (1, 10), (2, 20)');
      },
      pipelines: (db) =>
        [pipeline('p_fail', 'fail', 'bronze_fail'), pipeline('p_ignore', 'ignore', 'bronze_ignore')]
          .join('')
          .replaceAll('$DB', db),
    });
    for (const name of ['p', 'p_fail', 'p_ignore']) expect((await run(name)).code).toBe(0);
    // Mid-stream: a row before the DDL, the DDL, rows after it.
    await f.conn.query('UPDATE items SET qty = 11 WHERE id = 1');
    await f.conn.query('ALTER TABLE items ADD COLUMN note VARCHAR(20), MODIFY qty BIGINT');
    await f.conn.query("INSERT INTO items VALUES (3, 30, 'new')");
    await f.conn.query("UPDATE items SET note = 'changed' WHERE id = 2");
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('evolve: the bronze table gains the column and widens the type', async () => {
    expect((await run('p')).code).toBe(0);
    expect(await columns('bronze')).toEqual(expect.arrayContaining(['qty BIGINT', 'note VARCHAR']));
    expect(await f.sql('SELECT id, qty, note FROM bronze.items ORDER BY id')).toEqual([
      { id: 1, qty: 11, note: null },
      { id: 2, qty: 20, note: 'changed' },
      { id: 3, qty: 30, note: 'new' },
    ]);
  });

  it('fail: the table stops with SOURCE_SCHEMA_CHANGED naming the change and the way on', async () => {
    const r = await run('p_fail');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('SOURCE_SCHEMA_CHANGED');
    expect(r.stderr).toContain("the pipeline's schema_evolution is fail");
    expect(r.stderr).toContain('note added');
    expect(r.stderr).toContain('qty: integer -> long');
    expect(await columns('bronze_fail')).toEqual(expect.arrayContaining(['qty INTEGER']));
    expect(await f.sql('SELECT id, qty FROM bronze_fail.items ORDER BY id', { latest: true })).toEqual([
      { id: 1, qty: 10 },
      { id: 2, qty: 20 },
    ]);
  });

  it('ignore: the bronze schema stays as it was, and the rows keep flowing', async () => {
    expect((await run('p_ignore')).code).toBe(0);
    const cols = await columns('bronze_ignore');
    expect(cols).toContain('qty INTEGER');
    expect(cols.some((c) => c.startsWith('note '))).toBe(false);
    expect(await f.sql('SELECT id, qty FROM bronze_ignore.items ORDER BY id')).toEqual([
      { id: 1, qty: 11 },
      { id: 2, qty: 20 },
      { id: 3, qty: 30 },
    ]);
  });
});
