import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TributaryError } from '../core/errors.js';
import type { Action, AddFile } from './actions.js';
import { commit, commitFileName, DEFAULT_PROTOCOL, newDataFileName, newTableMetadata } from './commit.js';
import { withConnection } from './duckdb.js';
import { scanSql } from './scan.js';
import { parseSchema, type StructType, schemaString } from './schema.js';
import { isDeltaTable, loadSnapshot, type Snapshot } from './snapshot.js';
import { formatStats, statTimestamp } from './stats.js';

const schema: StructType = {
  type: 'struct',
  fields: [
    { name: 'id', type: 'long', nullable: false, metadata: {} },
    { name: 'name', type: 'string', nullable: true, metadata: {} },
    { name: 'region', type: 'string', nullable: true, metadata: {} },
  ],
};

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tributary-delta-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a real Parquet file under `root/region=<region>/` and returns its add action. */
async function writeDataFile(root: string, region: string | null, ids: number[]): Promise<AddFile> {
  const dirName = `region=${region ?? '__HIVE_DEFAULT_PARTITION__'}`;
  const rel = `${dirName}/${newDataFileName()}`;
  const abs = path.join(root, rel);
  await withConnection(async (c) => {
    await c.run(`CREATE OR REPLACE TEMP TABLE src AS SELECT unnest([${ids.join(',')}])::BIGINT AS id`);
    await c.run(`SELECT 1`);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(path.dirname(abs), { recursive: true });
    await c.run(`COPY (SELECT id, 'n' || id AS name FROM src) TO '${abs}' (FORMAT parquet)`);
  });
  const { size } = await import('node:fs/promises').then((fs) => fs.stat(abs));
  return {
    path: encodeURI(rel),
    partitionValues: { region },
    size,
    modificationTime: Date.now(),
    dataChange: true,
    stats: formatStats({
      numRecords: ids.length,
      minValues: { id: Math.min(...ids) },
      maxValues: { id: Math.max(...ids) },
      nullCount: { id: 0, name: 0 },
    }),
  };
}

async function readRows(snapshot: Snapshot): Promise<string[]> {
  return withConnection(async (c) => {
    await c.run(`SET TimeZone = 'UTC'`);
    const sql = await scanSql(snapshot, c);
    const result = await c.runAndReadAll(`SELECT * FROM (${sql}) ORDER BY id`);
    return result.getRowsJS().map((r) => r.map((v) => (v === null ? 'null' : String(v))).join('|'));
  });
}

describe('schema', () => {
  it('round-trips nested schemas with Spark key order', () => {
    const text =
      '{"type":"struct","fields":[{"name":"a","type":{"type":"array","elementType":{"type":"map","keyType":"string","valueType":"decimal(10,2)","valueContainsNull":true},"containsNull":false},"nullable":true,"metadata":{"comment":"x"}}]}';
    expect(schemaString(parseSchema(text))).toBe(text);
  });
  it('rejects a non-struct schema as DELTA_CORRUPT', () => {
    expect(() => parseSchema('"long"')).toThrow(expect.objectContaining({ code: 'DELTA_CORRUPT' }));
  });
});

describe('stats', () => {
  it('formats timestamps with ms, rounds the max up, drops long strings, keeps exact integers', () => {
    const json = formatStats({
      numRecords: 2,
      minValues: { ts: statTimestamp(1_685_559_513_633_999n), s: 'short', big: 9007199254740993n },
      maxValues: { ts: statTimestamp(1_685_559_513_633_001n), s: 'x'.repeat(33), nested: { d: new Date(0) } },
      nullCount: { ts: 0, s: 1 },
    });
    expect(json).toBe(
      '{"numRecords":2,"minValues":{"ts":"2023-05-31T18:58:33.633Z","s":"short","big":9007199254740993},' +
        '"maxValues":{"ts":"2023-05-31T18:58:33.634Z","nested":{"d":"1970-01-01T00:00:00.000Z"}},' +
        '"nullCount":{"ts":0,"s":1}}',
    );
  });
});

