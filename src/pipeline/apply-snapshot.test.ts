/**
 * applyStaged on a table's snapshot: the snapshot's segments are one WRITE commit of their own, written a group
 * of segments per data file (load-snapshot.ts), with a column a DDL added part way NULL in the earlier rows;
 * the stream changes after it are a MERGE of their own. A configured primary_keys, which the source does not
 * guarantee unique, goes through the merge and keeps one row per key.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deltaRows } from '../../test/harness/delta-rows.js';
import { SNAPSHOT_ROW_GROUP_ROWS } from '../bronze/load-snapshot.js';
import { asPosition } from '../core/position.js';
import type { ColumnSchema, Row, TableSchema } from '../core/table.js';
import type { RawAction } from '../delta/actions.js';
import { readCommitActions } from '../delta/log-files.js';
import { loadSnapshot } from '../delta/snapshot.js';
import { DuckDb } from '../engine/duckdb.js';
import { INITIAL_GATEWAY_STATE, type StagedOp } from '../staging/segment-format.js';
import { StagingVolume } from '../staging/staging-volume.js';
import { type ApplyTarget, applyStaged } from './apply.js';
import { silentLogger } from './logger.js';

const BEFORE_DDL: TableSchema = {
  id: { schema: 'shop', table: 'items' },
  columns: [
    { name: 'id', type: 'integer', nullable: false, sourceType: 'int' },
    { name: 'name', type: 'string', nullable: true, sourceType: 'varchar(20)' },
  ],
  primaryKey: ['id'],
};
const AFTER_DDL: TableSchema = {
  ...BEFORE_DDL,
  columns: [...BEFORE_DDL.columns, { name: 'note', type: 'string', nullable: true, sourceType: 'text' }],
};
const KEY = 'shop.items';
const T0 = Date.parse('2024-06-01T12:00:00Z');

let dir: string;
let db: DuckDb;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'apply-snapshot-'));
  db = await DuckDb.open();
});

afterAll(async () => {
  await db?.[Symbol.asyncDispose]();
  await rm(dir, { recursive: true, force: true });
});

interface Draft {
  readonly schema: TableSchema;
  readonly snapshot?: { epoch: number; last: boolean };
  readonly reset?: boolean;
  readonly rows: ReadonlyArray<[StagedOp, Row]>;
}

async function stage(name: string, drafts: readonly Draft[], firstSeq = 1): Promise<StagingVolume> {
  const volume = new StagingVolume(path.join(dir, name, 'volume'), 'gw');
  for (const [i, d] of drafts.entries()) {
    const seq = firstSeq + i;
    await volume.writeSegment(db, {
      seq,
      origin: d.snapshot ? 'snapshot' : 'stream',
      snapshot: d.snapshot ?? null,
      startPosition: null,
      endPosition: asPosition(String(seq).padStart(8, '0')),
      firstCommitTime: new Date(T0),
      lastCommitTime: new Date(T0 + seq * 1000),
      tables: new Map([
        [
          KEY,
          {
            schema: d.schema,
            reset: d.reset === true,
            ...(d.reset ? { resetCommitTime: new Date(T0) } : {}),
            rows: d.rows.map(([op, row], ord) => ({
              ord,
              op,
              commitUs: BigInt(T0 + seq * 1000) * 1000n,
              row,
            })),
          },
        ],
      ]),
      state: { ...INITIAL_GATEWAY_STATE, seq },
    });
  }
  return volume;
}

async function apply(volume: StagingVolume, target: ApplyTarget, rowsPerFile: number): Promise<void> {
  await applyStaged({
    pipeline: 'p',
    db,
    volume,
    targets: [target],
    maxSegmentsPerCommit: 64,
    snapshotRowsPerFile: rowsPerFile,
    signal: new AbortController().signal,
    log: silentLogger,
  });
}

function read(root: string, version?: number): Promise<string[]> {
  return deltaRows(db, root, {
    select: '* EXCLUDE (_commit_timestamp)',
    ...(version === undefined ? {} : { version }),
  });
}

function operationOf(actions: readonly RawAction[]): unknown {
  return (actions.find((a) => a.commitInfo)?.commitInfo as { operation?: unknown } | undefined)?.operation;
}

/** A snapshot of the table in one segment, replacing what was there. */
function wholeSnapshot(schema: TableSchema, epoch: number, ...rows: Row[]): Draft {
  return { schema, snapshot: { epoch, last: true }, reset: true, rows: rows.map((row) => ['r', row]) };
}

const snapshotRow = (id: number, note?: string): [StagedOp, Row] => [
  'r',
  { id: String(id), name: `n${id}`, ...(note === undefined ? {} : { note }) },
];

