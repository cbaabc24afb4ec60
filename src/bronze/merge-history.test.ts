/**
 * planHistoryMerge (SCD type 2) against an in-memory model of the history: staged batches of inserts, updates,
 * deletes and re-inserts, across batches and within one batch, with resets, applied to a copy-on-write and a
 * deletion-vector table and read back through the scan layer after every commit.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asPosition } from '../core/position.js';
import type { Row, TableSchema } from '../core/table.js';
import type { AddFile } from '../delta/actions.js';
import { tableChangesSql } from '../delta/change-data-feed.js';
import { commit } from '../delta/commit.js';
import { scanSql } from '../delta/scan.js';
import { isDeltaTable, loadSnapshot, type Snapshot } from '../delta/snapshot.js';
import { DuckDb } from '../engine/duckdb.js';
import { INITIAL_GATEWAY_STATE, type StagedOp } from '../staging/segment-format.js';
import { type StagedRow, StagingVolume } from '../staging/staging-volume.js';
import { seededRandom as rng } from '../testing/seeded-random.js';
import { END_AT_COLUMN } from './bronze-schema.js';
import { type MergePlan, planMerge } from './merge-changes.js';
import { planHistoryMerge } from './merge-history.js';

const SOURCE: TableSchema = {
  id: { schema: 'shop', table: 'items' },
  columns: [
    { name: 'id', type: 'long', nullable: false, sourceType: 'bigint' },
    { name: 'name', type: 'string', nullable: true, sourceType: 'varchar(20)' },
    { name: 'qty', type: 'integer', nullable: true, sourceType: 'int' },
    { name: 'price', type: 'decimal(10,2)', nullable: true, sourceType: 'decimal(10,2)' },
  ],
  primaryKey: ['id'],
};
const DV_ON = { 'delta.enableDeletionVectors': 'true' };
const SECOND = 1_000_000n;
const T0 = 1_700_000_000_000_000n;

interface Image {
  readonly id: string;
  readonly name: string | null;
  readonly qty: string;
  readonly price: string;
}

interface Version extends Image {
  /** Source commit time of the change (`_commit_timestamp`). */
  readonly us: bigint;
  readonly start: bigint;
  end: bigint | null;
}

const max = (a: bigint, b: bigint) => (a > b ? a : b);

/**
 * The specification of the history, change by change: a change supersedes the key's open version at its commit
 * time raised to that version's start; a delete closes it likewise; a reset closes every open version.
 */
class HistoryModel {
  readonly versions: Version[] = [];
  readonly open = new Map<string, Version>();

  change(op: StagedOp, image: Image, us: bigint): void {
    const current = this.open.get(image.id);
    if (op === 'd') {
      if (current) current.end = max(us, current.start);
      this.open.delete(image.id);
      return;
    }
    const start = current ? max(us, current.start) : us;
    if (current) current.end = start;
    const version: Version = { ...image, us, start, end: null };
    this.versions.push(version);
    this.open.set(image.id, version);
  }

  reset(us: bigint): void {
    for (const v of this.open.values()) v.end = max(us, v.start);
    this.open.clear();
  }

  rows(): string[] {
    return this.versions.map(rowText).sort();
  }
}

function rowText(v: Version): string {
  return JSON.stringify([
    v.id,
    v.name,
    v.qty,
    v.price,
    String(v.us),
    String(v.start),
    v.end === null ? null : String(v.end),
  ]);
}

let dir: string;
let db: DuckDb;
let volume: StagingVolume;
let seq = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'bronze-history-'));
  db = await DuckDb.open();
  volume = new StagingVolume(path.join(dir, 'volume', 'gw'), 'gw');
});

afterAll(async () => {
  await db?.[Symbol.asyncDispose]();
  await rm(dir, { recursive: true, force: true });
});

interface Change {
  readonly op: StagedOp;
  readonly image: Image;
  readonly us: bigint;
  readonly unchanged?: string[];
}

function toRow(image: Image, unchanged: readonly string[] = []): Row {
  const row: Row = { id: image.id, name: image.name, qty: image.qty, price: image.price };
  for (const c of unchanged) delete row[c];
  return row;
}

