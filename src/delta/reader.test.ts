/**
 * The reader on hand-built tables: what the corpus does not pin down (scale of deletion vectors, field-id
 * resolution when names differ, error messages, `_last_checkpoint` staleness, in-commit-timestamp time travel,
 * change-feed refusals).
 */
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeletionVectorDescriptor } from './actions.js';
import { tableChanges, tableChangesSql } from './change-data-feed.js';
import { crc32, readDeletionVector } from './deletion-vectors.js';
import { withConnection } from './duckdb.js';
import { lastCheckpointChecksum, readLastCheckpoint } from './last-checkpoint-hint.js';
import { decodeRoaringBitmapArray, encodeRoaringBitmapArray, RowIndexSet } from './roaring.js';
import { partitionValueSql, scanSql } from './scan.js';
import { loadSnapshot } from './snapshot.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tributary-reader-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const v = (n: number) => String(n).padStart(20, '0');

/** Writes `_delta_log/<version>.json` from action objects. */
async function writeCommit(root: string, version: number, actions: object[]): Promise<string> {
  await mkdir(path.join(root, '_delta_log'), { recursive: true });
  const file = path.join(root, '_delta_log', `${v(version)}.json`);
  await writeFile(file, `${actions.map((a) => JSON.stringify(a)).join('\n')}\n`);
  return file;
}

async function copyToParquet(sql: string, file: string, options = ''): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await withConnection((c) => c.run(`COPY (${sql}) TO '${file}' (FORMAT parquet${options})`));
}

function protocol(readerFeatures?: string[], writerFeatures?: string[]) {
  return readerFeatures
    ? {
        protocol: {
          minReaderVersion: 3,
          minWriterVersion: 7,
          readerFeatures,
          writerFeatures: writerFeatures ?? readerFeatures,
        },
      }
    : { protocol: { minReaderVersion: 1, minWriterVersion: 2 } };
}

function metaData(
  fields: object[],
  configuration: Record<string, string> = {},
  partitionColumns: string[] = [],
) {
  return {
    metaData: {
      id: 'test',
      format: { provider: 'parquet', options: {} },
      schemaString: JSON.stringify({ type: 'struct', fields }),
      partitionColumns,
      configuration,
    },
  };
}

const add = (p: string, extra: object = {}) => ({
  add: { path: p, partitionValues: {}, size: 1, modificationTime: 0, dataChange: true, ...extra },
});

async function rows(
  root: string,
  sql = (inner: string) => `SELECT * FROM (${inner}) ORDER BY ALL`,
): Promise<unknown[][]> {
  const snapshot = await loadSnapshot(root);
  return withConnection(async (c) => (await c.runAndReadAll(sql(await scanSql(snapshot, c)))).getRowsJS());
}

/** Frames a bitmap as a DV file (version byte, size, bitmap, CRC) and returns a `p` descriptor. */
async function writeDvFile(file: string, set: RowIndexSet): Promise<DeletionVectorDescriptor> {
  const bitmap = encodeRoaringBitmapArray(set);
  const frame = Buffer.alloc(1 + 4 + bitmap.length + 4);
  frame[0] = 1;
  frame.writeUInt32BE(bitmap.length, 1);
  Buffer.from(bitmap).copy(frame, 5);
  frame.writeUInt32BE(crc32(bitmap), 5 + bitmap.length);
  await writeFile(file, frame);
  return {
    storageType: 'p',
    pathOrInlineDv: `file://${file}`,
    offset: 1,
    sizeInBytes: bitmap.length,
    cardinality: set.cardinality,
  };
}

