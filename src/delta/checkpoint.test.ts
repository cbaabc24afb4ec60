/**
 * Checkpoint writing, `_last_checkpoint` (checksum), log cleanup and in-commit timestamps, all through the
 * public writer API, read back with the reader (`loadSnapshot`) and with DuckDB directly.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Action, AddFile, RemoveFile } from './actions.js';
import { writeCheckpoint } from './checkpoint-writer.js';
import { commit, commitFileName, newDataFileName, newTableActions } from './commit.js';
import { sqlString, withConnection } from './duckdb.js';
import { lastCheckpointText } from './last-checkpoint.js';
import { lastCheckpointChecksum, readLastCheckpoint } from './last-checkpoint-hint.js';
import { cleanupExpiredLogs } from './log-cleanup.js';
import { checkpointFileName } from './log-files.js';
import type { StructType } from './schema.js';
import { loadSnapshot, type Snapshot } from './snapshot.js';
import { formatStats } from './stats.js';
import { protocolFor } from './table-features.js';
import { parseInterval } from './table-properties.js';

const CORPUS = '/work/shared/conformance/delta';
const DAY = 86_400_000;

const schema: StructType = {
  type: 'struct',
  fields: [
    { name: 'id', type: 'long', nullable: false, metadata: {} },
    { name: 'region', type: 'string', nullable: true, metadata: {} },
  ],
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tributary-checkpoint-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Writes a real Parquet file of `ids` under `root/region=<region>/` and returns its add action. */
async function dataFile(root: string, region: string | null, ids: number[]): Promise<AddFile> {
  const rel = `region=${region ?? '__HIVE_DEFAULT_PARTITION__'}/${newDataFileName()}`;
  const abs = path.join(root, rel);
  await mkdir(path.dirname(abs), { recursive: true });
  await withConnection((c) =>
    c.run(`COPY (SELECT unnest([${ids.join(',')}])::BIGINT AS id) TO ${sqlString(abs)} (FORMAT parquet)`),
  );
  return {
    path: encodeURI(rel),
    partitionValues: { region },
    size: (await stat(abs)).size,
    modificationTime: Date.now(),
    dataChange: true,
    stats: formatStats({
      numRecords: ids.length,
      minValues: { id: Math.min(...ids) },
      maxValues: { id: Math.max(...ids) },
      nullCount: { id: 0 },
    }),
  };
}

function removeOf(add: AddFile, deletionTimestamp: number): RemoveFile {
  return {
    path: add.path,
    deletionTimestamp,
    dataChange: true,
    extendedFileMetadata: true,
    partitionValues: add.partitionValues,
    size: add.size,
  };
}

/** ids of the live rows (partition values are not needed to identify rows here). */
async function ids(snapshot: Snapshot): Promise<number[]> {
  if (snapshot.files.length === 0) return [];
  const list = snapshot.files.map((f) => sqlString(snapshot.dataFilePath(f))).join(', ');
  return withConnection(async (c) => {
    const r = await c.runAndReadAll(`SELECT id FROM read_parquet([${list}]) ORDER BY id`);
    return r.getRowsJS().map((row) => Number(row[0]));
  });
}

/** Everything replay produces, in a comparable shape. */
function stateOf(s: Snapshot, appIds: string[]) {
  return {
    version: s.version,
    protocol: s.protocol,
    metadata: s.metadata,
    domains: [...s.domainMetadata.values()],
    txns: appIds.map((a) => s.txnVersion(a)),
    files: [...s.files]
      .map((f) => ({
        path: f.path,
        partitionValues: f.partitionValues,
        size: f.size,
        modificationTime: f.modificationTime,
        stats: f.stats,
      }))
      .sort((a, b) => a.path.localeCompare(b.path)),
  };
}

const quiet = { warn: () => undefined };