async function stage(changes: readonly Change[], schema: TableSchema = SOURCE): Promise<string> {
  seq++;
  const key = `${schema.id.schema}.${schema.id.table}`;
  const rows: StagedRow[] = changes.map((c, ord) => ({
    ord,
    op: c.op,
    commitUs: c.us,
    row: toRow(c.image, c.unchanged),
    ...(c.unchanged ? { unchanged: c.unchanged } : {}),
  }));
  const manifest = await volume.writeSegment(db, {
    seq,
    origin: 'stream',
    snapshot: null,
    startPosition: null,
    endPosition: asPosition(String(seq).padStart(8, '0')),
    firstCommitTime: null,
    lastCommitTime: null,
    tables: new Map([[key, { schema, reset: false, rows }]]),
    state: { ...INITIAL_GATEWAY_STATE, seq },
  });
  return path.join(volume.segmentDir(seq), manifest.tables[key]?.file as string);
}

async function readHistory(
  root: string,
  where = 'true',
  commitColumn = '_commit_timestamp',
): Promise<string[]> {
  const snapshot = await loadSnapshot(root);
  const connection = await db.instance.connect();
  try {
    const sql = await scanSql(snapshot, connection);
    const reader = await connection.runAndReadAll(
      `SELECT CAST(id AS VARCHAR) AS id, name, CAST(qty AS VARCHAR) AS qty, CAST(price AS VARCHAR) AS price,
              CAST(epoch_us("${commitColumn}") AS VARCHAR) AS us, CAST(epoch_us(__START_AT) AS VARCHAR) AS s,
              CAST(epoch_us(__END_AT) AS VARCHAR) AS e
         FROM (${sql}) WHERE ${where}`,
    );
    return (reader.getRowObjectsJson() as Record<string, string | null>[])
      .map((r) => JSON.stringify([r['id'], r['name'], r['qty'], r['price'], r['us'], r['s'], r['e']]))
      .sort();
  } finally {
    connection.closeSync();
  }
}

async function snapshotOrNull(root: string): Promise<Snapshot | null> {
  return (await isDeltaTable(root)) ? loadSnapshot(root) : null;
}

async function apply(
  root: string,
  stagedFiles: string[],
  options: {
    /** A reset at this time starts the batch. */
    reset?: bigint;
    tableProperties?: Record<string, string>;
    source?: TableSchema;
    partial?: boolean;
    commitTimestampColumn?: string;
  } = {},
): Promise<{ plan: MergePlan; before: Snapshot | null; version: number }> {
  const before = await snapshotOrNull(root);
  const source = options.source ?? SOURCE;
  const plan = await planHistoryMerge(db, {
    tableRoot: root,
    snapshot: before,
    source,
    stagedFiles,
    stagedColumns: new Set(source.columns.map((c) => c.name)),
    overwrite: options.reset !== undefined,
    resetAtUs: options.reset,
    tableProperties: options.tableProperties,
    partial: options.partial ?? false,
    commitTimestampColumn: options.commitTimestampColumn,
  });
  const version = await commit(
    root,
    before?.version ?? -1,
    [...plan.actions, { txn: { appId: 'test', version: seq, lastUpdated: Date.now() } }],
    { operation: plan.operation, operationParameters: plan.operationParameters, isBlindAppend: false },
    { snapshot: before, checkWriteSupport: plan.wholeFileChanges ? { wholeFileChanges: true } : true },
  );
  return { plan, before, version };
}

function newImage(id: string, random: () => number): Image {
  const names = [null, 'plain', "it's", 'ünïcødé'];
  return {
    id,
    name:
      random() < 0.5
        ? `item-${Math.floor(random() * 1000)}`
        : (names[Math.floor(random() * names.length)] ?? null),
    qty: String(Math.floor(random() * 2000) - 1000),
    price: (Math.floor(random() * 10_000_000) / 100).toFixed(2),
  };
}

function dvAdds(plan: MergePlan): AddFile[] {
  return plan.actions.flatMap((a) => ('add' in a && a.add.deletionVector ? [a.add] : []));
}

function openRowsByStats(add: AddFile): number | undefined {
  const n = add.stats
    ? (JSON.parse(add.stats) as { nullCount?: Record<string, number> }).nullCount?.[END_AT_COLUMN]
    : undefined;
  return n;
}

