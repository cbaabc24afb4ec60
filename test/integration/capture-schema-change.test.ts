/**
 * A column added at the source while capture runs with an older table shape: its values must be staged
 * and reach bronze, not be dropped because the shape read at the start of the round did not know it.
 * Drives the capture and apply tasks directly, with the real MariaDB source, staging volume and Delta writer.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Warehouse } from '../../src/catalog/warehouse.js';
import { DuckDb } from '../../src/engine/duckdb.js';
import { SqlSession } from '../../src/engine/sql-session.js';
import { applyStaged } from '../../src/pipeline/apply.js';
import { capture } from '../../src/pipeline/capture.js';
import { silentLogger } from '../../src/pipeline/logger.js';
import { MySqlSource } from '../../src/sources/mysql/mysql-source.js';
import { StagingVolume } from '../../src/staging/staging-volume.js';
import { type FreshDatabase, freshDatabase } from '../harness/mysql.js';

describe('capture across a column added mid-stream', () => {
  let db: FreshDatabase;
  let dir: string;

  beforeAll(async () => {
    db = await freshDatabase('alter');
    dir = await mkdtemp(join(tmpdir(), 'tributary-alter-'));
    await db.conn.query('CREATE TABLE t (id INT PRIMARY KEY, a VARCHAR(10))');
    await db.conn.query("INSERT INTO t VALUES (1, 'one')");
  });
  afterAll(async () => {
    await db?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it('re-reads the table shape and stages the new column', async () => {
    const { host, port, user, password } = inject('mysql');
    await using source = new MySqlSource({ name: 'test', host, port, user, password }, { serverId: 4242 });
    await using duck = await DuckDb.open();
    const volume = new StagingVolume(join(dir, 'staging'), 'gw');
    const selection = { tables: [{ schema: db.name, table: 't' }], schemas: [] };
    const signal = new AbortController().signal;
    const stale = await source.listTables(selection, signal);
    const base = {
      source,
      volume,
      db: duck,
      snapshotChunkRows: 1000,
      segmentMaxChanges: 1000,
      signal,
      log: silentLogger,
    };

    await capture({ ...base, tables: stale, until: await source.readHead(signal) });

    await db.conn.query('ALTER TABLE t ADD COLUMN b INT');
    await db.conn.query("INSERT INTO t VALUES (2, 'two', 7)");
    await db.conn.query("UPDATE t SET b = 8, a = 'uno' WHERE id = 1");
    const report = await capture({
      ...base,
      tables: stale,
      until: await source.readHead(signal),
      refreshSchema: async (id) => (await source.listTables({ tables: [id], schemas: [] }, signal))[0],
    });
    const staged = report.segments.at(-1)?.tables[`${db.name}.t`];
    expect(staged?.schema.columns.map((c) => c.name)).toEqual(['id', 'a', 'b']);

    const warehouse = new Warehouse(join(dir, 'lake'));
    const destination = { catalog: 'lake', schema: 'bronze', table: 't' };
    await applyStaged({
      pipeline: 'p',
      db: duck,
      volume,
      targets: [
        {
          sourceKey: `${db.name}.t`,
          destination: 'lake.bronze.t',
          tableRoot: warehouse.tablePath(destination),
        },
      ],
      maxSegmentsPerCommit: 64,
      signal,
      log: silentLogger,
    });
    await using sql = await SqlSession.open(warehouse);
    const { rows } = await sql.execute('SELECT id, a, b FROM lake.bronze.t ORDER BY id');
    expect(rows).toEqual([
      { id: 1, a: 'uno', b: 8 },
      { id: 2, a: 'two', b: 7 },
    ]);
  });
});
