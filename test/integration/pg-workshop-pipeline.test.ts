/**
 * The retail workshop on a real PostgreSQL through the real CLI, as the MariaDB one runs: snapshot, the
 * insert/update/delete scenario, incremental capture, and the workshop's validation queries verbatim.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSnapshot } from '../../src/delta/snapshot.js';
import {
  createRetailSchema,
  postgresRetailDatabase,
  runWorkshopScenario,
  sourceCounts,
  WORKSHOP_VALIDATIONS,
} from '../../src/demo/retail-workshop.js';
import { decodePgPosition, parseLsn } from '../../src/sources/postgres/lsn.js';
import { StagingVolume } from '../../src/staging/staging-volume.js';
import { type PgPipelineFixture, pgPipelineFixture } from '../harness/pg-pipeline-fixture.js';

/** Source rows as the bronze table shows them through `tributary sql --format json`. */
async function sourceRows(f: PgPipelineFixture, table: string, key: string): Promise<unknown[]> {
  const result = await f.client.query(`SELECT * FROM ${table} ORDER BY ${key}`);
  return result.rows.map((r: Record<string, string | null>) => {
    const out: Record<string, string | null> = {};
    for (const [k, v] of Object.entries(r)) out[k] = v;
    return out;
  });
}

async function bronzeRows(f: PgPipelineFixture, table: string, key: string): Promise<unknown[]> {
  const rows = await f.sql(
    `SELECT * EXCLUDE (_commit_timestamp) FROM retail_analytics.bronze.${table} ORDER BY ${key}`,
  );
  return rows.map((r) => {
    const out: Record<string, string | null> = {};
    // A TIMESTAMP lands as a Delta timestamp (an instant, read as UTC); DuckDB prints its zone, the source none.
    for (const [k, v] of Object.entries(r)) out[k] = v === null ? null : String(v).replace(/\+00$/, '');
    return out;
  });
}

describe('retail workshop pipeline on PostgreSQL', () => {
  let f: PgPipelineFixture;
  const table = (name: string) => join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', name);
  const retail = () => postgresRetailDatabase(f.client);

  beforeAll(async () => {
    f = await pgPipelineFixture({
      prefix: 'retail_pg',
      setup: async (client) => {
        await createRetailSchema(postgresRetailDatabase(client));
        // Statistics, so the snapshot's progress has an estimate to measure against.
        await client.query('ANALYZE');
      },
      objects: (db) => `      - table:
          source_catalog: ${db}
          source_schema: public
          source_table: customers
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration: { scd_type: SCD_TYPE_1 }
      - schema:
          source_catalog: ${db}
          source_schema: public
          destination_catalog: retail_analytics
          destination_schema: bronze`,
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('snapshots every table into a Delta table equal to the source, row for row', async () => {
    const run = await f.run();
    expect(run.stderr).toMatch(
      /snapshot of [^:]+: 6,200 rows \(estimated ~6,200\) in \d+ s, [\d,]+ rows\/s \(complete\)/,
    );
    // The WAL the slot held while the snapshot ran (nothing confirms it until streaming starts).
    expect(run.stderr).toMatch(
      /snapshot: the slot "tributary_gw" holds [\d.]+ k?B of WAL \(max_slot_wal_keep_size is unlimited\)/,
    );
    for (const [name, key] of [
      ['customers', 'customer_id'],
      ['orders', 'order_id'],
      ['products', 'product_id'],
    ] as const) {
      const source = await sourceRows(f, name, key);
      expect(source.length).toBeGreaterThan(0);
      expect(await bronzeRows(f, name, key)).toEqual(source);
      const snapshot = await loadSnapshot(table(name));
      expect(snapshot.schema.fields.map((c) => c.name)).toContain('_commit_timestamp');
    }
  });

  it('a second run with no source changes commits nothing', async () => {
    const versions = await Promise.all(
      ['customers', 'orders', 'products'].map(async (t) => (await loadSnapshot(table(t))).version),
    );
    await f.run();
    const after = await Promise.all(
      ['customers', 'orders', 'products'].map(async (t) => (await loadSnapshot(table(t))).version),
    );
    expect(after).toEqual(versions);
  });

  it('captures the workshop insert, update and delete and passes every validation query verbatim', async () => {
    await runWorkshopScenario(retail());
    await f.run();
    const counts = await sourceCounts(retail());
    for (const v of WORKSHOP_VALIDATIONS) {
      const rows = await f.sql(v.sql);
      expect(v.check(rows, counts), v.title).toBeNull();
    }
    for (const [name, key] of [
      ['customers', 'customer_id'],
      ['orders', 'order_id'],
      ['products', 'product_id'],
    ] as const) {
      expect(await bronzeRows(f, name, key)).toEqual(await sourceRows(f, name, key));
    }
  });

  it('has the slot confirmed no further than the position staging holds', async () => {
    const slot = await f.client.query(
      "SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'tributary_gw'",
    );
    const confirmed = parseLsn(String(slot.rows[0]?.lsn));
    const gateway = join(f.dir, 'lakehouse', 'retail_analytics', 'landing', 'ingestion_volume', 'gw');
    const state = await new StagingVolume(gateway, 'gw').loadState();
    expect(state.position).not.toBeNull();
    const staged = decodePgPosition(String(state.position));
    expect(confirmed).toBeGreaterThan(0n);
    expect(confirmed <= staged).toBe(true);
  });
});