describe('planHistoryMerge against a model', () => {
  it('copy-on-write and deletion vector tables both equal the model after every batch', async () => {
    const random = rng(20240612);
    const cow = path.join(dir, 'random-cow');
    const dv = path.join(dir, 'random-dv');
    const model = new HistoryModel();
    const KEYS = 80;
    const ROUNDS = 30;
    let us = T0;
    let skewed = 0;
    let sameTime = 0;
    let dvSeen = 0;
    let snapshotAt = 0n;

    for (let round = 0; round < ROUNDS; round++) {
      const openBefore = new Set(model.open.keys());
      let reset: bigint | undefined;
      const segments: string[] = [];
      const touched: string[] = [];
      let inserted = 0;
      if (round === 12) {
        // A TRUNCATE: every open row closes; changes follow in the same batch.
        us += SECOND;
        reset = us;
        model.reset(reset);
      }
      if (round === 22) {
        // A fresh snapshot: its time has microseconds, the stream's times after it are whole seconds.
        us = (us / SECOND + 2n) * SECOND + 500_000n;
        reset = us;
        model.reset(reset);
        const rows: Change[] = [];
        for (let k = 1; k <= KEYS; k++) {
          if (random() < 0.4) continue;
          const image = newImage(String(k), random);
          model.change('r', image, us);
          rows.push({ op: 'r', image, us });
          inserted++;
        }
        segments.push(await stage(rows));
        snapshotAt = us;
      }
      const segmentCount = round === 22 ? 0 : 1 + Math.floor(random() * 3);
      for (let s = 0; s < segmentCount; s++) {
        const rows: Change[] = [];
        const ops = 1 + Math.floor(random() * (round < 2 || round === 23 ? 60 : 25));
        for (let o = 0; o < ops; o++) {
          // Revisit keys of this batch often: several changes of one key in one batch, delete + re-insert.
          const id =
            touched.length > 0 && random() < 0.35
              ? (touched[Math.floor(random() * touched.length)] as string)
              : String(1 + Math.floor(random() * KEYS));
          touched.push(id);
          const dice = random();
          if (round === 23 && s === 0) {
            // Changes right after the snapshot, which MySQL stamps with the whole second: before the snapshot.
            us = (snapshotAt / SECOND) * SECOND;
            sameTime++;
          } else if (dice < 0.15) {
            sameTime++; // the same transaction
          } else if (dice < 0.25) {
            us -= BigInt(1 + Math.floor(random() * 3)) * SECOND; // a source clock that went back
            skewed++;
          } else {
            us += BigInt(1 + Math.floor(random() * 3)) * SECOND;
          }
          const current = model.open.get(id);
          let op: StagedOp;
          let image: Image;
          if (current === undefined) {
            op = 'c';
            image = newImage(id, random);
          } else if (random() < 0.6) {
            op = 'u';
            image = newImage(id, random);
          } else {
            op = 'd';
            image = current;
          }
          if (op !== 'd') inserted++;
          model.change(op, image, us);
          rows.push({ op, image, us });
        }
        segments.push(await stage(rows));
      }
      const closed =
        reset !== undefined ? openBefore.size : new Set(touched.filter((id) => openBefore.has(id))).size;

      for (const [root, properties] of [
        [cow, undefined],
        [dv, DV_ON],
      ] as const) {
        const where = `${properties ? 'dv' : 'cow'} round ${round}`;
        const { plan, before } = await apply(root, segments, {
          ...(reset !== undefined ? { reset } : {}),
          ...(properties ? { tableProperties: properties } : {}),
        });
        expect({ ...plan.metrics, where }).toMatchObject({ inserted, updated: closed, deleted: 0, where });
        expect(await readHistory(root), where).toEqual(model.rows());
        // The files read were those that may hold open rows; fully closed history was skipped.
        const read = new Set(plan.readFiles);
        for (const add of before?.files ?? []) {
          if (openRowsByStats(add) === 0) {
            expect(read.has(add.path), where).toBe(false);
          }
        }
        if (properties) dvSeen += dvAdds(plan).length;
        else expect(dvAdds(plan), where).toEqual([]);
      }
    }

    // One current row per live key, equal to the source's state, and no version ends before it starts.
    const current = await readHistory(dv, '__END_AT IS NULL');
    expect(current).toEqual([...model.open.values()].map(rowText).sort());
    expect(new Set(current.map((r) => JSON.parse(r)[0])).size).toBe(current.length);
    for (const r of await readHistory(cow)) {
      const [, , , , , start, end] = JSON.parse(r) as string[];
      if (end !== null) expect(BigInt(end as string) >= BigInt(start as string)).toBe(true);
    }
    // The random walk did reach the interesting cases.
    expect(skewed).toBeGreaterThan(5);
    expect(sameTime).toBeGreaterThan(5);
    expect(dvSeen).toBeGreaterThan(5);
    expect(model.versions.some((v) => v.start > v.us)).toBe(true);
    expect((await loadSnapshot(dv)).protocol).toMatchObject({ readerFeatures: ['deletionVectors'] });
    expect((await loadSnapshot(cow)).protocol).toEqual({ minReaderVersion: 1, minWriterVersion: 2 });
  });
});

