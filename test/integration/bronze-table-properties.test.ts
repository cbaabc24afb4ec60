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

  for (const [label, dv] of [
    ['copy-on-write', false],
    ['deletion vectors', true],
  ] as const) {
    it(`records every applied change in the change data feed, read with table_changes (${label})`, async () => {
      await using f = await pipelineFixture({
        prefix: dv ? 'cdf_dv' : 'cdf',
        setup: async (conn) => {
          await conn.query('CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))');
          await conn.query('INSERT INTO t VALUES ?', [Array.from({ length: 300 }, (_, i) => [i, `v${i}`])]);
        },
        objects: (db) => `      - schema:
          source_schema: ${db}
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration:
            commit_timestamp_column: _source_commit_timestamp
            table_properties: { delta.enableChangeDataFeed: "true"${dv ? ', delta.enableDeletionVectors: "true"' : ''} }`,
      });
      await f.run();
      const [created] = await f.sql('DESCRIBE DETAIL retail_analytics.bronze.t');
      const afterSnapshot = Number(
        (await f.sql('DESCRIBE HISTORY retail_analytics.bronze.t LIMIT 1'))[0]?.['version'],
      );
      expect(JSON.stringify(created?.['properties'])).toContain('delta.enableChangeDataFeed');
      await f.conn.query("UPDATE t SET v = 'changed' WHERE id IN (1, 2, 3)");
      await f.conn.query('DELETE FROM t WHERE id IN (10, 11)');
      await f.conn.query("INSERT INTO t VALUES (1000, 'new')");
      // A key changed twice, and a key inserted then deleted, within the same round: only the net change counts.
      await f.conn.query("UPDATE t SET v = 'twice' WHERE id = 1");
      await f.conn.query("INSERT INTO t VALUES (2000, 'gone')");
      await f.conn.query('DELETE FROM t WHERE id = 2000');
      await f.run();
      const changes = await f.sql(
        `SELECT id, v, _change_type FROM table_changes('retail_analytics.bronze.t', ${afterSnapshot + 1}) ORDER BY id, _change_type`,
      );
      expect(changes).toEqual([
        { id: 1, v: 'twice', _change_type: 'update_postimage' },
        { id: 1, v: 'v1', _change_type: 'update_preimage' },
        { id: 2, v: 'changed', _change_type: 'update_postimage' },
        { id: 2, v: 'v2', _change_type: 'update_preimage' },
        { id: 3, v: 'changed', _change_type: 'update_postimage' },
        { id: 3, v: 'v3', _change_type: 'update_preimage' },
        { id: 10, v: 'v10', _change_type: 'delete' },
        { id: 11, v: 'v11', _change_type: 'delete' },
        { id: 1000, v: 'new', _change_type: 'insert' },
      ]);
      // The snapshot's version reads as inserts of every row (no cdc files needed for it).
      const [snapshotFeed] = await f.sql(
        `SELECT count(*) AS n, min(_change_type) AS t FROM table_changes('retail_analytics.bronze.t', ${afterSnapshot}, ${afterSnapshot})`,
      );
      expect(snapshotFeed).toEqual({ n: 300, t: 'insert' });
      const { source, bronze } = await sourceAndBronze(f, 't', 'id');
      expect(bronze).toEqual(source);
      const [row] = await f.sql(
        'SELECT count(*) AS n FROM retail_analytics.bronze.t WHERE _source_commit_timestamp IS NULL',
      );
      expect(row).toEqual({ n: 0 });
    });
  }

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
