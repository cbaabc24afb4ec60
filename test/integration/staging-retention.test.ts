/**
 * Staged segments are removed once every pipeline of the gateway has applied them and they are past the
 * gateway's retention; never before, and never the newest (it carries the gateway's checkpoint).
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type PipelineFixture, pipelineFixture, sourceAndBronze } from '../harness/pipeline-fixture.js';

const segments = async (f: PipelineFixture) =>
  (await readdir(join(f.dir, 'lakehouse', 'retail_analytics', 'landing', 'ingestion_volume', 'gw')))
    .filter((n) => n.startsWith('seg-'))
    .sort();

const setup = async (conn: import('mysql2/promise').Connection) => {
  await conn.query('CREATE TABLE t (id INT PRIMARY KEY, v INT)');
  await conn.query('INSERT INTO t VALUES (1, 1), (2, 2), (3, 3)');
};

async function expectEqual(f: PipelineFixture, schema = 'bronze') {
  const { source } = await sourceAndBronze(f, 't', 'id');
  const bronze = await f.sql(`SELECT id, v FROM retail_analytics.${schema}.t ORDER BY id`);
  expect(bronze.map((r) => ({ id: String(r['id']), v: String(r['v']) }))).toEqual(source);
}

describe('staging retention', () => {
  it('removes applied segments past retention and keeps the newest', async () => {
    await using f = await pipelineFixture({ prefix: 'ret', setup, gateway: '    staging_retention_days: 0' });
    await f.run();
    for (let i = 0; i < 3; i++) {
      await f.conn.query('UPDATE t SET v = v + 10');
      await f.conn.query('INSERT INTO t VALUES (?, ?)', [100 + i, i]);
      await f.run();
    }
    expect(await segments(f)).toHaveLength(1);
    await expectEqual(f);
  });

  it('keeps every segment a second pipeline has not applied, then removes them once it has', async () => {
    await using f = await pipelineFixture({
      prefix: 'ret2',
      setup,
      gateway: '    staging_retention_days: 0',
      pipelines: (db) => `  q:
    gateway: gw
    objects:
      - schema:
          source_schema: ${db}
          destination_catalog: retail_analytics
          destination_schema: silver_copy`,
    });
    await f.run();
    await f.conn.query('UPDATE t SET v = 0 WHERE id = 1');
    const second = await f.cli(['run', 'p', '--once']);
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toContain('STAGING_RETENTION_EXCEEDED');
    expect(second.stderr).toContain('past retention but not applied yet');
    const kept = await segments(f);
    expect(kept.length).toBeGreaterThan(1);
    // An alert-worthy row, under the pipeline that is behind.
    const [behind] = await f.sql(
      "SELECT state, error_code, message FROM system.lakeflow.pipeline_events WHERE pipeline_name = 'q' AND event_type = 'staging_retention'",
    );
    expect(behind).toMatchObject({ state: 'FAILED', error_code: 'STAGING_RETENTION_EXCEEDED' });
    expect(String(behind?.['message'])).toMatch(/not applied to \S+\.t yet/);

    const q = await f.cli(['run', 'q', '--once']);
    expect(q.code, q.stderr).toBe(0);
    await expectEqual(f, 'silver_copy');
    expect(await segments(f)).toHaveLength(1);
  });
});