describe('roaring encoder', () => {
  it('round-trips runs, arrays and bitsets across containers and 64-bit buckets', () => {
    const odd = Array.from({ length: 6000 }, (_, i) => 2 * i + 1); // > 4096 in container 0: a bitset
    const set = RowIndexSet.fromSortedRanges([
      ...odd.map((i) => [i, i + 1] as [number, number]),
      [70_000, 70_003],
      [100_000, 400_000],
      [2 ** 32 + 5, 2 ** 32 + 6],
    ]);
    const back = decodeRoaringBitmapArray(encodeRoaringBitmapArray(set), 'round trip');
    expect(back.cardinality).toBe(set.cardinality);
    expect([...back.ranges()]).toEqual([...set.ranges()]);
  });
});

describe('deletion vectors in scans', () => {
  it('filters millions of deleted rows through a temporary table, never through SQL text', async () => {
    const root = path.join(dir, 'dv-scale');
    await copyToParquet('SELECT range AS id FROM range(3000000)', path.join(root, 'data.parquet'));
    const deleted = RowIndexSet.fromSortedRanges([
      ...Array.from({ length: 100_000 }, (_, i) => [2 * i + 1, 2 * i + 2] as [number, number]),
      [1_000_000, 2_500_000],
    ]);
    const dv = await writeDvFile(path.join(root, 'dv.bin'), deleted);
    await writeCommit(root, 0, [
      protocol(['deletionVectors']),
      metaData([{ name: 'id', type: 'long', nullable: true, metadata: {} }]),
      add('data.parquet', { deletionVector: dv }),
    ]);
    const snapshot = await loadSnapshot(root);
    await withConnection(async (c) => {
      const started = Date.now();
      const sql = await scanSql(snapshot, c);
      expect(sql.length).toBeLessThan(2000);
      const [[count, has1, has2, has1M, has2_5M]] = (
        await c.runAndReadAll(
          `SELECT count(*), bool_or(id = 1), bool_or(id = 2), bool_or(id = 1000000), bool_or(id = 2500000) FROM (${sql})`,
        )
      ).getRowsJS() as [[bigint, boolean, boolean, boolean, boolean]];
      expect(Number(count)).toBe(3_000_000 - deleted.cardinality);
      expect([has1, has2, has1M, has2_5M]).toEqual([false, true, false, true]);
      expect(Date.now() - started).toBeLessThan(20_000);
      // A second scan of the same snapshot on the same connection reuses the temporary table.
      const again = await scanSql(snapshot, c);
      expect(again).toBe(sql);
    });
  });

  it('names the DV file when it is corrupt', async () => {
    const root = path.join(dir, 'dv-corrupt');
    await copyToParquet('SELECT range AS id FROM range(10)', path.join(root, 'data.parquet'));
    const dv = await writeDvFile(path.join(root, 'dv.bin'), RowIndexSet.of([1, 2]));
    await writeCommit(root, 0, [
      protocol(['deletionVectors']),
      metaData([{ name: 'id', type: 'long', nullable: true, metadata: {} }]),
      add('data.parquet', { deletionVector: { ...dv, cardinality: 3 } }),
    ]);
    await expect(rows(root)).rejects.toMatchObject({
      code: 'DELTA_CORRUPT',
      message: expect.stringContaining('dv.bin'),
    });
  });
});