describe('_last_checkpoint checksum', () => {
  it('reproduces the protocol example', () => {
    const example =
      '{"k0":"\'v 0\'", "checksum": "adsaskfljadfkjadfkj", "k1":{"k2": 2, "k3": ["v3", [1, 2], {"k4": "v4", "k5": ["v5", "v6", "v7"]}]}}';
    expect(lastCheckpointChecksum(example)).toBe('6a92d155a59bf2eecbd4b4ec7fd1f875');
  });

  it('matches a Spark-written v2 _last_checkpoint (nested arrays, escaped JSON strings)', () => {
    const sparkWritten =
      '{"version":1,"size":8,"sizeInBytes":10038,"numOfAddFiles":4,"v2Checkpoint":{"path":"00000000000000000001.checkpoint.6c750e24-bbc4-4618-8feb-7cd7d5b9e084.json","sizeInBytes":686,"modificationTime":1739313202084,"nonFileActions":[{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["v2Checkpoint"],"writerFeatures":["v2Checkpoint","appendOnly","invariants"]}},{"metaData":{"id":"29ef2045-59c5-4cf7-9d5d-2ba47e971d32","format":{"provider":"parquet","options":{}},"schemaString":"{\\"type\\":\\"struct\\",\\"fields\\":[{\\"name\\":\\"id\\",\\"type\\":\\"long\\",\\"nullable\\":true,\\"metadata\\":{}}]}","partitionColumns":[],"configuration":{"delta.checkpointPolicy":"v2"},"createdTime":1739313200623}},{"checkpointMetadata":{"version":1}}],"sidecarFiles":[{"path":"00000000000000000001.checkpoint.0000000001.0000000001.c1bacf45-f3a9-4846-bd44-87cdacd4620f.parquet","sizeInBytes":9352,"modificationTime":1739313202057}]},"checksum":"0d6e6e7881f3da4b78f96cc567056794"}';
    expect(lastCheckpointChecksum(sparkWritten)).toBe('0d6e6e7881f3da4b78f96cc567056794');
  });

  it.skipIf(!existsSync(CORPUS))(
    'matches every checksummed _last_checkpoint in the conformance corpus',
    () => {
      const files: string[] = [];
      const walk = (d: string) => {
        for (const entry of readdirSync(d, { withFileTypes: true })) {
          const p = path.join(d, entry.name);
          if (entry.isDirectory()) walk(p);
          else if (entry.name === '_last_checkpoint') files.push(p);
        }
      };
      walk(CORPUS);
      let checked = 0;
      for (const file of files) {
        const text = readFileSync(file, 'utf8');
        let stored: unknown;
        try {
          stored = (JSON.parse(text) as { checksum?: unknown }).checksum;
        } catch {
          continue; // the corpus has deliberately corrupt ones
        }
        if (typeof stored !== 'string') continue;
        expect(lastCheckpointChecksum(text), file).toBe(stored);
        checked++;
      }
      expect(checked).toBeGreaterThanOrEqual(50);
    },
  );

  it('is what the writer puts in the _last_checkpoint it writes', () => {
    const text = lastCheckpointText({ version: 20, size: 12, sizeInBytes: 4321, numOfAddFiles: 7 });
    const parsed = JSON.parse(text) as Record<string, unknown>;
    expect(Object.keys(parsed)).toEqual(['version', 'size', 'sizeInBytes', 'numOfAddFiles', 'checksum']);
    expect(parsed['checksum']).toBe(lastCheckpointChecksum(text));
  });
});

describe('table property durations', () => {
  it('parses the protocol interval strings like Spark', () => {
    expect(parseInterval('interval 30 days')).toBe(30 * DAY);
    expect(parseInterval('interval 1 week')).toBe(7 * DAY);
    expect(parseInterval('INTERVAL 2 hours 30 minutes')).toBe(2.5 * 3_600_000);
    expect(parseInterval('7 days')).toBe(7 * DAY);
    expect(parseInterval('interval 1 second 500 milliseconds')).toBe(1500);
    for (const bad of ['interval 1 month', 'interval', 'interval x days', '30', 'interval 3 fortnights']) {
      expect(() => parseInterval(bad, 'delta.logRetentionDuration'), bad).toThrow(
        expect.objectContaining({
          code: 'DELTA_CORRUPT',
          message: expect.stringContaining('delta.logRetentionDuration'),
        }),
      );
    }
  });
});