describe('history rows of one key', () => {
  const img = (name: string, qty = 1): Image => ({ id: '7', name, qty: String(qty), price: '1.00' });
  const at = (s: number) => T0 + BigInt(s) * SECOND;
  // Insert, update twice, delete, re-insert: the workshop's sequence for one key.
  const sequence: Change[] = [
    { op: 'c', image: img('a'), us: at(1) },
    { op: 'u', image: img('b'), us: at(2) },
    { op: 'u', image: img('c'), us: at(3) },
    { op: 'd', image: img('c'), us: at(4) },
    { op: 'c', image: img('d'), us: at(5) },
  ];
  const expected = [
    ['7', 'a', '1', '1.00', at(1), at(1), at(2)],
    ['7', 'b', '1', '1.00', at(2), at(2), at(3)],
    ['7', 'c', '1', '1.00', at(3), at(3), at(4)],
    ['7', 'd', '1', '1.00', at(5), at(5), null],
  ].map((r) => JSON.stringify(r.map((x) => (typeof x === 'bigint' ? String(x) : x))));

  for (const [label, properties] of [
    ['copy-on-write', {}],
    ['deletion vectors', DV_ON],
  ] as const) {
    it(`are the same whether the changes come in one batch or in five (${label})`, async () => {
      const one = path.join(dir, `one-batch-${label.replace(' ', '-')}`);
      const { plan } = await apply(one, [await stage(sequence)], { tableProperties: properties });
      expect(plan.metrics).toMatchObject({ inserted: 4, updated: 0, deleted: 0 });
      expect(await readHistory(one)).toEqual(expected);

      const many = path.join(dir, `five-batches-${label.replace(' ', '-')}`);
      const metrics = [];
      for (const change of sequence) {
        metrics.push(
          (await apply(many, [await stage([change])], { tableProperties: properties })).plan.metrics,
        );
      }
      expect(metrics.map((m) => [m.inserted, m.updated])).toEqual([
        [1, 0],
        [1, 1],
        [1, 1],
        [0, 1],
        [1, 0],
      ]);
      expect(await readHistory(many)).toEqual(expected);
      expect(await readHistory(many, '__END_AT IS NULL')).toEqual([expected[3]]);
      // Segments of one batch split across files: the order is segment, then position.
      const split = path.join(dir, `split-${label.replace(' ', '-')}`);
      await apply(
        split,
        [
          await stage(sequence.slice(0, 2)),
          await stage(sequence.slice(2, 4)),
          await stage(sequence.slice(4)),
        ],
        { tableProperties: properties },
      );
      expect(await readHistory(split)).toEqual(expected);
    });
  }

  it('changes at the same time give versions that end when they start', async () => {
    const root = path.join(dir, 'same-time');
    await apply(root, [
      await stage([
        { op: 'c', image: img('a'), us: at(1) },
        { op: 'u', image: img('b'), us: at(1) },
      ]),
    ]);
    expect(await readHistory(root)).toEqual(
      [
        ['7', 'a', '1', '1.00', at(1), at(1), at(1)],
        ['7', 'b', '1', '1.00', at(1), at(1), null],
      ].map((r) => JSON.stringify(r.map((x) => (typeof x === 'bigint' ? String(x) : x)))),
    );
  });

  it('a change stamped before the version it supersedes starts when that version started', async () => {
    // A snapshot at 10.5 s, then an update MySQL stamps 10 s (binlog times are whole seconds).
    const root = path.join(dir, 'clamped');
    const snapshotAt = at(10) + 500_000n;
    await apply(root, [await stage([{ op: 'r', image: img('a'), us: snapshotAt }])], { reset: snapshotAt });
    await apply(root, [await stage([{ op: 'u', image: img('b'), us: at(10) }])]);
    await apply(root, [await stage([{ op: 'd', image: img('b'), us: at(9) }])]);
    expect(await readHistory(root)).toEqual(
      [
        ['7', 'a', '1', '1.00', snapshotAt, snapshotAt, snapshotAt],
        ['7', 'b', '1', '1.00', at(10), snapshotAt, snapshotAt],
      ].map((r) => JSON.stringify(r.map((x) => (typeof x === 'bigint' ? String(x) : x)))),
    );
  });
});