describe('column mapping', () => {
  const field = (name: string, type: unknown, id: number, physical: string) => ({
    name,
    type,
    nullable: true,
    metadata: { 'delta.columnMapping.id': id, 'delta.columnMapping.physicalName': physical },
  });
  const schema = [
    field('id', 'long', 1, 'col-1'),
    field(
      'person',
      {
        type: 'struct',
        fields: [
          field('first name', 'string', 3, 'col-3'),
          field(
            'tags',
            {
              type: 'array',
              elementType: { type: 'struct', fields: [field('t', 'integer', 5, 'col-5')] },
              containsNull: true,
            },
            4,
            'col-4',
          ),
        ],
      },
      2,
      'col-2',
    ),
    field(
      'scores',
      {
        type: 'map',
        keyType: 'string',
        valueType: { type: 'struct', fields: [field('s', 'long', 7, 'col-7')] },
        valueContainsNull: true,
      },
      6,
      'col-6',
    ),
    field('added later', 'string', 8, 'col-8'),
    field('part', 'string', 9, 'col-9'),
  ];
  const physicalRow = `SELECT 1::BIGINT AS "col-1", {'col-3': 'Ada', 'col-4': [{'col-5': 7}]} AS "col-2", MAP {'x': {'col-7': 9::BIGINT}} AS "col-6"`;
  const expected = [
    [1, { 'first name': 'Ada', tags: [{ t: 7 }] }, [{ key: 'x', value: { s: 9 } }], null, 'p1'],
  ];

  it('name mode renames physical columns, nested ones included, and reads partition values by physical name', async () => {
    const root = path.join(dir, 'cm-name');
    await copyToParquet(physicalRow, path.join(root, 'a.parquet'));
    await writeCommit(root, 0, [
      { protocol: { minReaderVersion: 2, minWriterVersion: 5 } },
      metaData(schema, { 'delta.columnMapping.mode': 'name' }, ['part']),
      add('a.parquet', { partitionValues: { 'col-9': 'p1' } }),
    ]);
    const got = await rows(root, (s) => `SELECT id, person, scores, "added later", part FROM (${s})`);
    expect(JSON.parse(JSON.stringify(got, (_, x) => (typeof x === 'bigint' ? Number(x) : x)))).toEqual(
      expected,
    );
    const snapshot = await loadSnapshot(root);
    await withConnection(async (c) => {
      const projected = await scanSql(snapshot, c, { columns: ['part', 'ID'] });
      const reader = await c.runAndReadAll(projected);
      expect(reader.columnNames()).toEqual(['part', 'id']);
      expect(reader.getRowsJS()).toEqual([['p1', 1n]]);
      await expect(scanSql(snapshot, c, { columns: ['nope'] })).rejects.toMatchObject({ code: 'SQL_ERROR' });
    });
  });

  it('id mode matches top-level columns by Parquet field id even when the file names them differently', async () => {
    const root = path.join(dir, 'cm-id');
    const renamed = `SELECT 1::BIGINT AS "old-1", {'col-3': 'Ada', 'col-4': [{'col-5': 7}]} AS "old-2", MAP {'x': {'col-7': 9::BIGINT}} AS "col-6"`;
    await copyToParquet(
      renamed,
      path.join(root, 'a.parquet'),
      `, FIELD_IDS {"old-1": 1, "old-2": 2, "col-6": 6}`,
    );
    await copyToParquet(
      physicalRow,
      path.join(root, 'b.parquet'),
      `, FIELD_IDS {"col-1": 1, "col-2": 2, "col-6": 6}`,
    );
    await writeCommit(root, 0, [
      { protocol: { minReaderVersion: 2, minWriterVersion: 5 } },
      metaData(schema, { 'delta.columnMapping.mode': 'id' }, ['part']),
      add('a.parquet', { partitionValues: { 'col-9': 'p1' } }),
      add('b.parquet', { partitionValues: { 'col-9': 'p1' } }),
    ]);
    const got = await rows(root, (s) => `SELECT id, person, scores, "added later", part FROM (${s})`);
    expect(JSON.parse(JSON.stringify(got, (_, x) => (typeof x === 'bigint' ? Number(x) : x)))).toEqual([
      ...expected,
      ...expected,
    ]);
  });
});

