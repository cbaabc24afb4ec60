/**
 * Switching a table's scd_type: the next round refuses, naming the refresh; `tributary refresh` then replaces
 * the table with the new layout in one commit, and the old layout stays readable by time travel.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PipelineFixture, pipelineFixture } from '../harness/pipeline-fixture.js';

describe('switching scd_type', () => {
  let f: PipelineFixture;
  const config = () => join(f.dir, 'tributary.yaml');
  const setScdType = async (from: string, to: string) => {
    const text = await readFile(config(), 'utf8');
    expect(text).toContain(`scd_type: ${from}`);
    await writeFile(config(), text.replace(`scd_type: ${from}`, `scd_type: ${to}`));
  };
  const source = async () =>
    (
      (await f.conn.query('SELECT id, v FROM t ORDER BY id')) as unknown as [Array<{ id: number; v: string }>]
    )[0].map((r) => `${r.id}:${r.v}`);
  const columns = async () =>
    (await f.sql('DESCRIBE retail_analytics.bronze.t')).map((r) => String(r['col_name'] ?? r['column_name']));

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'scdswitch',
      setup: async (conn) => {
        await conn.query('CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))');
        await conn.query("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')");
      },
      objects: (db) => `      - table:
          source_schema: ${db}
          source_table: t
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration: { scd_type: SCD_TYPE_1 }`,
    });
    await f.run();
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('refuses the new layout until a refresh, then replaces the table with history columns', async () => {
    await f.conn.query("UPDATE t SET v = 'b2' WHERE id = 2");
    await setScdType('SCD_TYPE_1', 'SCD_TYPE_2');
    const refused = await f.cli(['run', 'p', '--once']);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain('CONFIG_INVALID');
    expect(refused.stderr).toMatch(/tributary refresh <pipeline> --table \S+\.t`: its new snapshot replaces/);
    // Still the old table, queryable.
    expect(await columns()).not.toContain('__START_AT');
    const versionBefore = Math.max(
      ...(await f.sql('DESCRIBE HISTORY retail_analytics.bronze.t')).map((r) => Number(r['version'])),
    );

    const refreshed = await f.cli(['refresh', 'p', '--table', 't']);
    expect(refreshed.code, refreshed.stderr).toBe(0);
    expect(await columns()).toEqual(expect.arrayContaining(['id', 'v', '__START_AT', '__END_AT']));
    const current = await f.sql(
      'SELECT id, v FROM retail_analytics.bronze.t WHERE __END_AT IS NULL ORDER BY id',
    );
    expect(current.map((r) => `${r['id']}:${r['v']}`)).toEqual(await source());
    // The SCD type 1 table is still there to read, as it was.
    const old = await f.sql(
      `SELECT id, v FROM retail_analytics.bronze.t VERSION AS OF ${Number(versionBefore)} ORDER BY id`,
    );
    expect(old.map((r) => `${r['id']}:${r['v']}`)).toEqual(['1:a', '2:b', '3:c']);

    // From now on it keeps history.
    await f.conn.query("UPDATE t SET v = 'a2' WHERE id = 1");
    await f.run();
    const history = await f.sql(
      'SELECT v, __END_AT IS NULL AS open FROM retail_analytics.bronze.t WHERE id = 1 ORDER BY __START_AT',
    );
    expect(history.map((r) => `${r['v']}:${r['open']}`)).toEqual(['a:false', 'a2:true']);

    const [change] = await f.sql(
      "SELECT message FROM system.lakeflow.pipeline_events WHERE event_type = 'schema_change' ORDER BY timestamp DESC LIMIT 1",
    );
    expect(String(change?.['message'])).toMatch(/added __START_AT, __END_AT/);
  });

  it('switches back to SCD_TYPE_1 the same way', async () => {
    await setScdType('SCD_TYPE_2', 'SCD_TYPE_1');
    const refreshed = await f.cli(['refresh', 'p', '--table', 't']);
    expect(refreshed.code, refreshed.stderr).toBe(0);
    expect(await columns()).not.toContain('__START_AT');
    const rows = await f.sql('SELECT id, v FROM retail_analytics.bronze.t ORDER BY id');
    expect(rows.map((r) => `${r['id']}:${r['v']}`)).toEqual(await source());
    await f.conn.query("UPDATE t SET v = 'c2' WHERE id = 3");
    await f.run();
    const after = await f.sql('SELECT id, v FROM retail_analytics.bronze.t ORDER BY id');
    expect(after.map((r) => `${r['id']}:${r['v']}`)).toEqual(await source());
  });
});