describe('pruning by open rows', () => {
  for (const [label, properties] of [
    ['copy-on-write', {}],
    ['deletion vectors', DV_ON],
  ] as const) {
    it(`never reads a file whose stats say every row is closed (${label})`, async () => {
      const root = path.join(dir, `pruning-${label.replace(' ', '-')}`);
      const keys = Array.from({ length: 10 }, (_, i) => String(i + 1));
      const image = (id: string, name: string): Image => ({ id, name, qty: '1', price: '1.00' });
      const batch = (op: StagedOp, name: string, s: number) =>
        stage(keys.map((id) => ({ op, image: image(id, name), us: T0 + BigInt(s) * SECOND })));
      await apply(root, [await batch('c', 'a', 1)], { tableProperties: properties });
      await apply(root, [await batch('u', 'b', 2)]);
      // Every key deleted: the closed copies go into a file without a single open row.
      const { plan } = await apply(root, [await batch('d', 'b', 3)]);
      const closedFile = plan.actions.flatMap((a) =>
        'add' in a && !a.add.deletionVector ? [a.add] : [],
      )[0] as AddFile;
      expect(openRowsByStats(closedFile)).toBe(0);
      // A re-insert of a key in that file's key range reads nothing of it.
      const { plan: reinsert } = await apply(root, [
        await stage([{ op: 'c', image: image('5', 'c'), us: T0 + 4n * SECOND }]),
      ]);
      expect(reinsert.readFiles).not.toContain(closedFile.path);
      expect(reinsert.metrics).toMatchObject({ inserted: 1, updated: 0 });
      expect(await readHistory(root)).toHaveLength(21);
      expect(await readHistory(root, '__END_AT IS NULL')).toHaveLength(1);
    });
  }
});

describe('resets of a history table', () => {
  for (const [label, properties] of [
    ['copy-on-write', {}],
    ['deletion vectors', DV_ON],
  ] as const) {
    it(`close every open row at the reset's time and keep the history (${label})`, async () => {
      const root = path.join(dir, `reset-${label.replace(' ', '-')}`);
      const image = (id: number, name: string): Image => ({ id: String(id), name, qty: '1', price: '1.00' });
      const at = (s: number) => T0 + BigInt(s) * SECOND;
      const row = (id: number, name: string, us: bigint, start: bigint, end: bigint | null) =>
        JSON.stringify([
          String(id),
          name,
          '1',
          '1.00',
          String(us),
          String(start),
          end === null ? null : String(end),
        ]);
      await apply(
        root,
        [
          await stage([
            { op: 'c', image: image(1, 'a'), us: at(1) },
            { op: 'c', image: image(2, 'a'), us: at(1) },
            { op: 'c', image: image(3, 'a'), us: at(1) },
            { op: 'u', image: image(3, 'b'), us: at(2) },
            { op: 'd', image: image(2, 'a'), us: at(3) },
          ]),
        ],
        { tableProperties: properties },
      );
      // TRUNCATE at 5 s, then key 1 comes back in the same batch.
      const { plan } = await apply(root, [await stage([{ op: 'c', image: image(1, 'z'), us: at(6) }])], {
        reset: at(5),
      });
      expect(plan.metrics).toMatchObject({ inserted: 1, updated: 2, deleted: 0 });
      expect(plan.operation).toBe('MERGE');
      expect(await readHistory(root)).toEqual(
        [
          row(1, 'a', at(1), at(1), at(5)),
          row(1, 'z', at(6), at(6), null),
          row(2, 'a', at(1), at(1), at(3)),
          row(3, 'a', at(1), at(1), at(2)),
          row(3, 'b', at(2), at(2), at(5)),
        ].sort(),
      );
      // An empty reset (a TRUNCATE with nothing after it) closes the rest.
      await apply(root, [await stage([])], { reset: at(8) });
      expect(await readHistory(root, '__END_AT IS NULL')).toEqual([]);
      expect(await readHistory(root)).toContain(row(1, 'z', at(6), at(6), at(8)));
    });
  }
});