describe('types', () => {
  it('widens old files to the current type and reads zone-less timestamps as UTC whatever the session zone', async () => {
    const root = path.join(dir, 'widening');
    await copyToParquet(
      `SELECT 1::INTEGER AS n, DATE '2024-09-09' AS d, TIMESTAMP '2024-01-01 10:00:00' AS t`,
      path.join(root, 'old.parquet'),
    );
    await copyToParquet(
      `SELECT 9223372036854775807::BIGINT AS n, TIMESTAMP '2024-09-09 12:00:00' AS d, TIMESTAMPTZ '2024-01-01 11:00:00+00' AS t`,
      path.join(root, 'new.parquet'),
    );
    await writeCommit(root, 0, [
      protocol(['typeWidening', 'timestampNtz']),
      metaData([
        { name: 'n', type: 'long', nullable: true, metadata: {} },
        { name: 'd', type: 'timestamp_ntz', nullable: true, metadata: {} },
        { name: 't', type: 'timestamp', nullable: true, metadata: {} },
      ]),
      add('old.parquet'),
      add('new.parquet'),
    ]);
    const snapshot = await loadSnapshot(root);
    const got = await withConnection(async (c) => {
      await c.run(`SET TimeZone = 'Asia/Tokyo'`);
      const sql = await scanSql(snapshot, c);
      return (
        await c.runAndReadAll(`SELECT n::VARCHAR, d::VARCHAR, epoch_ms(t) FROM (${sql}) ORDER BY n`)
      ).getRowsJS();
    });
    expect(got).toEqual([
      ['1', '2024-09-09 00:00:00', 1_704_103_200_000n],
      ['9223372036854775807', '2024-09-09 12:00:00', 1_704_106_800_000n],
    ]);
  });

  it('reads legacy timestamp partition values as UTC (or the zone asked for) and ISO ones by their offset', () => {
    expect(partitionValueSql('2021-09-08 11:11:11', 'timestamp')).toBe(
      `timezone('UTC', CAST('2021-09-08 11:11:11' AS TIMESTAMP))`,
    );
    expect(partitionValueSql('2021-09-08 11:11:11', 'timestamp', 'America/Los_Angeles')).toContain(
      'America/Los_Angeles',
    );
    expect(partitionValueSql('1970-01-01T00:00:00.123456Z', 'timestamp')).toBe(
      `CAST('1970-01-01T00:00:00.123456Z' AS TIMESTAMPTZ)`,
    );
    expect(partitionValueSql('', 'string')).toBe(`CAST('' AS VARCHAR)`);
    expect(partitionValueSql('', 'integer')).toBe('CAST(NULL AS INTEGER)');
  });
});

describe('bad input names the file', () => {
  it('a relative path escaping the table root', async () => {
    const root = path.join(dir, 'escape');
    const commit = await writeCommit(root, 0, [
      protocol(),
      metaData([{ name: 'a', type: 'long', nullable: true, metadata: {} }]),
      add('../../etc/passwd'),
    ]);
    await expect(loadSnapshot(root)).rejects.toMatchObject({
      code: 'DELTA_CORRUPT',
      message: expect.stringMatching(new RegExp(`escapes the table root.*|${commit}`)),
    });
    await expect(loadSnapshot(root)).rejects.toThrow(commit);
  });

  it('an unparseable commit, with its line', async () => {
    const root = path.join(dir, 'corrupt-commit');
    const commit = await writeCommit(root, 0, [protocol(), metaData([])]);
    await writeFile(commit, `${JSON.stringify(protocol())}\n{"add": {"path": "x"\n`);
    await expect(loadSnapshot(root)).rejects.toMatchObject({
      code: 'DELTA_CORRUPT',
      message: expect.stringContaining(`${commit} line 2`),
    });
  });

  it('a truncated Parquet file', async () => {
    const root = path.join(dir, 'truncated');
    await mkdir(root, { recursive: true });
    await writeFile(path.join(root, 'bad.parquet'), 'PAR1 not really');
    await writeCommit(root, 0, [
      protocol(),
      metaData([{ name: 'a', type: 'long', nullable: true, metadata: {} }]),
      add('bad.parquet'),
    ]);
    await expect(rows(root)).rejects.toMatchObject({
      code: 'DELTA_CORRUPT',
      message: expect.stringContaining('bad.parquet'),
    });
  });

  it('an unknown reader feature, by name', async () => {
    const root = path.join(dir, 'unknown-feature');
    await writeCommit(root, 0, [protocol(['deletionVectors', 'quantumFoam']), metaData([])]);
    await expect(loadSnapshot(root)).rejects.toMatchObject({
      code: 'DELTA_PROTOCOL',
      message: expect.stringContaining("'quantumFoam'"),
    });
  });
});