describe('commit and snapshot round trip', () => {
  it('creates, appends, removes, records txn, and time travels', async () => {
    const root = path.join(dir, 'orders');
    expect(await isDeltaTable(root)).toBe(false);
    await expect(loadSnapshot(root)).rejects.toMatchObject({ code: 'DELTA_TABLE_NOT_FOUND' });

    const metadata = newTableMetadata(schema, { partitionColumns: ['region'], name: 'orders' });
    const a = await writeDataFile(root, 'eu west', [1, 2]);
    const v0 = await commit(root, -1, [{ protocol: DEFAULT_PROTOCOL }, { metaData: metadata }, { add: a }], {
      operation: 'CREATE TABLE',
      operationParameters: { partitionBy: ['region'], isManaged: false, description: null },
    });
    expect(v0).toBe(0);
    expect(await isDeltaTable(root)).toBe(true);

    const b = await writeDataFile(root, null, [3]);
    const v1 = await commit(root, 0, [{ add: b }, { txn: { appId: 'cdc', version: 42, lastUpdated: 1 } }], {
      operation: 'WRITE',
      operationParameters: { mode: 'Append' },
    });
    expect(v1).toBe(1);

    const c = await writeDataFile(root, 'us', [4, 5]);
    const removeA: Action = {
      remove: {
        path: a.path,
        deletionTimestamp: Date.now(),
        dataChange: true,
        extendedFileMetadata: true,
        partitionValues: a.partitionValues,
        size: a.size,
      },
    };
    const v2 = await commit(root, 1, [removeA, { add: c }, { txn: { appId: 'cdc', version: 43 } }], {
      operation: 'MERGE',
      isBlindAppend: false,
    });
    expect(v2).toBe(2);

    const latest = await loadSnapshot(root);
    expect(latest.version).toBe(2);
    expect(latest.metadata.id).toBe(metadata.id);
    expect(latest.schema).toEqual(schema);
    expect(latest.files.map((f) => f.path).sort()).toEqual([b.path, c.path].sort());
    expect(latest.txnVersion('cdc')).toBe(43);
    expect(latest.txnVersion('other')).toBeUndefined();
    expect(await readRows(latest)).toEqual(['3|n3|null', '4|n4|us', '5|n5|us']);

    const first = await loadSnapshot(root, { version: 0 });
    expect(first.files.map((f) => f.path)).toEqual([a.path]);
    expect(first.txnVersion('cdc')).toBeUndefined();
    expect(first.dataFilePath(a)).toContain('region=eu west');
    expect(await readRows(first)).toEqual(['1|n1|eu west', '2|n2|eu west']);
    const second = await loadSnapshot(root, { version: 1 });
    expect(second.files).toHaveLength(2);
    expect(second.txnVersion('cdc')).toBe(42);
    await expect(loadSnapshot(root, { version: 3 })).rejects.toMatchObject({ code: 'DELTA_TABLE_NOT_FOUND' });

    // Time travel by timestamp uses commit file mtimes.
    const log = path.join(root, '_delta_log');
    for (const [v, t] of [
      [0, 1_000_000],
      [1, 2_000_000],
      [2, 3_000_000],
    ] as const) {
      await utimes(path.join(log, commitFileName(v)), t / 1000, t / 1000);
    }
    expect((await loadSnapshot(root, { timestamp: new Date(2_500_000) })).version).toBe(1);
    expect((await loadSnapshot(root, { timestamp: new Date(2_000_000) })).version).toBe(1);
    expect((await loadSnapshot(root, { timestamp: new Date(9_000_000) })).version).toBe(2);
    expect((await loadSnapshot(root, { version: 1 })).timestamp).toBe(2_000_000);
    await expect(loadSnapshot(root, { timestamp: new Date(10) })).rejects.toMatchObject({
      code: 'DELTA_TABLE_NOT_FOUND',
    });

    const lines = (await readFile(path.join(log, commitFileName(0)), 'utf8')).trim().split('\n');
    const info = JSON.parse(lines[0] as string).commitInfo;
    expect(info.operation).toBe('CREATE TABLE');
    expect(info.operationParameters).toEqual({
      partitionBy: '["region"]',
      isManaged: 'false',
      description: null,
    });
    expect(info.engineInfo).toMatch(/^Tributary\/\d+\.\d+\.\d+/);
    expect(info.isBlindAppend).toBe(true);
    const info2 = JSON.parse(
      (await readFile(path.join(log, commitFileName(2)), 'utf8')).split('\n')[0] as string,
    ).commitInfo;
    expect(info2.isBlindAppend).toBe(false);
    expect(info2.readVersion).toBe(1);
    // No temp files left behind.
    expect((await readdir(log)).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('refuses to commit on top of a version that does not exist', async () => {
    const root = path.join(dir, 'gap');
    await commit(root, -1, [{ protocol: DEFAULT_PROTOCOL }, { metaData: newTableMetadata(schema) }], {
      operation: 'CREATE TABLE',
    });
    await expect(commit(root, 5, [], { operation: 'WRITE' })).rejects.toMatchObject({
      code: 'DELTA_TABLE_NOT_FOUND',
    });
    await expect(
      commit(root, -1, [{ protocol: DEFAULT_PROTOCOL }], { operation: 'CREATE TABLE' }),
    ).rejects.toThrow(TributaryError);
  });
});

describe('concurrency', () => {
  it('lets exactly one of two racing commits win; the loser gets DELTA_CONFLICT', async () => {
    const root = path.join(dir, 'race');
    await commit(root, -1, [{ protocol: DEFAULT_PROTOCOL }, { metaData: newTableMetadata(schema) }], {
      operation: 'CREATE TABLE',
    });
    for (let round = 0; round < 5; round++) {
      const snapshot = await loadSnapshot(root);
      const attempts = await Promise.allSettled(
        [0, 1, 2].map((writer) =>
          commit(root, snapshot.version, [{ txn: { appId: `writer-${writer}`, version: round } }], {
            operation: 'WRITE',
          }),
        ),
      );
      const won = attempts.filter((a) => a.status === 'fulfilled');
      const lost = attempts.filter((a) => a.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(2);
      for (const l of lost) {
        const reason = (l as PromiseRejectedResult).reason as TributaryError;
        expect(reason.code).toBe('DELTA_CONFLICT');
        expect(reason.retry).toBe('transient');
      }
    }
    const final = await loadSnapshot(root);
    expect(final.version).toBe(5);
    const log = await readdir(path.join(root, '_delta_log'));
    expect(log.filter((n) => n.endsWith('.json')).sort()).toEqual([0, 1, 2, 3, 4, 5].map(commitFileName));
  });
});

describe('commit reads the table state it checks against', () => {
  it('is not fooled by a table deleted and re-created at the same path by someone else', async () => {
    const root = path.join(dir, 'recreated');
    const elsewhere = path.join(dir, 'recreated-elsewhere');
    const create = (at: string, configuration: Record<string, string>) =>
      commit(
        at,
        -1,
        [
          { protocol: DEFAULT_PROTOCOL },
          { metaData: newTableMetadata(schema, { configuration }) },
          { add: { path: 'a', partitionValues: {}, size: 1, modificationTime: 0, dataChange: true } },
        ],
        { operation: 'CREATE TABLE' },
      );
    const removeA: Action = { remove: { path: 'a', dataChange: true, deletionTimestamp: 1 } };
    await create(root, { 'delta.appendOnly': 'true' });
    await expect(commit(root, 0, [removeA], { operation: 'DELETE' })).rejects.toMatchObject({
      code: 'DELTA_PROTOCOL',
    });
    // Another process replaces the table; this process's cached state for version 0 is now stale.
    await create(elsewhere, {});
    await rm(root, { recursive: true });
    await mkdir(path.join(root, '_delta_log'), { recursive: true });
    await copyFile(
      path.join(elsewhere, '_delta_log', commitFileName(0)),
      path.join(root, '_delta_log', commitFileName(0)),
    );
    expect(await commit(root, 0, [removeA], { operation: 'DELETE' })).toBe(1);
  });

  it('uses the snapshot the caller passes for the read version', async () => {
    const root = path.join(dir, 'with-snapshot');
    await commit(root, -1, [{ protocol: DEFAULT_PROTOCOL }, { metaData: newTableMetadata(schema) }], {
      operation: 'CREATE TABLE',
    });
    const snapshot = await loadSnapshot(root);
    const b = await writeDataFile(root, 'eu', [7]);
    expect(await commit(root, 0, [{ add: b }], { operation: 'WRITE' }, { snapshot })).toBe(1);
    expect((await loadSnapshot(root)).files).toHaveLength(1);
  });
});

describe('corrupt logs', () => {
  it('names the unparseable commit file', async () => {
    const root = path.join(dir, 'corrupt');
    await commit(root, -1, [{ protocol: DEFAULT_PROTOCOL }, { metaData: newTableMetadata(schema) }], {
      operation: 'CREATE TABLE',
    });
    await writeFile(path.join(root, '_delta_log', commitFileName(1)), '{"add":{"path":"x"');
    await expect(loadSnapshot(root)).rejects.toMatchObject({
      code: 'DELTA_CORRUPT',
      message: expect.stringContaining(commitFileName(1)),
    });
    expect((await loadSnapshot(root, { version: 0 })).version).toBe(0);
  });
});
