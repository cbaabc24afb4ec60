/**
 * `system.lakeflow.pipeline_events`: every `tributary run` round leaves a row, as does each table it applied,
 * each schema change and each snapshot; long work shows RUNNING while it runs; the checklist's and the
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

    const history = await f.sql(HISTORY);
    // Newest first: the failed round; the second round's table, the round; the first round's table, snapshot, round.
    expect(history.map((r) => `${r['event_type']} ${r['state']}`)).toEqual([
      'update FAILED',
      'flow_progress COMPLETED',
      'update COMPLETED',
      'flow_progress COMPLETED',
      'snapshot COMPLETED',
      'update COMPLETED',
    ]);
    const rounds = history.filter((r) => r['event_type'] === 'update');
    const [last, second, first] = rounds;
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
    // One process run, one update id; another run, another id. A round's other rows share its id.
    expect(new Set(rounds.map((r) => r['update_id'])).size).toBe(3);
    expect(new Set(history.map((r) => r['update_id'])).size).toBe(3);
    const flows = history.filter((r) => r['event_type'] === 'flow_progress');
    expect(flows.map((r) => [r['table_name'], r['rows_inserted'], r['rows_updated']])).toEqual([
      ['retail_analytics.bronze.t', 0, 1],
      ['retail_analytics.bronze.t', 2, 0],
    ]);
    const snapshot = history.find((r) => r['event_type'] === 'snapshot');
    expect(snapshot).toMatchObject({ changes_captured: 2, table_name: expect.stringMatching(/\.t$/) });
    expect(String(snapshot?.['message'])).toMatch(
      /^snapshot of .*\.t: 2 rows( \(estimated ~[\d,]+\))? in .* \(complete\)$/,
    );

    // Five operations of six succeeded.
    const [rate] = await f.sql(SUCCESS_RATE);
    expect(Number(rate?.['success_rate'])).toBeCloseTo(83.33, 2);
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

  it('records a schema change with the columns it added', async () => {
    await f.conn.query('ALTER TABLE t ADD COLUMN w INT');
    await f.conn.query("INSERT INTO t VALUES (3, 'e', 7)");
    await f.run();
    const [change] = await f.sql(
      "SELECT * FROM system.lakeflow.pipeline_events WHERE event_type = 'schema_change' ORDER BY timestamp DESC LIMIT 1",
    );
    expect(change).toMatchObject({ state: 'COMPLETED', table_name: 'retail_analytics.bronze.t' });
    expect(String(change?.['message'])).toMatch(/^version \d+: added w$/);
    expect(JSON.parse(String(change?.['details']))).toMatchObject({ added: ['w'], policy: 'evolve' });
  });

  it('records the start of a run --once at once, so a kill right after it is never silent', async () => {
    const killed = await f.cli(['run', 'p', '--once'], { env: { TRIBUTARY_FAULT: 'after-running-event:1' } });
    expect(killed.signal).toBe('SIGKILL');
    const [running] = await f.sql(
      "SELECT state FROM system.lakeflow.pipeline_events WHERE event_type = 'update' ORDER BY timestamp DESC LIMIT 1",
    );
    expect(running).toEqual({ state: 'RUNNING' });
    const next = await f.cli(['run', 'p', '--once']);
    expect(next.code, next.stderr).toBe(0);
    const rounds = await f.sql(
      "SELECT state, error_code FROM system.lakeflow.pipeline_events WHERE event_type = 'update' ORDER BY timestamp DESC LIMIT 2",
    );
    expect(rounds).toEqual([
      { state: 'COMPLETED', error_code: null },
      { state: 'FAILED', error_code: 'RUN_INTERRUPTED' },
    ]);
  });
});

describe('pipeline_events while long work runs', () => {
  let f: PipelineFixture;

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'events_running',
      setup: async (conn) => {
        await conn.query('CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(20))');
        const values = Array.from({ length: 3000 }, (_, i) => `(${i + 1}, 'v${i + 1}')`);
        await conn.query(`INSERT INTO big VALUES ${values.join(', ')}`);
      },
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('shows a round and its snapshot as RUNNING, and a kill -9 turns them FAILED with RUN_INTERRUPTED', async () => {
    // RUNNING rows at once instead of after 5 s; the process dies as soon as the snapshot's row is durable.
    const env = {
      TRIBUTARY_RUNNING_EVENT_AFTER_SECONDS: '0',
      TRIBUTARY_SNAPSHOT_CHUNK_ROWS: '200',
    };
    const killed = await f.cli(['run', 'p', '--once'], {
      env: { ...env, TRIBUTARY_FAULT: 'after-running-event:2' },
    });
    expect(killed.signal ?? killed.code).toBe('SIGKILL');
    const running = await f.sql(
      "SELECT event_type, state, message FROM system.lakeflow.pipeline_events WHERE pipeline_name = 'p' ORDER BY event_type",
    );
    expect(running.map((r) => `${r['event_type']} ${r['state']}`)).toEqual([
      'snapshot RUNNING',
      'update RUNNING',
    ]);
    expect(String(running[0]?.['message'])).toMatch(/^snapshot of .*\.big: [\d,]+ of ~[\d,]+ rows/);

    const resumed = await f.cli(['run', 'p', '--once'], { env });
    expect(resumed.code, resumed.stderr).toBe(0);
    const rows = await f.sql(
      "SELECT event_type, state, error_code FROM system.lakeflow.pipeline_events WHERE pipeline_name = 'p' ORDER BY timestamp, event_type",
    );
    const seen = rows.map((r) => `${r['event_type']} ${r['state']} ${r['error_code'] ?? '-'}`);
    // Nothing is left RUNNING: the killed round and its snapshot failed, the next round finished both.
    expect(seen.filter((s) => s.includes('RUNNING'))).toEqual([]);
    expect(seen.slice(0, 2).sort()).toEqual([
      'snapshot FAILED RUN_INTERRUPTED',
      'update FAILED RUN_INTERRUPTED',
    ]);
    expect(seen).toContain('snapshot COMPLETED -');
    expect(seen).toContain('flow_progress COMPLETED -');
    expect(seen.filter((s) => s.startsWith('update'))).toEqual([
      'update FAILED RUN_INTERRUPTED',
      'update COMPLETED -',
    ]);
    const [count] = await f.sql('SELECT count(*) AS n FROM retail_analytics.bronze.big');
    expect(Number(count?.['n'])).toBe(3000);
  });
});
