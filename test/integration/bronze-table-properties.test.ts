/**
 * Bronze tables created with table properties from the pipeline config: deletion vectors (merge-on-read
 * apply, reader 3 / writer 7) and auto compaction, which Tributary's own writer honours.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { Warehouse } from '../../src/catalog/warehouse.js';
import { loadSnapshot } from '../../src/delta/snapshot.js';
import { DuckDb } from '../../src/engine/duckdb.js';
import { SqlSession } from '../../src/engine/sql-session.js';
import { applyStaged } from '../../src/pipeline/apply.js';
import { capture } from '../../src/pipeline/capture.js';
import { silentLogger } from '../../src/pipeline/logger.js';
import { MySqlSource } from '../../src/sources/mysql/mysql-source.js';
import { StagingVolume } from '../../src/staging/staging-volume.js';
import { freshDatabase } from '../harness/mysql.js';
import { pipelineFixture, sourceAndBronze } from '../harness/pipeline-fixture.js';

describe('bronze table properties', () => {
  it('applies by merge-on-read with deletion vectors when the pipeline asks for them', async () => {
    await using f = await pipelineFixture({
      prefix: 'dv',
      setup: async (conn) => {
        await conn.query('CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))');
        const rows = Array.from({ length: 2000 }, (_, i) => [i, `v${i}`]);
        await conn.query('INSERT INTO t VALUES ?', [rows]);
      },
      objects: (db) => `      - schema:
          source_schema: ${db}
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration:
            table_properties: { delta.enableDeletionVectors: "true" }`,
    });
    await f.run();
    for (let round = 0; round < 3; round++) {
      await f.conn.query("UPDATE t SET v = CONCAT(v, '+') WHERE id % 7 = ?", [round]);
      await f.conn.query('DELETE FROM t WHERE id % 11 = ?', [round]);
      await f.conn.query('INSERT INTO t VALUES (?, ?)', [5000 + round, 'new']);
      await f.run();
      const { source, bronze } = await sourceAndBronze(f, 't', 'id');
      expect(bronze.map(({ _commit_timestamp, ...rest }) => rest)).toEqual(source);
    }
    const [detail] = await f.sql('DESCRIBE DETAIL retail_analytics.bronze.t');
    expect(detail).toMatchObject({ minReaderVersion: 3, minWriterVersion: 7 });
    expect(JSON.stringify(detail?.['tableFeatures'])).toContain('deletionVectors');
    // Rows were deleted by deletion vectors, not by rewriting the snapshot's file.
    const snapshot = await loadSnapshot(join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', 't'));
    expect(snapshot.files.some((a) => a.deletionVector)).toBe(true);
  });

  it('switches an existing copy-on-write table to deletion vectors with ALTER TABLE ... SET TBLPROPERTIES', async () => {
    await using f = await pipelineFixture({
      prefix: 'dv_later',
      setup: async (conn) => {
        await conn.query('CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))');
        await conn.query('INSERT INTO t VALUES ?', [Array.from({ length: 500 }, (_, i) => [i, `v${i}`])]);
      },
    });
    await f.run();
    const root = join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', 't');
    expect((await loadSnapshot(root)).protocol).toMatchObject({ minReaderVersion: 1, minWriterVersion: 2 });
    await f.sql(
      "ALTER TABLE retail_analytics.bronze.t SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')",
    );
    const upgraded = await loadSnapshot(root);
    expect(upgraded.protocol).toMatchObject({ minReaderVersion: 3, minWriterVersion: 7 });
    expect(upgraded.protocol.readerFeatures).toContain('deletionVectors');
    // The features writer 2 implied are listed, as the protocol asks of an upgrade to table features.
    expect(upgraded.protocol.writerFeatures).toEqual(
      expect.arrayContaining(['appendOnly', 'invariants', 'deletionVectors']),
    );
    // The next apply retires changed rows by deletion vectors, and bronze still equals the source.
    await f.conn.query("UPDATE t SET v = 'changed' WHERE id % 10 = 0");
    await f.conn.query('DELETE FROM t WHERE id % 13 = 0');
    await f.run();
    const { source, bronze } = await sourceAndBronze(f, 't', 'id');
    expect(bronze.map(({ _commit_timestamp, ...rest }) => rest)).toEqual(source);
    expect((await loadSnapshot(root)).files.some((a) => a.deletionVector)).toBe(true);
  });

  it('compacts small files after apply when delta.autoOptimize.autoCompact is on', async () => {
    const db = await freshDatabase('compact');
    const dir = await mkdtemp(join(tmpdir(), 'tributary-compact-'));
    try {
      await db.conn.query('CREATE TABLE t (id INT PRIMARY KEY, v INT)');
      const { host, port, user, password } = inject('mysql');
      await using source = new MySqlSource({ name: 'test', host, port, user, password }, { serverId: 4343 });
      await using duck = await DuckDb.open();
      const signal = new AbortController().signal;
      const volume = new StagingVolume(join(dir, 'staging'), 'gw');
      const tables = await source.listTables(
        { tables: [{ schema: db.name, table: 't' }], schemas: [] },
        signal,
      );
      const base = {
        source,
        volume,
        db: duck,
        tables,
        snapshotChunkRows: 1000,
        segmentMaxChanges: 1,
        signal,
        log: silentLogger,
      };
      await capture({ ...base, until: await source.readHead(signal) });
      // One transaction per row and one segment per transaction: many tiny commits, one small file each.
      for (let i = 0; i < 60; i++) await db.conn.query('INSERT INTO t VALUES (?, ?)', [i, i]);
      await capture({ ...base, until: await source.readHead(signal) });

      const warehouse = new Warehouse(join(dir, 'lake'));
      const root = warehouse.tablePath({ catalog: 'lake', schema: 'bronze', table: 't' });
      const logged: string[] = [];
      await applyStaged({
        pipeline: 'p',
        db: duck,
        volume,
        targets: [
          {
            sourceKey: `${db.name}.t`,
            destination: 'lake.bronze.t',
            tableRoot: root,
            tableProperties: { 'delta.autoOptimize.autoCompact': 'true' },
          },
        ],
        maxSegmentsPerCommit: 1,
        signal,
        log: { info: (m) => logged.push(m), warn: (m) => logged.push(m) },
      });
      expect(logged.some((m) => m.includes('auto compaction committed'))).toBe(true);
      const snapshot = await loadSnapshot(root);
      expect(snapshot.files.length).toBeLessThan(20);
      await using sql = await SqlSession.open(warehouse);
      const { rows } = await sql.execute('SELECT count(*) AS n, sum(v) AS s FROM lake.bronze.t');
      expect(rows).toEqual([{ n: 60, s: 1770 }]);
      const history = await sql.execute('DESCRIBE HISTORY lake.bronze.t');
      expect(history.rows.some((r) => r['operation'] === 'OPTIMIZE')).toBe(true);
    } finally {
      await db.drop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