describe('checkpoint writing', () => {
  it('checkpoints at version 10 by default; replay from it alone equals the JSON replay', async () => {
    const root = path.join(dir, 'orders');
    const now = Date.now();
    const [protocol, metaData] = newTableActions(schema, { partitionColumns: ['region'] });
    const files: AddFile[] = [];
    files.push(await dataFile(root, 'eu', [1, 2]));
    await commit(root, -1, [protocol, metaData, { add: files[0] as AddFile }], { operation: 'CREATE TABLE' });
    const expired = await dataFile(root, 'us', [3]);
    const kept = await dataFile(root, null, [4]);
    const actions: Action[][] = [
      [{ add: expired }, { txn: { appId: 'cdc', version: 1, lastUpdated: now } }],
      [{ add: kept }],
      [{ remove: removeOf(expired, now - 8 * DAY) }, { txn: { appId: 'cdc', version: 2, lastUpdated: now } }],
      [{ remove: removeOf(kept, now - DAY) }, { txn: { appId: 'other', version: 7 } }],
    ];
    for (let i = 0; i < 6; i++) {
      const add = await dataFile(root, i % 2 === 0 ? 'eu' : 'us', [100 + i]);
      files.push(add);
      actions.push([{ add }]);
    }
    for (const [i, a] of actions.entries()) {
      await commit(root, i, a, { operation: 'WRITE' }, { log: quiet });
      // Nothing before the interval.
      if (i + 1 < 10)
        expect(existsSync(path.join(root, '_delta_log', checkpointFileName(i + 1)))).toBe(false);
    }
    const log = path.join(root, '_delta_log');
    expect(existsSync(path.join(log, checkpointFileName(10)))).toBe(true);
    const extra = await dataFile(root, 'eu', [999]);
    await commit(root, 10, [{ add: extra }, { txn: { appId: 'cdc', version: 3 } }], { operation: 'WRITE' });

    const before11 = await loadSnapshot(root);
    const before10 = await loadSnapshot(root, { version: 10 });
    const ids11 = await ids(before11);
    expect(ids11).toEqual([1, 2, 100, 101, 102, 103, 104, 105, 999]);

    const hint = await readLastCheckpoint(log);
    const last = hint.ok ? hint.hint : undefined;
    expect(last).toMatchObject({
      version: 10,
      numOfAddFiles: 7,
      sizeInBytes: (await stat(path.join(log, checkpointFileName(10)))).size,
    });
    // protocol + metaData + 2 txns + 7 adds + 1 unexpired tombstone.
    expect(last?.size).toBe(12);
    const raw = await readFile(path.join(log, '_last_checkpoint'), 'utf8');
    expect(JSON.parse(raw).checksum).toBe(lastCheckpointChecksum(raw));

    // Only the checkpoint and commit 11 remain: the reader must get the same state from them.
    for (let v = 0; v <= 10; v++) await unlink(path.join(log, commitFileName(v)));
    const after11 = await loadSnapshot(root);
    const after10 = await loadSnapshot(root, { version: 10 });
    expect(stateOf(after11, ['cdc', 'other'])).toEqual(stateOf(before11, ['cdc', 'other']));
    expect(stateOf(after10, ['cdc', 'other'])).toEqual(stateOf(before10, ['cdc', 'other']));
    expect(await ids(after11)).toEqual(ids11);
  });

  it('writes Spark-shaped structs and maps that DuckDB reads back', async () => {
    const root = path.join(dir, 'orders');
    const file = path.join(root, '_delta_log', checkpointFileName(10));
    await withConnection(async (c) => {
      const types = await c.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet(${sqlString(file)})`);
      const columns = Object.fromEntries(types.getRowsJS().map((r) => [String(r[0]), String(r[1])]));
      expect(Object.keys(columns)).toEqual([
        'txn',
        'add',
        'remove',
        'metaData',
        'protocol',
        'domainMetadata',
      ]);
      expect(columns['add']).toContain('partitionValues MAP(VARCHAR, VARCHAR)');
      expect(columns['add']).toContain('stats VARCHAR');
      expect(columns['add']).toContain('deletionVector STRUCT(storageType VARCHAR');
      expect(columns['metaData']).toContain('partitionColumns VARCHAR[]');
      expect(columns['protocol']).toContain('minReaderVersion INTEGER');

      const adds = await c.runAndReadAll(
        `SELECT add.path, add.partitionValues['region'], add.dataChange, json_extract(add.stats, '$.numRecords')::INT
           FROM read_parquet(${sqlString(file)}) WHERE add IS NOT NULL ORDER BY add.path`,
      );
      const addRows = adds.getRowsJS();
      expect(addRows).toHaveLength(7);
      expect(addRows.every((r) => r[2] === false && typeof r[3] === 'number')).toBe(true);
      expect(new Set(addRows.map((r) => r[1]))).toEqual(new Set(['eu', 'us']));

      const rest = await c.runAndReadAll(
        `SELECT to_json(remove), to_json(txn), protocol.minWriterVersion, metaData.partitionColumns, metaData.id
           FROM read_parquet(${sqlString(file)}) WHERE add IS NULL`,
      );
      const rows = rest.getRowsJS();
      const removes = rows.filter((r) => r[0] !== null).map((r) => JSON.parse(String(r[0])));
      expect(removes).toHaveLength(1);
      expect(removes[0]).toMatchObject({
        dataChange: false,
        extendedFileMetadata: true,
        partitionValues: { region: null },
      });
      const txns = rows.filter((r) => r[1] !== null).map((r) => JSON.parse(String(r[1])).appId);
      expect(txns.sort()).toEqual(['cdc', 'other']);
      expect(rows.find((r) => r[2] !== null)?.[2]).toBe(2);
    });
  });

  it('keeps domain metadata, drops expired txns, and adds checkpointMetadata on v2Checkpoint tables', async () => {
    const root = path.join(dir, 'domains');
    const configuration = {
      'delta.checkpointInterval': '2',
      'delta.checkpointPolicy': 'v2',
      'delta.setTransactionRetentionDuration': 'interval 1 day',
    };
    const [, metaData] = newTableActions(schema, { configuration });
    const protocol = protocolFor(configuration, schema, {
      current: { minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['domainMetadata'] },
    });
    expect(protocol).toEqual({
      minReaderVersion: 3,
      minWriterVersion: 7,
      readerFeatures: ['v2Checkpoint'],
      writerFeatures: ['domainMetadata', 'v2Checkpoint'],
    });
    await commit(root, -1, [{ protocol }, metaData], { operation: 'CREATE TABLE' });
    await commit(
      root,
      0,
      [
        { domainMetadata: { domain: 'app.x', configuration: '{"a":1}', removed: false } },
        { domainMetadata: { domain: 'app.gone', configuration: '{}', removed: false } },
        { txn: { appId: 'stale', version: 1, lastUpdated: Date.now() - 2 * DAY } },
        { txn: { appId: 'fresh', version: 1, lastUpdated: Date.now() } },
      ],
      { operation: 'WRITE' },
    );
    await commit(root, 1, [{ domainMetadata: { domain: 'app.gone', configuration: '{}', removed: true } }], {
      operation: 'WRITE',
    });
    const file = path.join(root, '_delta_log', checkpointFileName(2));
    const rows = await withConnection(async (c) => {
      const r = await c.runAndReadAll(
        `SELECT to_json(domainMetadata), txn.appId, to_json(checkpointMetadata) FROM read_parquet(${sqlString(file)})`,
      );
      return r.getRowsJS();
    });
    expect(rows.filter((r) => r[0] !== null).map((r) => JSON.parse(String(r[0])))).toEqual([
      { domain: 'app.x', configuration: '{"a":1}', removed: false },
    ]);
    expect(rows.filter((r) => r[1] !== null).map((r) => r[1])).toEqual(['fresh']);
    expect(rows.filter((r) => r[2] !== null).map((r) => JSON.parse(String(r[2])))).toEqual([
      { version: 2, tags: null },
    ]);
    for (let v = 0; v <= 2; v++) await unlink(path.join(root, '_delta_log', commitFileName(v)));
    const snapshot = await loadSnapshot(root);
    expect([...snapshot.domainMetadata.keys()]).toEqual(['app.x']);
    expect(snapshot.txnVersion('fresh')).toBe(1);
  });

  it('never fails the commit when the checkpoint fails; it reports and the table stays readable', async () => {
    const root = path.join(dir, 'broken-retention');
    const [protocol, metaData] = newTableActions(schema, {
      configuration: { 'delta.checkpointInterval': '1', 'delta.deletedFileRetentionDuration': 'banana' },
    });
    const warnings: string[] = [];
    await commit(root, -1, [protocol, metaData], { operation: 'CREATE TABLE' });
    const version = await commit(
      root,
      0,
      [{ add: await dataFile(root, 'eu', [1]) }],
      { operation: 'WRITE' },
      {
        log: { warn: (m) => warnings.push(m) },
      },
    );
    expect(version).toBe(1);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/version 1 failed \(the commit is durable\).*deletedFileRetentionDuration/);
    const names = await readdir(path.join(root, '_delta_log'));
    expect(names.filter((n) => n.includes('checkpoint') || n.startsWith('.'))).toEqual([]);
    expect((await loadSnapshot(root)).files).toHaveLength(1);
  });

  it('writes checkpoints on demand for any committed version', async () => {
    const root = path.join(dir, 'orders');
    const result = await writeCheckpoint(root, 11);
    expect(result).toMatchObject({ version: 11, numOfAddFiles: 8 });
    expect(await readLastCheckpoint(path.join(root, '_delta_log'))).toMatchObject({
      ok: true,
      hint: { version: 11 },
    });
    // An older checkpoint never moves the pointer back.
    await writeCheckpoint(root, 10);
    expect(await readLastCheckpoint(path.join(root, '_delta_log'))).toMatchObject({
      ok: true,
      hint: { version: 11 },
    });
  });
});

describe('log cleanup', () => {
  /** A table with commits 0..7 and checkpoints at 2, 4 and 6. */
  async function table(name: string): Promise<string> {
    const root = path.join(dir, name);
    const [protocol, metaData] = newTableActions(schema, {
      configuration: { 'delta.checkpointInterval': '2' },
    });
    await commit(root, -1, [protocol, metaData], { operation: 'CREATE TABLE' });
    for (let v = 1; v <= 7; v++) {
      await commit(root, v - 1, [{ add: await dataFile(root, 'eu', [v]) }], { operation: 'WRITE' });
    }
    return root;
  }
  async function age(root: string, names: string[], days: number): Promise<void> {
    const t = (Date.now() - days * DAY) / 1000;
    for (const n of names) await utimes(path.join(root, '_delta_log', n), t, t);
  }
  const commits = (from: number, to: number) =>
    Array.from({ length: to - from + 1 }, (_, i) => commitFileName(from + i));

  it('deletes everything before the newest checkpoint older than the retention, and nothing after', async () => {
    const root = await table('cleanup');
    await writeFile(path.join(root, '_delta_log', '.00000000000000000003.json.dead.tmp'), 'x');
    await age(
      root,
      [...commits(0, 4), checkpointFileName(2), checkpointFileName(4), '.00000000000000000003.json.dead.tmp'],
      40,
    );
    const result = await cleanupExpiredLogs(root, { configuration: {} });
    expect(result.keptFrom).toBe(4);
    expect(result.deleted.sort()).toEqual(
      [...commits(0, 3), checkpointFileName(2), '.00000000000000000003.json.dead.tmp'].sort(),
    );
    const left = (await readdir(path.join(root, '_delta_log'))).sort();
    expect(left).toEqual(
      [...commits(4, 7), checkpointFileName(4), checkpointFileName(6), '_last_checkpoint'].sort(),
    );
    expect(await ids(await loadSnapshot(root))).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(await ids(await loadSnapshot(root, { version: 4 }))).toEqual([1, 2, 3, 4]);
    await expect(loadSnapshot(root, { version: 3 })).rejects.toMatchObject({ code: 'DELTA_CORRUPT' });
  });

  it('deletes nothing while no checkpoint is older than the retention', async () => {
    const root = await table('cleanup-young');
    await age(root, commits(0, 1), 40);
    expect(await cleanupExpiredLogs(root, { configuration: {} })).toEqual({
      keptFrom: undefined,
      deleted: [],
    });
    // A shorter retention makes the same files expire.
    await age(root, [...commits(2, 3), checkpointFileName(2)], 2);
    const result = await cleanupExpiredLogs(root, {
      configuration: { 'delta.logRetentionDuration': 'interval 1 day' },
    });
    expect(result.keptFrom).toBe(2);
    expect(result.deleted).toEqual(commits(0, 1));
  });

  it('treats commit times as monotonic, so an old mtime after a young one does not expire', async () => {
    const root = await table('cleanup-skew');
    await age(root, [...commits(0, 2), checkpointFileName(2)], 40);
    // Version 3 is young; 4..6 have old mtimes (say, a copied log), but they cannot be older than 3.
    await age(root, [...commits(4, 6), checkpointFileName(4), checkpointFileName(6)], 40);
    const result = await cleanupExpiredLogs(root, { configuration: {} });
    expect(result.keptFrom).toBe(2);
    expect(result.deleted).toEqual(commits(0, 1));
  });

  it('runs after a checkpoint commit, honouring delta.enableExpiredLogCleanup', async () => {
    const root = await table('cleanup-auto');
    await age(
      root,
      [...commits(0, 6), checkpointFileName(2), checkpointFileName(4), checkpointFileName(6)],
      40,
    );
    await commit(root, 7, [{ add: await dataFile(root, 'eu', [8]) }], { operation: 'WRITE' });
    const left = await readdir(path.join(root, '_delta_log'));
    expect(left.filter((n) => n.endsWith('.json')).sort()).toEqual(commits(6, 8));
    expect(await ids(await loadSnapshot(root))).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);

    const off = await table('cleanup-off');
    const snapshot = await loadSnapshot(off);
    const metaData = {
      ...snapshot.metadata,
      configuration: { ...snapshot.metadata.configuration, 'delta.enableExpiredLogCleanup': 'false' },
    };
    await age(
      off,
      [...commits(0, 6), checkpointFileName(2), checkpointFileName(4), checkpointFileName(6)],
      40,
    );
    await commit(off, 7, [{ metaData }], { operation: 'SET TBLPROPERTIES' });
    expect((await readdir(path.join(off, '_delta_log'))).filter((n) => n.endsWith('.json'))).toHaveLength(9);
  });
});

describe('in-commit timestamps', () => {
  const firstLine = async (root: string, v: number) =>
    JSON.parse(
      (await readFile(path.join(root, '_delta_log', commitFileName(v)), 'utf8')).split('\n')[0] as string,
    );

  it('writes a strictly increasing inCommitTimestamp first, even when the clock goes backwards', async () => {
    const root = path.join(dir, 'ict');
    const actions = newTableActions(schema, { configuration: { 'delta.enableInCommitTimestamps': 'true' } });
    expect(actions[0].protocol).toEqual({
      minReaderVersion: 1,
      minWriterVersion: 7,
      writerFeatures: ['inCommitTimestamp'],
    });
    const clock = [5_000, 4_000, 4_000, 9_000];
    await commit(root, -1, actions, { operation: 'CREATE TABLE' }, { now: () => clock[0] as number });
    for (let v = 1; v < clock.length; v++) {
      await commit(
        root,
        v - 1,
        [{ add: await dataFile(root, 'eu', [v]) }],
        { operation: 'WRITE' },
        {
          now: () => clock[v] as number,
        },
      );
    }
    const icts: number[] = [];
    for (let v = 0; v < clock.length; v++) {
      const info = (await firstLine(root, v)).commitInfo;
      icts.push(info.inCommitTimestamp);
      expect(info.timestamp).toBe(info.inCommitTimestamp);
    }
    expect(icts).toEqual([5_000, 5_001, 5_002, 9_000]);
    expect((await loadSnapshot(root, { version: 2 })).timestamp).toBe(5_002);
    expect((await loadSnapshot(root, { timestamp: new Date(5_001) })).version).toBe(1);
  });

  it('records the enablement version and timestamp when turned on for an existing table', async () => {
    const root = path.join(dir, 'ict-later');
    await commit(root, -1, newTableActions(schema), { operation: 'CREATE TABLE' });
    const before = await loadSnapshot(root);
    const configuration = { ...before.metadata.configuration, 'delta.enableInCommitTimestamps': 'true' };
    const protocol = protocolFor(configuration, before.schema, { current: before.protocol });
    expect(protocol).toEqual({
      minReaderVersion: 1,
      minWriterVersion: 7,
      writerFeatures: ['appendOnly', 'invariants', 'inCommitTimestamp'],
    });
    await commit(root, 0, [{ protocol }, { metaData: { ...before.metadata, configuration } }], {
      operation: 'SET TBLPROPERTIES',
    });
    const info = (await firstLine(root, 1)).commitInfo;
    expect(info.inCommitTimestamp).toBeGreaterThan(before.timestamp);
    const after = await loadSnapshot(root);
    expect(after.metadata.configuration).toMatchObject({
      'delta.enableInCommitTimestamps': 'true',
      'delta.inCommitTimestampEnablementVersion': '1',
      'delta.inCommitTimestampEnablementTimestamp': String(info.inCommitTimestamp),
    });
  });
});