describe('columns a change leaves unchanged (PostgreSQL unchanged TOAST values)', () => {
  it('take the latest value sent in the batch, else the stored current version', async () => {
    const root = path.join(dir, 'unchanged');
    const at = (s: number) => T0 + BigInt(s) * SECOND;
    const image = (name: string | null, qty: number): Image => ({
      id: '1',
      name,
      qty: String(qty),
      price: '1.00',
    });
    await apply(root, [await stage([{ op: 'c', image: image('big', 1), us: at(1) }])]);
    await apply(
      root,
      [
        await stage([
          { op: 'u', image: image(null, 2), us: at(2), unchanged: ['name'] },
          { op: 'u', image: image('bigger', 3), us: at(3) },
          { op: 'u', image: image(null, 4), us: at(4), unchanged: ['name'] },
        ]),
      ],
      { partial: true },
    );
    const row = (name: string, qty: number, s: number, e: number | null) =>
      JSON.stringify([
        '1',
        name,
        String(qty),
        '1.00',
        String(at(s)),
        String(at(s)),
        e === null ? null : String(at(e)),
      ]);
    expect(await readHistory(root)).toEqual(
      [row('big', 1, 1, 2), row('big', 2, 2, 3), row('bigger', 3, 3, 4), row('bigger', 4, 4, null)].sort(),
    );
  });
});

describe('the change data feed of a history table', () => {
  const COMMIT_COLUMN = '_source_commit_timestamp';
  const CDF_ON = { 'delta.enableChangeDataFeed': 'true' };

  async function readChanges(root: string, version: number): Promise<{ type: string; row: string }[]> {
    const connection = await db.instance.connect();
    try {
      const sql = await tableChangesSql(root, connection, { startVersion: version, endVersion: version });
      const reader = await connection.runAndReadAll(
        `SELECT CAST(id AS VARCHAR) AS id, name, CAST(qty AS VARCHAR) AS qty, CAST(price AS VARCHAR) AS price,
                CAST(epoch_us("${COMMIT_COLUMN}") AS VARCHAR) AS us, CAST(epoch_us(__START_AT) AS VARCHAR) AS s,
                CAST(epoch_us(__END_AT) AS VARCHAR) AS e, _change_type FROM (${sql})`,
      );
      return (reader.getRowObjectsJson() as Record<string, string | null>[]).map((r) => ({
        type: r['_change_type'] as string,
        row: JSON.stringify([r['id'], r['name'], r['qty'], r['price'], r['us'], r['s'], r['e']]),
      }));
    } finally {
      connection.closeSync();
    }
  }

  for (const [label, properties] of [
    ['copy-on-write', CDF_ON],
    ['deletion vectors', { ...CDF_ON, ...DV_ON }],
  ] as const) {
    it(`replaying each commit's feed on the table before gives the table after (${label})`, async () => {
      const random = rng(20261124);
      const root = path.join(dir, `cdf-${label.replace(' ', '-')}`);
      const model = new HistoryModel();
      let us = T0;
      let previous: string[] = [];
      const seen = new Set<string>();
      for (let round = 0; round < 12; round++) {
        let reset: bigint | undefined;
        if (round === 7) {
          us += SECOND;
          reset = us;
          model.reset(reset);
        }
        const changes: Change[] = [];
        for (let o = 0; o < 1 + Math.floor(random() * 20); o++) {
          const id = String(1 + Math.floor(random() * 30));
          us += SECOND;
          const op: StagedOp = model.open.has(id) ? (random() < 0.3 ? 'd' : 'u') : 'c';
          const image = newImage(id, random);
          model.change(op, image, us);
          changes.push({ op, image, us });
        }
        const { plan, version } = await apply(root, [await stage(changes)], {
          ...(reset === undefined ? {} : { reset }),
          tableProperties: properties,
          commitTimestampColumn: COMMIT_COLUMN,
        });
        const after = await readHistory(root, 'true', COMMIT_COLUMN);
        expect(after, `round ${round}`).toEqual(model.rows());
        const feed = await readChanges(root, version);
        for (const c of feed) seen.add(c.type);
        // Remove what the feed says left (each such row must be there), add what it says arrived.
        const replayed = [...previous];
        for (const c of feed) {
          if (c.type === 'update_preimage' || c.type === 'delete') {
            const at = replayed.indexOf(c.row);
            expect(
              at,
              `round ${round}: ${c.type} of a row the table did not hold: ${c.row}`,
            ).toBeGreaterThanOrEqual(0);
            replayed.splice(at, 1);
          } else replayed.push(c.row);
        }
        expect(replayed.sort(), `round ${round}`).toEqual(after);
        // A copy-on-write rewrite copies untouched rows: no row may show as both leaving and arriving.
        const left = new Set(feed.filter((c) => c.type.endsWith('preimage')).map((c) => c.row));
        expect(
          feed.filter((c) => c.type !== 'update_preimage' && left.has(c.row)),
          `round ${round}`,
        ).toEqual([]);
        expect(
          plan.actions.some((a) => 'cdc' in a),
          `round ${round}`,
        ).toBe(round > 0);
        previous = after;
      }
      expect([...seen].sort()).toEqual(['insert', 'update_postimage', 'update_preimage']);
    });
  }
});