describe('_last_checkpoint', () => {
  it('computes the PROTOCOL.md sample checksum', () => {
    const sample = `{"k0":"'v 0'", "checksum": "adsaskfljadfkjadfkj", "k1":{"k2": 2, "k3": ["v3", [1, 2], {"k4": "v4", "k5": ["v5", "v6", "v7"]}]}}`;
    expect(lastCheckpointChecksum(sample)).toBe('6a92d155a59bf2eecbd4b4ec7fd1f875');
  });

  it('is ignored when corrupt, checksum-mismatched or stale, and replay still uses the newest checkpoint', async () => {
    const root = path.join(dir, 'hint');
    const log = path.join(root, '_delta_log');
    const fields = [{ name: 'id', type: 'long', nullable: true, metadata: {} }];
    await writeCommit(root, 0, [protocol(), metaData(fields)]);
    await writeCommit(root, 1, [{ commitInfo: {} }]);
    // A checkpoint at v1 holding protocol + metadata only.
    await withConnection((c) =>
      c.run(
        `COPY (SELECT {'minReaderVersion': 1, 'minWriterVersion': 2} AS protocol, NULL::STRUCT(id VARCHAR) AS "metaData"
           UNION ALL SELECT NULL, {'id': 'test', 'schemaString': '${JSON.stringify({ type: 'struct', fields })}'})
         TO '${path.join(log, `${v(1)}.checkpoint.parquet`)}' (FORMAT parquet)`,
      ),
    );
    const stale = '{"version":0,"size":2}';
    await writeFile(path.join(log, '_last_checkpoint'), stale);
    expect(await readLastCheckpoint(log)).toMatchObject({ ok: true, hint: { version: 0 } });
    expect((await loadSnapshot(root)).checkpointVersion).toBe(1);
    await writeFile(
      path.join(log, '_last_checkpoint'),
      '{"version":1,"size":2,"checksum":"00000000000000000000000000000000"}',
    );
    expect(await readLastCheckpoint(log)).toMatchObject({
      ok: false,
      reason: expect.stringContaining('checksum mismatch'),
    });
    const withSum = `{"version":1,"size":2,"checksum":"${lastCheckpointChecksum('{"version":1,"size":2}')}"}`;
    await writeFile(path.join(log, '_last_checkpoint'), withSum);
    expect(await readLastCheckpoint(log)).toMatchObject({ ok: true });
    await writeFile(path.join(log, '_last_checkpoint'), '\u0000\u0001garbage');
    expect(await readLastCheckpoint(log)).toMatchObject({ ok: false });
    expect((await loadSnapshot(root)).checkpointVersion).toBe(1);
  });
});

