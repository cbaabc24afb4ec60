/**
 * `tributary preflight` on a PostgreSQL connection, as users run it: PASS/WARN/FAIL with evidence and the
 * fix, exit code 0 when nothing fails and 1 when something does, and `tributary run` refusing to start then.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type PgPipelineFixture, pgPipelineFixture } from '../harness/pg-pipeline-fixture.js';

describe('tributary preflight on PostgreSQL', () => {
  let f: PgPipelineFixture;

  beforeAll(async () => {
    f = await pgPipelineFixture({
      prefix: 'pg_preflight',
      setup: async (client) => {
        await client.query('CREATE TABLE orders (id INT PRIMARY KEY, total NUMERIC(10,2))');
        await client.query('CREATE TABLE events (happened TIMESTAMPTZ, what TEXT)');
        await client.query('ALTER TABLE events REPLICA IDENTITY FULL');
      },
      objects: (db) => `      - table:
          source_catalog: ${db}
          source_schema: public
          source_table: orders
          destination_catalog: retail_analytics
          destination_schema: bronze`,
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('passes a source that is ready, saying what it checked', async () => {
    const r = await f.cli(['preflight', 'src']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/PASS.*wal_level/i);
    expect(r.stdout).not.toMatch(/\bFAIL\b/);
    // The CDC role is not a superuser and has REPLICATION; its password never appears.
    expect(r.stdout + r.stderr).not.toContain(f.password);
  });

  it('fails a table whose updates cannot be matched, exits 1, and run refuses to start', async () => {
    await f.client.query('ALTER TABLE orders REPLICA IDENTITY NOTHING');
    const r = await f.cli(['preflight', 'src']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/FAIL/);
    expect(r.stdout).toContain('REPLICA IDENTITY');
    const run = await f.cli(['run', 'p', '--once']);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toContain('SOURCE_MISCONFIGURED');
    await f.client.query('ALTER TABLE orders REPLICA IDENTITY DEFAULT');
  });
});
