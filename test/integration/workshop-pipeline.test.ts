/**
 * The retail workshop on a real MariaDB through the real CLI: snapshot, the insert/update/delete scenario,
 * incremental capture, `_commit_timestamp`, and the workshop's validation queries run verbatim.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSnapshot } from '../../src/delta/snapshot.js';
import {
  createRetailSchema,
  mysqlRetailDatabase,
  runWorkshopScenario,
  sourceCounts,
  WORKSHOP_VALIDATIONS,
} from '../../src/demo/retail-workshop.js';
import { type PipelineFixture, pipelineFixture, sourceAndBronze } from '../harness/pipeline-fixture.js';

describe('retail workshop pipeline', () => {
  let f: PipelineFixture;
  const table = (name: string) => join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', name);

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'retail',
      setup: (conn) => createRetailSchema(mysqlRetailDatabase(conn)),
      objects: (db) => `      - table:
          source_schema: ${db}
          source_table: customers
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration: { scd_type: SCD_TYPE_1 }
      - schema:
          source_schema: ${db}
          destination_catalog: retail_analytics
          destination_schema: bronze`,
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('snapshots every table into a Delta table equal to the source, row for row', async () => {
    const before = new Date();
    const run = await f.run();
    // Progress against InnoDB's row estimate (approximate, so only the shape is checked).
    expect(run.stderr).toMatch(
      /snapshot of [^:]+: 6,200 rows \(estimated ~[\d,]+\) in \d+ s, [\d,]+ rows\/s \(complete\)/,
    );
    for (const [name, key] of [
      ['customers', 'customer_id'],
      ['orders', 'order_id'],
      ['products', 'product_id'],
    ] as const) {
      const { source, bronze } = await sourceAndBronze(f, name, key, undefined);
      expect(bronze.length).toBeGreaterThan(0);
      expect(bronze.map(({ _commit_timestamp, ...rest }) => rest)).toEqual(source);
      const snapshot = await loadSnapshot(table(name));
      expect(snapshot.protocol).toMatchObject({ minReaderVersion: 1, minWriterVersion: 2 });
      expect(snapshot.schema.fields.map((c) => c.name)).toContain('_commit_timestamp');
    }
    const [stamp] = await f.sql(
      'SELECT min(_commit_timestamp) AS lo, max(_commit_timestamp) AS hi FROM bronze.customers',
    );
    // The snapshot's rows carry the time of the snapshot (server clock, same machine).
    expect(Date.parse(String(stamp?.['lo']).replace(' ', 'T').replace('+00', 'Z'))).toBeGreaterThanOrEqual(
      before.getTime() - 2000,
    );
    expect(stamp?.['lo']).toEqual(stamp?.['hi']);
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
    const [[clock]] = (await f.conn.query('SELECT UTC_TIMESTAMP() AS now')) as unknown as [[{ now: string }]];
    await runWorkshopScenario(mysqlRetailDatabase(f.conn));
    await f.run();

    const counts = await sourceCounts(mysqlRetailDatabase(f.conn));
    for (const v of WORKSHOP_VALIDATIONS) {
      const rows = await f.sql(v.sql);
      expect(v.check(rows, counts), v.title).toBeNull();
    }
    // The changed rows carry the source commit time of their change, not the snapshot's.
    const [order] = await f.sql('SELECT _commit_timestamp AS t FROM bronze.orders WHERE order_id = 5001');
    expect(Date.parse(`${String(order?.['t']).slice(0, 19).replace(' ', 'T')}Z`)).toBeGreaterThanOrEqual(
      Date.parse(`${clock.now.replace(' ', 'T')}Z`),
    );

    for (const [name, key] of [
      ['customers', 'customer_id'],
      ['orders', 'order_id'],
      ['products', 'product_id'],
    ] as const) {
      const { source, bronze } = await sourceAndBronze(f, name, key);
      expect(bronze.map(({ _commit_timestamp, ...rest }) => rest)).toEqual(source);
    }
    // The workshop's first validation query: the staging volume's contents.
    const volume = await f.sql("LIST 'dbfs:/Volumes/retail_analytics/landing/ingestion_volume/'");
    expect(volume.map((r) => r['name'])).toEqual(['gw/']);
    const segments = await f.sql("LIST 'dbfs:/Volumes/retail_analytics/landing/ingestion_volume/gw/'");
    expect(segments.length).toBeGreaterThan(0);
    expect(segments.every((r) => /^seg-\d{12}\/$/.test(String(r['name'])))).toBe(true);

    // Databricks SQL forms from the checklist run as written.
    const [recent] = await f.sql(
      'SELECT COUNT(*) AS n FROM retail_analytics.bronze.orders WHERE _commit_timestamp >= CURRENT_TIMESTAMP() - INTERVAL 7 DAYS',
    );
    expect(recent?.['n']).toBe(counts.orders);

    const orders = await loadSnapshot(table('orders'));
    expect(orders.version).toBe(1);
    expect(orders.txnVersion(`tributary:p:retail_analytics.bronze.orders`)).toBeGreaterThan(0);
  });
});