describe('time travel with in-commit timestamps', () => {
  it('uses file mtimes before enablement and ICT from then on, even when mtimes disagree', async () => {
    const root = path.join(dir, 'ict');
    const fields = [{ name: 'id', type: 'long', nullable: true, metadata: {} }];
    const f0 = await writeCommit(root, 0, [{ commitInfo: { timestamp: 1 } }, protocol(), metaData(fields)]);
    const f1 = await writeCommit(root, 1, [{ commitInfo: { timestamp: 2 } }]);
    const ictConfig = {
      'delta.enableInCommitTimestamps': 'true',
      'delta.inCommitTimestampEnablementVersion': '2',
      'delta.inCommitTimestampEnablementTimestamp': '5000000',
    };
    const f2 = await writeCommit(root, 2, [
      { commitInfo: { inCommitTimestamp: 5_000_000 } },
      { protocol: { minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['inCommitTimestamp'] } },
      metaData(fields, ictConfig),
    ]);
    const f3 = await writeCommit(root, 3, [{ commitInfo: { inCommitTimestamp: 6_000_000 } }]);
    const f4 = await writeCommit(root, 4, [{ commitInfo: { inCommitTimestamp: 7_000_000 } }]);
    await utimes(f0, 1000, 1000);
    await utimes(f1, 2000, 2000);
    // After a copy, ICT commits' mtimes are meaningless (here: far in the future, out of order).
    await utimes(f2, 9_000_000, 9_000_000);
    await utimes(f3, 8_000_000, 8_000_000);
    await utimes(f4, 1, 1);
    const at = async (ms: number) => (await loadSnapshot(root, { timestamp: new Date(ms) })).version;
    expect(await at(1_500_000)).toBe(0);
    expect(await at(2_000_000)).toBe(1);
    expect(await at(4_999_999)).toBe(1);
    expect(await at(5_000_000)).toBe(2);
    expect(await at(6_500_000)).toBe(3);
    expect(await at(99_000_000)).toBe(4);
    expect((await loadSnapshot(root, { version: 3 })).timestamp).toBe(6_000_000);
    expect((await loadSnapshot(root, { version: 1 })).timestamp).toBe(2_000_000);
    await expect(at(10)).rejects.toMatchObject({ code: 'DELTA_TABLE_NOT_FOUND' });
  });
});

describe('change data feed', () => {
  it('infers changes from adds, removes and DV updates, and refuses versions without CDF', async () => {
    const root = path.join(dir, 'cdf');
    const fields = [{ name: 'id', type: 'long', nullable: true, metadata: {} }];
    await copyToParquet('SELECT range AS id FROM range(5)', path.join(root, 'a.parquet'));
    await writeCommit(root, 0, [protocol(['deletionVectors']), metaData(fields)]);
    await writeCommit(root, 1, [metaData(fields, { 'delta.enableChangeDataFeed': 'true' })]);
    await writeCommit(root, 2, [add('a.parquet')]);
    const dv1 = await writeDvFile(path.join(root, 'dv1.bin'), RowIndexSet.of([1]));
    await writeCommit(root, 3, [
      { remove: { path: 'a.parquet', dataChange: true } },
      add('a.parquet', { deletionVector: dv1 }),
    ]);
    const dv2 = await writeDvFile(path.join(root, 'dv2.bin'), RowIndexSet.of([1, 3]));
    await writeCommit(root, 4, [
      { remove: { path: 'a.parquet', dataChange: true, deletionVector: dv1 } },
      add('a.parquet', { deletionVector: dv2 }),
    ]);
    await writeCommit(root, 5, [{ remove: { path: 'a.parquet', dataChange: true, deletionVector: dv2 } }]);
    const changes: string[] = [];
    for await (const row of tableChanges(root, 1)) {
      changes.push(`${row['_commit_version']}:${row['_change_type']}:${row['id']}`);
    }
    expect(changes.sort()).toEqual(
      [
        '2:insert:0',
        '2:insert:1',
        '2:insert:2',
        '2:insert:3',
        '2:insert:4',
        '3:delete:1',
        '4:delete:3',
        '5:delete:0',
        '5:delete:2',
        '5:delete:4',
      ].sort(),
    );
    await withConnection(async (c) => {
      await expect(tableChangesSql(root, c, { startVersion: 0 })).rejects.toMatchObject({
        code: 'DELTA_PROTOCOL',
        message: expect.stringContaining('version 0'),
      });
      await expect(tableChangesSql(root, c, { startVersion: 4, endVersion: 9 })).rejects.toMatchObject({
        code: 'DELTA_TABLE_NOT_FOUND',
      });
    });
    // The DVs themselves are intact; only the diff was emitted.
    expect((await readDeletionVector(root, dv2)).toArray()).toEqual([1, 3]);
  });
});
