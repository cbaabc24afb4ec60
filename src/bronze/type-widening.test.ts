/**
 * Type widening through the bronze merge on real tables: a source column whose type widens makes the merge
 * commit the widened schema with `delta.typeChanges`, turn on `delta.enableTypeWidening` and upgrade the
 * protocol to the `typeWidening` feature, while data files written before keep their narrower physical type
 * and read back widened. The log is compared with the shape of Spark's type-widening table in the corpus.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isTributaryError } from '../core/errors.js';
import { asPosition } from '../core/position.js';
import type { Row, TableSchema } from '../core/table.js';
import { commit } from '../delta/commit.js';
import { setTableProperties } from '../delta/operations/properties.js';
import { scanSql } from '../delta/scan.js';
import { isDeltaTable, loadSnapshot, type Snapshot } from '../delta/snapshot.js';
import { DuckDb } from '../engine/duckdb.js';
import { INITIAL_GATEWAY_STATE, type StagedOp } from '../staging/segment-format.js';
import { StagingVolume } from '../staging/staging-volume.js';
import { planMerge } from './merge-changes.js';

const CORPUS = process.env['DELTA_CONFORMANCE_CORPUS'] ?? '/work/shared/conformance/delta';
const SPARK_TABLE = path.join(CORPUS, 'kernel-rs/data/type-widening');

type Column = readonly [name: string, type: string];

/** Each column and the type the source widens it to. */
const WIDENINGS: readonly (readonly [name: string, from: string, to: string])[] = [
  ['id', 'integer', 'long'],
  ['b', 'byte', 'short'],
  ['s', 'short', 'decimal(12,2)'],
  ['f', 'float', 'double'],
  ['i2d', 'integer', 'double'],
  ['d', 'decimal(10,2)', 'decimal(20,5)'],
  ['l', 'long', 'decimal(25,0)'],
  ['dt', 'date', 'timestamp_ntz'],
];
const NARROW: readonly Column[] = [...WIDENINGS.map(([n, from]) => [n, from] as const), ['name', 'string']];
const WIDE: readonly Column[] = [...WIDENINGS.map(([n, , to]) => [n, to] as const), ['name', 'string']];

function source(columns: readonly Column[], table = 'widen'): TableSchema {
  return {
    id: { schema: 'shop', table },
    columns: columns.map(([name, type]) => ({ name, type, nullable: true, sourceType: type })),
    primaryKey: ['id'],
  };
}

let dir: string;
let db: DuckDb;
let volume: StagingVolume;
let seq = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'bronze-widen-'));
  db = await DuckDb.open();
  volume = new StagingVolume(path.join(dir, 'volume', 'gw'), 'gw');
});

afterAll(async () => {
  await db?.[Symbol.asyncDispose]();
  await rm(dir, { recursive: true, force: true });
});

async function snapshotOrNull(root: string): Promise<Snapshot | null> {
  return (await isDeltaTable(root)) ? loadSnapshot(root) : null;
}

/** Stages the rows as capture would and merges them into the table in one commit. */
async function apply(
  root: string,
  schema: TableSchema,
  rows: readonly [StagedOp, Row][],
  tableProperties?: Record<string, string>,
): Promise<number> {
  seq++;
  const key = `${schema.id.schema}.${schema.id.table}`;
  const manifest = await volume.writeSegment(db, {
    seq,
    origin: 'stream',
    snapshot: null,
    startPosition: null,
    endPosition: asPosition(String(seq).padStart(8, '0')),
    firstCommitTime: null,
    lastCommitTime: null,
    tables: new Map([
      [
        key,
        {
          schema,
          reset: false,
          rows: rows.map(([op, row], ord) => ({
            ord,
            op,
            commitUs: 1_700_000_000_000_000n + BigInt(seq),
            row,
          })),
        },
      ],
    ]),
    state: { ...INITIAL_GATEWAY_STATE, seq },
  });
  const before = await snapshotOrNull(root);
  const plan = await planMerge(db, {
    tableRoot: root,
    snapshot: before,
    source: schema,
    stagedFiles: [path.join(volume.segmentDir(seq), manifest.tables[key]?.file as string)],
    stagedColumns: new Set(schema.columns.map((c) => c.name)),
    overwrite: false,
    tableProperties,
  });
  return commit(
    root,
    before?.version ?? -1,
    [...plan.actions, { txn: { appId: 'test', version: seq, lastUpdated: Date.now() } }],
    { operation: plan.operation, operationParameters: plan.operationParameters, isBlindAppend: false },
    { snapshot: before, checkWriteSupport: true },
  );
}