describe('the SCD type of an existing table', () => {
  it('cannot change without a full refresh', async () => {
    const history = path.join(dir, 'scd2-table');
    await apply(history, [
      await stage([{ op: 'c', image: { id: '1', name: 'a', qty: '1', price: '1.00' }, us: T0 }]),
    ]);
    const staged = await stage([{ op: 'u', image: { id: '1', name: 'b', qty: '1', price: '1.00' }, us: T0 }]);
    const input = {
      source: SOURCE,
      stagedFiles: [staged],
      stagedColumns: new Set(SOURCE.columns.map((c) => c.name)),
      overwrite: false,
    };
    await expect(
      planMerge(db, { ...input, tableRoot: history, snapshot: await loadSnapshot(history) }),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('SCD_TYPE_1') });

    const plain = path.join(dir, 'scd1-table');
    const first = await planMerge(db, { ...input, tableRoot: plain, snapshot: null });
    await commit(plain, -1, first.actions, { operation: first.operation });
    await expect(
      planHistoryMerge(db, { ...input, tableRoot: plain, snapshot: await loadSnapshot(plain) }),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('SCD_TYPE_2') });
  });

  it('refuses a source column named like a history column', async () => {
    const source: TableSchema = {
      ...SOURCE,
      columns: [...SOURCE.columns, { name: '__END_AT', type: 'string', nullable: true, sourceType: 'text' }],
    };
    await expect(
      planHistoryMerge(db, {
        tableRoot: path.join(dir, 'clash'),
        snapshot: null,
        source,
        stagedFiles: [await stage([], source)],
        stagedColumns: new Set(source.columns.map((c) => c.name)),
        overwrite: false,
      }),
    ).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('__END_AT') });
  });
});

describe('the bronze schema of a history table', () => {
  it('has the source columns, then _commit_timestamp, __START_AT and __END_AT; new columns go before them', async () => {
    const root = path.join(dir, 'schema');
    await apply(root, [
      await stage([{ op: 'c', image: { id: '1', name: 'a', qty: '1', price: '1.00' }, us: T0 }]),
    ]);
    expect((await loadSnapshot(root)).schema.fields.map((f) => [f.name, f.type])).toEqual([
      ['id', 'long'],
      ['name', 'string'],
      ['qty', 'integer'],
      ['price', 'decimal(10,2)'],
      ['_commit_timestamp', 'timestamp'],
      ['__START_AT', 'timestamp'],
      ['__END_AT', 'timestamp'],
    ]);
    const wider: TableSchema = {
      ...SOURCE,
      columns: [...SOURCE.columns, { name: 'note', type: 'string', nullable: true, sourceType: 'text' }],
    };
    await apply(
      root,
      [
        await stage(
          [{ op: 'u', image: { id: '1', name: 'b', qty: '1', price: '1.00' }, us: T0 + SECOND }],
          wider,
        ),
      ],
      { source: wider },
    );
    const fields = (await loadSnapshot(root)).schema.fields.map((f) => f.name);
    expect(fields).toEqual([
      'id',
      'name',
      'qty',
      'price',
      'note',
      '_commit_timestamp',
      '__START_AT',
      '__END_AT',
    ]);
    expect(await readHistory(root)).toHaveLength(2);
  });
});