describe('applyStaged on a snapshot', () => {
  it('commits the snapshot alone, a group of segments per data file, and merges the changes after it', async () => {
    const volume = await stage('load', [
      {
        schema: BEFORE_DDL,
        snapshot: { epoch: 1, last: false },
        reset: true,
        rows: [1, 2].map((i) => snapshotRow(i)),
      },
      { schema: BEFORE_DDL, snapshot: { epoch: 1, last: false }, rows: [3, 4].map((i) => snapshotRow(i)) },
      // ALTER TABLE ... ADD note during the snapshot: the last chunk has the column.
      {
        schema: AFTER_DDL,
        snapshot: { epoch: 1, last: true },
        rows: [5, 6].map((i) => snapshotRow(i, `x${i}`)),
      },
      {
        schema: AFTER_DDL,
        rows: [
          ['u', { id: '2', name: 'changed', note: 'y' }],
          ['d', { id: '5' }],
        ],
      },
    ]);
    const root = path.join(dir, 'load', 'items');
    await apply(volume, { sourceKey: KEY, destination: 'lake.bronze.items', tableRoot: root }, 3);

    const created = await readCommitActions(root, 0);
    expect(operationOf(created)).toBe('WRITE');
    const adds = created.flatMap((a) => (a.add ? [a.add as { stats?: string }] : []));
    // 2 + 2 rows reach the 3-row target, the last segment's 2 rows are a file of their own.
    expect(adds.map((a) => JSON.parse(a.stats ?? '{}').numRecords)).toEqual([4, 2]);
    expect(await read(root, 0)).toEqual([
      '1 | n1 | -',
      '2 | n2 | -',
      '3 | n3 | -',
      '4 | n4 | -',
      '5 | n5 | x5',
      '6 | n6 | x6',
    ]);

    expect(operationOf(await readCommitActions(root, 1))).toBe('MERGE');
    expect(await read(root)).toEqual([
      '1 | n1 | -',
      '2 | changed | y',
      '3 | n3 | -',
      '4 | n4 | -',
      '6 | n6 | x6',
    ]);
  });

  it("writes row groups of at most SNAPSHOT_ROW_GROUP_ROWS rows, which bounds the load's memory", async () => {
    const rows = 2 * SNAPSHOT_ROW_GROUP_ROWS + 1_000;
    const volume = await stage('row-groups', [
      wholeSnapshot(BEFORE_DDL, 1, ...Array.from({ length: rows }, (_, i) => snapshotRow(i)[1])),
    ]);
    const root = path.join(dir, 'row-groups', 'items');
    await apply(volume, { sourceKey: KEY, destination: 'lake.bronze.items', tableRoot: root }, rows);
    const [file] = (await loadSnapshot(root)).files;
    const groups = await db.rows(
      `SELECT row_group_id, any_value(row_group_num_rows) AS n FROM parquet_metadata('${path.join(root, file?.path ?? '')}') GROUP BY row_group_id`,
    );
    expect(groups.reduce((sum, g) => sum + Number(g['n']), 0)).toBe(rows);
    expect(groups.length).toBeGreaterThanOrEqual(3);
    for (const g of groups) expect(Number(g['n'])).toBeLessThanOrEqual(SNAPSHOT_ROW_GROUP_ROWS);
  });

  it('keeps one row per key when the key is a configured primary_keys, which may repeat in the source', async () => {
    const configured: TableSchema = { ...BEFORE_DDL, keySource: 'configured' };
    const volume = await stage('configured', [
      {
        schema: configured,
        snapshot: { epoch: 1, last: false },
        reset: true,
        rows: [snapshotRow(1), snapshotRow(2)],
      },
      { schema: configured, snapshot: { epoch: 1, last: true }, rows: [['r', { id: '2', name: 'again' }]] },
    ]);
    const root = path.join(dir, 'configured', 'items');
    await apply(volume, { sourceKey: KEY, destination: 'lake.bronze.items', tableRoot: root }, 1);
    expect(await read(root)).toEqual(['1 | n1', '2 | again']);
  });

  it('takes the new schema from a full refresh after a type change the table could not follow', async () => {
    const text: TableSchema = {
      ...BEFORE_DDL,
      columns: [
        BEFORE_DDL.columns[0] as ColumnSchema,
        { name: 'name', type: 'string', nullable: true, sourceType: 'text' },
      ],
    };
    const number: TableSchema = {
      ...BEFORE_DDL,
      columns: [
        BEFORE_DDL.columns[0] as ColumnSchema,
        { name: 'name', type: 'integer', nullable: true, sourceType: 'int' },
      ],
    };
    const root = path.join(dir, 'retyped', 'items');
    const target = { sourceKey: KEY, destination: 'lake.bronze.items', tableRoot: root };
    await apply(await stage('retyped', [wholeSnapshot(text, 1, { id: '1', name: 'one' })]), target, 10);
    // ALTER TABLE ... MODIFY name INT: a streamed change cannot go into the string column.
    const changed = await stage('retyped', [{ schema: number, rows: [['u', { id: '1', name: '7' }]] }], 2);
    const refused = await apply(changed, target, 10).catch((e: unknown) => e);
    // schema_evolution is evolve (the default): the table's full refresh is requested, and the round retries.
    expect(refused).toMatchObject({ code: 'SOURCE_SCHEMA_CHANGED', retry: 'transient' });
    expect(String((refused as Error).message)).toContain('A full refresh of the table was requested');
    expect(await changed.refreshRequests()).toEqual([KEY]);
    // Under fail, the table stops, and the error names the refresh to run.
    const stopped = await apply(changed, { ...target, schemaEvolution: 'fail' }, 10).catch((e: unknown) => e);
    expect(stopped).toMatchObject({ code: 'SOURCE_SCHEMA_CHANGED', retry: 'resnapshot' });
    expect(String((stopped as { hint?: string }).hint)).toContain(
      'tributary refresh <pipeline> --table shop.items',
    );

    // The refresh: a new snapshot of the table, with the new type.
    await apply(await stage('retyped', [wholeSnapshot(number, 2, { id: '1', name: '8' })], 3), target, 10);
    const table = await loadSnapshot(root);
    expect(table.schema.fields.map((f) => [f.name, f.type])).toEqual([
      ['id', 'integer'],
      ['name', 'integer'],
      ['_commit_timestamp', 'timestamp'],
    ]);
    expect(await read(root)).toEqual(['1 | 8']);
  });
});