/** Every row through the scan layer, each value as DuckDB's text of its logical type, ordered by id. */
async function readBack(root: string, version?: number): Promise<Record<string, string | null>[]> {
  const snapshot = await loadSnapshot(root, { version });
  const connection = await db.instance.connect();
  try {
    const sql = await scanSql(snapshot, connection);
    const cols = NARROW.map(([n]) => `CAST("${n}" AS VARCHAR) AS "${n}"`).join(', ');
    const reader = await connection.runAndReadAll(`SELECT ${cols} FROM (${sql}) ORDER BY "id"`);
    return reader.getRowObjectsJson() as Record<string, string | null>[];
  } finally {
    connection.closeSync();
  }
}

/** The physical Parquet type of each column of a data file. */
async function physicalTypes(file: string): Promise<Record<string, string>> {
  const rows = await db.rows(
    `SELECT name, type, logical_type FROM parquet_schema('${file.replaceAll("'", "''")}') WHERE num_children IS NULL`,
  );
  return Object.fromEntries(rows.map((r) => [String(r['name']), String(r['type'])]));
}

function logLines(root: string, version: number): Record<string, unknown>[] {
  const file = path.join(root, '_delta_log', `${String(version).padStart(20, '0')}.json`);
  return readFileSync(file, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const OLD_ROWS: Row[] = [
  {
    id: '2147483647',
    b: '127',
    s: '-32768',
    f: '3.5',
    i2d: '-7',
    d: '12345678.91',
    l: '9223372036854775807',
    dt: '2024-02-29',
    name: 'old max',
  },
  {
    id: '1',
    b: '-128',
    s: '2',
    f: '-0.25',
    i2d: '7',
    d: '-0.01',
    l: '-1',
    dt: '1970-01-01',
    name: 'old one',
  },
];
const NEW_ROWS: Row[] = [
  {
    id: '3000000000',
    b: '30000',
    s: '123456789.12',
    f: '1.234567890123',
    i2d: '1.5',
    d: '123456789012345.12345',
    l: '1234567890123456789012345',
    dt: '2024-03-01 12:34:56.123456',
    name: 'new wide',
  },
];

/** The old rows as they read after widening: the same values, in the wider types. */
const OLD_WIDENED = [
  {
    id: '1',
    b: '-128',
    s: '2.00',
    f: '-0.25',
    i2d: '7.0',
    d: '-0.01000',
    l: '-1',
    dt: '1970-01-01 00:00:00',
    name: 'old one',
  },
  {
    id: '2147483647',
    b: '127',
    s: '-32768.00',
    f: '3.5',
    i2d: '-7.0',
    d: '12345678.91000',
    l: '9223372036854775807',
    dt: '2024-02-29 00:00:00',
    name: 'old max',
  },
];
const NEW_WIDENED = {
  id: '3000000000',
  b: '30000',
  s: '123456789.12',
  f: '1.234567890123',
  i2d: '1.5',
  d: '123456789012345.12345',
  l: '1234567890123456789012345',
  dt: '2024-03-01 12:34:56.123456',
  name: 'new wide',
};

describe.each([
  ['copy-on-write', {}],
  ['deletion vectors', { 'delta.enableDeletionVectors': 'true' }],
] as const)('widening through the merge (%s)', (label, properties) => {
  const root = () => path.join(dir, `t-${label.replaceAll(' ', '-')}`);

  it('commits the widened schema with delta.typeChanges and the typeWidening feature, and reads old files widened', async () => {
    await apply(
      root(),
      source(NARROW),
      OLD_ROWS.map((r) => ['c', r] as [StagedOp, Row]),
      properties,
    );
    const [oldFile] = (await readdir(root())).filter((f) => f.endsWith('.parquet'));
    expect(await physicalTypes(path.join(root(), oldFile as string))).toMatchObject({
      id: 'INT32',
      l: 'INT64',
      f: 'FLOAT',
      dt: 'INT32',
    });

    const version = await apply(
      root(),
      source(WIDE),
      NEW_ROWS.map((r) => ['c', r] as [StagedOp, Row]),
    );
    const snapshot = await loadSnapshot(root());
    expect(snapshot.version).toBe(version);

    // The protocol gains typeWidening (and timestampNtz for the timestamp_ntz column) at reader 3 / writer 7.
    const protocol = logLines(root(), version).find((a) => 'protocol' in a)?.['protocol'];
    const dvFeature = label === 'deletion vectors' ? ['deletionVectors'] : [];
    expect(protocol).toEqual({
      minReaderVersion: 3,
      minWriterVersion: 7,
      readerFeatures: expect.arrayContaining([...dvFeature, 'timestampNtz', 'typeWidening']),
      writerFeatures: expect.arrayContaining([...dvFeature, 'timestampNtz', 'typeWidening']),
    });
    expect(snapshot.metadata.configuration['delta.enableTypeWidening']).toBe('true');
    for (const [name, from, to] of WIDENINGS) {
      const field = snapshot.schema.fields.find((f) => f.name === name);
      expect(field?.type).toBe(to);
      expect(field?.metadata).toEqual({ 'delta.typeChanges': [{ toType: to, fromType: from }] });
    }
    expect(snapshot.schema.fields.find((f) => f.name === 'name')?.metadata).toEqual({});

    // Only new rows: the old file stays as it was, with its narrower physical types.
    expect(snapshot.files.map((a) => a.path)).toContain(oldFile);
    expect(await readBack(root())).toEqual([...OLD_WIDENED, NEW_WIDENED]);
    // Time travel to before the widening still reads the narrow schema.
    expect((await loadSnapshot(root(), { version: version - 1 })).schema.fields[0]?.type).toBe('integer');
  });

  it('updates and deletes rows of the older files after the widening', async () => {
    await apply(root(), source(WIDE), [
      ['u', { ...(OLD_ROWS[0] as Row), id: '2147483647', b: '32767', name: 'old max, updated' }],
      ['d', OLD_ROWS[1] as Row],
    ]);
    const rows = await readBack(root());
    expect(rows).toEqual([{ ...OLD_WIDENED[1], b: '32767', name: 'old max, updated' }, NEW_WIDENED]);
    // The history of type changes is kept by later commits.
    const snapshot = await loadSnapshot(root());
    expect(snapshot.schema.fields[0]?.metadata).toEqual({
      'delta.typeChanges': [{ toType: 'long', fromType: 'integer' }],
    });
  });
});

describe('type changes the bronze table cannot follow', () => {
  it('a narrowing, an incompatible change and a disabled widening are SOURCE_SCHEMA_CHANGED with a full refresh hint', async () => {
    const root = path.join(dir, 'refused');
    const schema = source(
      [
        ['id', 'long'],
        ['qty', 'integer'],
        ['name', 'string'],
      ],
      'refused',
    );
    await apply(root, schema, [['c', { id: '1', qty: '5', name: 'a' }]]);
    const attempt = async (columns: readonly Column[]) => {
      try {
        await apply(root, source(columns, 'refused'), [['c', { id: '2', qty: '6', name: 'b' }]]);
      } catch (error) {
        return error;
      }
      throw new Error('expected the merge to fail');
    };
    for (const [columns, change] of [
      [
        [
          ['id', 'integer'],
          ['qty', 'integer'],
          ['name', 'string'],
        ],
        'id: long -> integer',
      ],
      [
        [
          ['id', 'long'],
          ['qty', 'string'],
          ['name', 'string'],
        ],
        'qty: integer -> string',
      ],
      [
        [
          ['id', 'long'],
          ['qty', 'integer'],
          ['name', 'long'],
        ],
        'name: string -> long',
      ],
    ] as const) {
      const error = await attempt(columns);
      expect(isTributaryError(error) && error.code).toBe('SOURCE_SCHEMA_CHANGED');
      expect((error as Error).message).toContain(change);
      expect(isTributaryError(error) && error.hint).toMatch(/full refresh/);
    }
    // Nothing was committed by the refused merges.
    expect((await loadSnapshot(root)).version).toBe(0);

    // With delta.enableTypeWidening=false on the table, even a supported widening is refused.
    await setTableProperties(root, { 'delta.enableTypeWidening': 'false' });
    const disabled = await attempt([
      ['id', 'long'],
      ['qty', 'long'],
      ['name', 'string'],
    ]);
    expect(isTributaryError(disabled) && disabled.code).toBe('SOURCE_SCHEMA_CHANGED');
    expect((disabled as Error).message).toContain('delta.enableTypeWidening=false');
    // Turning it on lets the next run widen.
    await setTableProperties(root, { 'delta.enableTypeWidening': 'true' });
    await apply(
      root,
      source(
        [
          ['id', 'long'],
          ['qty', 'long'],
          ['name', 'string'],
        ],
        'refused',
      ),
      [['c', { id: '3', qty: '9000000000', name: 'c' }]],
    );
    const snapshot = await loadSnapshot(root);
    expect(snapshot.protocol).toEqual({
      minReaderVersion: 3,
      minWriterVersion: 7,
      readerFeatures: ['typeWidening'],
      writerFeatures: ['appendOnly', 'invariants', 'typeWidening'],
    });
    expect(snapshot.schema.fields.find((f) => f.name === 'qty')?.metadata).toEqual({
      'delta.typeChanges': [{ toType: 'long', fromType: 'integer' }],
    });
  });

  it('widens the same column twice, appending to its history', async () => {
    const root = path.join(dir, 'twice');
    const cols = (qty: string) =>
      source(
        [
          ['id', 'long'],
          ['qty', qty],
        ],
        'twice',
      );
    await apply(root, cols('short'), [['c', { id: '1', qty: '300' }]]);
    await apply(root, cols('integer'), [['c', { id: '2', qty: '70000' }]]);
    await apply(root, cols('decimal(12,2)'), [['c', { id: '3', qty: '1234567890.12' }]]);
    const snapshot = await loadSnapshot(root);
    expect(snapshot.schema.fields.find((f) => f.name === 'qty')).toEqual({
      name: 'qty',
      type: 'decimal(12,2)',
      nullable: true,
      metadata: {
        'delta.typeChanges': [
          { toType: 'integer', fromType: 'short' },
          { toType: 'decimal(12,2)', fromType: 'integer' },
        ],
      },
    });
    const connection = await db.instance.connect();
    try {
      const sql = await scanSql(snapshot, connection);
      const reader = await connection.runAndReadAll(
        `SELECT CAST(id AS VARCHAR) AS id, CAST(qty AS VARCHAR) AS qty FROM (${sql}) ORDER BY id`,
      );
      expect(reader.getRowObjectsJson()).toEqual([
        { id: '1', qty: '300.00' },
        { id: '2', qty: '70000.00' },
        { id: '3', qty: '1234567890.12' },
      ]);
    } finally {
      connection.closeSync();
    }
  });
});

describe.skipIf(!existsSync(SPARK_TABLE))('the written log against Spark’s type-widening table', () => {
  it('has the metaData and protocol shape of the corpus table, with the stable feature', async () => {
    const root = path.join(dir, 't-copy-on-write');
    const ours = await loadSnapshot(root);
    const spark = await loadSnapshot(SPARK_TABLE);
    const oursMeta = logLines(root, 1).find((a) => 'metaData' in a)?.['metaData'] as Record<string, unknown>;
    const sparkMeta = logLines(SPARK_TABLE, 2).find((a) => 'metaData' in a)?.['metaData'] as Record<
      string,
      unknown
    >;
    // Same keys in metaData, and in each schema field.
    expect(Object.keys(oursMeta).sort()).toEqual(Object.keys(sparkMeta).sort());
    const fieldKeys = (s: Snapshot) => [...new Set(s.schema.fields.flatMap((f) => Object.keys(f)))].sort();
    expect(fieldKeys(ours)).toEqual(fieldKeys(spark));
    expect(oursMeta['configuration']).toMatchObject({ 'delta.enableTypeWidening': 'true' });
    expect(sparkMeta['configuration']).toMatchObject({ 'delta.enableTypeWidening': 'true' });

    // Each of our type changes that Spark's table also made is recorded identically, except that the
    // `typeWidening-preview` feature's tableVersion is not part of the stable feature.
    const changes = (s: Snapshot) =>
      s.schema.fields.flatMap(
        (f) => (f.metadata['delta.typeChanges'] as Record<string, unknown>[] | undefined) ?? [],
      );
    const sparkChanges = changes(spark);
    expect(sparkChanges.length).toBeGreaterThan(0);
    for (const c of sparkChanges) expect(Object.keys(c)).toEqual(['toType', 'fromType', 'tableVersion']);
    let shared = 0;
    for (const c of changes(ours)) {
      expect(Object.keys(c)).toEqual(['toType', 'fromType']);
      const twin = sparkChanges.find((s) => s['fromType'] === c['fromType'] && s['toType'] === c['toType']);
      if (twin) {
        shared++;
        const { tableVersion: _, ...rest } = twin;
        expect(c).toEqual(rest);
      }
    }
    // integer → long, float → double, integer → double, decimal(10,2) → decimal(20,5), date → timestamp_ntz.
    expect(shared).toBe(5);

    // The protocol lists the same features, by their stable names, at the same versions.
    const stable = (names: readonly string[] | undefined) =>
      (names ?? []).map((n) => n.replace(/-preview$/, '')).sort();
    expect(ours.protocol.minReaderVersion).toBe(spark.protocol.minReaderVersion);
    expect(ours.protocol.minWriterVersion).toBe(spark.protocol.minWriterVersion);
    expect(stable(ours.protocol.readerFeatures)).toEqual(stable(spark.protocol.readerFeatures));
    expect(stable(ours.protocol.writerFeatures)).toEqual(stable(spark.protocol.writerFeatures));
  });
});
