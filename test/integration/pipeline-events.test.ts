/**
 * `system.lakeflow.pipeline_events`: every `tributary run` round leaves a row, and the checklist's and the
 * workshop's queries over it run verbatim through `tributary sql`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PipelineFixture, pipelineFixture } from '../harness/pipeline-fixture.js';

/** The production checklist's success-rate query (section 14), with this test's pipeline name. */
const SUCCESS_RATE = `SELECT 
    ROUND(100.0 * SUM(CASE WHEN state = 'COMPLETED' THEN 1 ELSE 0 END) / COUNT(*), 2) as success_rate
FROM system.lakeflow.pipeline_events
WHERE pipeline_name = 'p'
  AND timestamp >= CURRENT_TIMESTAMP() - INTERVAL 7 DAYS;`;

/** The workshop's "Check pipeline execution history" query. */
const HISTORY = `SELECT * FROM system.lakeflow.pipeline_events
WHERE pipeline_name = 'p'
ORDER BY timestamp DESC
LIMIT 10;`;

describe('system.lakeflow.pipeline_events', () => {
  let f: PipelineFixture;

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'events',
      setup: async (conn) => {
        await conn.query('CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(10))');
        await conn.query("INSERT INTO t VALUES (1, 'a'), (2, 'b')");
      },
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('says clearly that no pipeline has run yet', async () => {
    const r = await f.cli(['sql', HISTORY]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('no pipeline has run in this warehouse yet');
  });

  it('records a completed round with what it did, and a failed one with its error code', async () => {
    await f.run();
    await f.conn.query("UPDATE t SET v = 'c' WHERE id = 1");
    await f.run();
    // A failing round: the CDC user loses its replication grant.
    await f.conn.query(`REVOKE REPLICATION SLAVE, REPLICATION CLIENT ON *.* FROM '${f.user}'@'127.0.0.1'`);
    await f.conn.query("UPDATE t SET v = 'd' WHERE id = 2");
    const failed = await f.cli(['run', 'p', '--once']);
    expect(failed.code).not.toBe(0);
    await f.conn.query(`GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '${f.user}'@'127.0.0.1'`);

    const rows = await f.sql(HISTORY);
    expect(rows.map((r) => r['state'])).toEqual(['FAILED', 'COMPLETED', 'COMPLETED']);
    const [last, second, first] = rows;
    expect(last?.['error_code']).toMatch(/^SOURCE_/);
    expect(last?.['level']).toBe('ERROR');
    expect(second).toMatchObject({
      rows_updated: 1,
      rows_inserted: 0,
      changes_captured: 1,
      tables_applied: 1,
    });
    expect(Number(second?.['lag_ms'])).toBeGreaterThanOrEqual(0);
    expect(JSON.parse(String(second?.['details']))).toMatchObject({
      tables: [{ table: 'retail_analytics.bronze.t', updated: 1 }],
    });
    expect(first).toMatchObject({
      rows_inserted: 2,
      changes_captured: 2,
      gateway_name: 'gw',
      event_type: 'update',
    });
    // One process run, one update id; another run, another id.
    expect(new Set(rows.map((r) => r['update_id'])).size).toBe(3);

    const [rate] = await f.sql(SUCCESS_RATE);
    expect(Number(rate?.['success_rate'])).toBeCloseTo(66.67, 2);
  });

  it('records an idle round as up to date (a continuous run records one at most every 10 minutes)', async () => {
    await f.run(); // catches up with the change the failed round left behind
    const before = (await f.sql('SELECT count(*) AS n FROM system.lakeflow.pipeline_events'))[0]?.['n'];
    // The first idle round of a process is recorded: it proves the pipeline is alive.
    await f.run();
    const after = (await f.sql('SELECT count(*) AS n FROM system.lakeflow.pipeline_events'))[0]?.['n'];
    expect(Number(after)).toBe(Number(before) + 1);
    const [idle] = await f.sql(HISTORY);
    expect(idle).toMatchObject({ state: 'COMPLETED', message: 'up to date', rows_updated: 0 });
  });
});
