/**
 * planMerge against an in-memory model: random CDC batches staged the way capture stages them, applied to a
 * copy-on-write table, a deletion-vector table and a table that switches between the two, each read back
 * through the scan layer after every commit.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asPosition } from '../core/position.js';
import type { Row, TableSchema } from '../core/table.js';
import { type AddFile, type DeletionVectorDescriptor, deletionVectorId } from '../delta/actions.js';
import { tableChangesSql } from '../delta/change-data-feed.js';
import { commit } from '../delta/commit.js';
import { crc32, deletionVectorFile, readDeletionVector } from '../delta/deletion-vectors.js';
import { scanSql } from '../delta/scan.js';
import { isDeltaTable, loadSnapshot, type Snapshot } from '../delta/snapshot.js';
import { DuckDb } from '../engine/duckdb.js';
import { INITIAL_GATEWAY_STATE, type StagedOp } from '../staging/segment-format.js';
import { type StagedRow, StagingVolume } from '../staging/staging-volume.js';
import { seededRandom as rng } from '../testing/seeded-random.js';
import { fromStaged, type MergePlan, planMerge } from './merge-changes.js';

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

interface ModelRow {
  readonly id: string;
  readonly name: string | null;
  readonly qty: string;
  readonly price: string;
  readonly us: string;
}
type Model = Map<string, ModelRow>;

/** Half the keys are beyond 2^53, so stats bounds must stay exact 64-bit integers. */
function keyOf(k: number): string {
  return k % 2 === 0 ? String(k) : (9_000_000_000_000_000_000n + BigInt(k)).toString();
}

function rowsText(model: Model): string[] {
  return [...model.values()].map((r) => JSON.stringify([r.id, r.name, r.qty, r.price, r.us])).sort();
}

let dir: string;
let db: DuckDb;
let volume: StagingVolume;
let seq = 0;
let commitUs = 1_700_000_000_000_000n;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'bronze-merge-'));
  db = await DuckDb.open();
  volume = new StagingVolume(path.join(dir, 'volume', 'gw'), 'gw');
});

afterAll(async () => {
  await db?.[Symbol.asyncDispose]();
  await rm(dir, { recursive: true, force: true });
});

async function stage(rows: readonly StagedRow[], schema: TableSchema = SOURCE): Promise<string> {
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
    tables: new Map([[key, { schema, reset: false, rows }]]),
    state: { ...INITIAL_GATEWAY_STATE, seq },
  });
  return path.join(volume.segmentDir(seq), manifest.tables[key]?.file as string);
}

async function readTable(
  root: string,
  version?: number,
  commitColumn = '_commit_timestamp',
): Promise<string[]> {
  const snapshot = await loadSnapshot(root, { version });
  const connection = await db.instance.connect();
  try {
    const sql = await scanSql(snapshot, connection);
    const reader = await connection.runAndReadAll(
      `SELECT CAST(id AS VARCHAR) AS id, name, CAST(qty AS VARCHAR) AS qty, CAST(price AS VARCHAR) AS price,
              CAST(epoch_us("${commitColumn}") AS VARCHAR) AS us FROM (${sql})`,
    );
    return (reader.getRowObjectsJson() as Record<string, string | null>[])
      .map((r) => JSON.stringify([r['id'], r['name'], r['qty'], r['price'], r['us']]))
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
    overwrite?: boolean;
    tableProperties?: Record<string, string>;
    source?: TableSchema;
    /** Drops `add.stats` of the new files, as a writer without statistics would. */
    withoutStats?: boolean;
    partial?: boolean;
    commitTimestampColumn?: string;
  } = {},
): Promise<{ plan: MergePlan; before: Snapshot | null; version: number }> {
  const before = await snapshotOrNull(root);
  const source = options.source ?? SOURCE;
  const plan = await planMerge(db, {
    tableRoot: root,
    snapshot: before,
    source,
    stagedFiles,
    stagedColumns: new Set(source.columns.map((c) => c.name)),
    overwrite: options.overwrite ?? false,
    tableProperties: options.tableProperties,
    partial: options.partial ?? false,
    commitTimestampColumn: options.commitTimestampColumn,
  });
  if (options.withoutStats) {
    for (const a of plan.actions) if ('add' in a) delete a.add.stats;
  }
  const version = await commit(
    root,
    before?.version ?? -1,
    [...plan.actions, { txn: { appId: 'test', version: seq, lastUpdated: Date.now() } }],
    { operation: plan.operation, operationParameters: plan.operationParameters, isBlindAppend: false },
    { snapshot: before, checkWriteSupport: plan.wholeFileChanges ? { wholeFileChanges: true } : true },
  );
  return { plan, before, version };
}

/** Every remove names a file live before the commit, with that file's DV id (replay's key). */
function expectRemovesMatch(plan: MergePlan, before: Snapshot | null): void {
  const live = new Set(
    (before?.files ?? []).map((a) => `${a.path}\u0000${deletionVectorId(a.deletionVector)}`),
  );
  for (const action of plan.actions) {
    if ('remove' in action) {
      expect(live.has(`${action.remove.path}\u0000${deletionVectorId(action.remove.deletionVector)}`)).toBe(
        true,
      );
    }
  }
}

function dvAdds(plan: MergePlan): AddFile[] {
  return plan.actions.flatMap((a) => ('add' in a && a.add.deletionVector ? [a.add] : []));
}

/** Checks the DV file of a descriptor byte by byte, then through the reader. */
async function expectDvReadable(root: string, dv: DeletionVectorDescriptor): Promise<void> {
  const file = deletionVectorFile(root, dv) as string;
  expect(path.basename(file)).toMatch(/^deletion_vector_[0-9a-f-]{36}\.bin$/);
  const bytes = readFileSync(file);
  expect(bytes[0]).toBe(1);
  const at = dv.offset ?? 1;
  expect(bytes.readUInt32BE(at)).toBe(dv.sizeInBytes);
  expect(bytes.readUInt32BE(at + 4 + dv.sizeInBytes)).toBe(
    crc32(bytes.subarray(at + 4, at + 4 + dv.sizeInBytes)),
  );
  expect((await readDeletionVector(root, dv)).cardinality).toBe(dv.cardinality);
}

describe('planMerge against a model', () => {
  it('copy-on-write, deletion vectors and a table switching between them all equal the model', async () => {
    const random = rng(20240611);
    const cow = path.join(dir, 'cow');
    const dv = path.join(dir, 'dv');
    const mixed = path.join(dir, 'mixed');
    const model: Model = new Map();
    const dvVersions = new Map<number, string[]>();
    const descriptors: DeletionVectorDescriptor[] = [];
    let mixedDvOn = true;
    let cowOverDvRounds = 0;
    let fileDrops = 0;
    let dvUpdates = 0;
    const KEYS = 240;
    const ROUNDS = 36;

    for (let round = 0; round < ROUNDS; round++) {
      const before = new Map(model);
      const overwrite = round === 22;
      const segments: string[] = [];
      const lastOp = new Map<string, StagedOp>();
      if (overwrite) {
        // A fresh snapshot of a different table state: everything before it is replaced.
        model.clear();
        const rows: StagedRow[] = [];
        for (let k = 1; k <= KEYS; k++) {
          if (random() < 0.5) continue;
          commitUs += 1n;
          const r = newRow(keyOf(k), random);
          model.set(r.id, { ...r, us: commitUs.toString() });
          rows.push({ ord: rows.length, op: 'r', commitUs, row: toRow(r) });
        }
        segments.push(await stage(rows));
      } else {
        const touched: string[] = [];
        const segmentCount = 1 + Math.floor(random() * 3);
        for (let s = 0; s < segmentCount; s++) {
          const rows: StagedRow[] = [];
          const ops = 1 + Math.floor(random() * (round < 3 ? 120 : 40));
          for (let o = 0; o < ops; o++) {
            // Revisit keys of this batch often: several changes of one key in one batch, delete + re-insert.
            const id =
              touched.length > 0 && random() < 0.3
                ? (touched[Math.floor(random() * touched.length)] as string)
                : keyOf(1 + Math.floor(random() * KEYS));
            touched.push(id);
            commitUs += 1n;
            const current = model.get(id);
            let op: StagedOp;
            let image: Omit<ModelRow, 'us'>;
            if (current === undefined) {
              op = 'c';
              image = newRow(id, random);
              model.set(id, { ...image, us: commitUs.toString() });
            } else if (random() < 0.6) {
              op = 'u';
              image = newRow(id, random);
              model.set(id, { ...image, us: commitUs.toString() });
            } else {
              op = 'd';
              image = current;
              model.delete(id);
            }
            lastOp.set(id, op);
            rows.push({ ord: rows.length, op, commitUs, row: toRow(image) });
          }
          segments.push(await stage(rows));
        }
      }
      const expected = { inserted: 0, updated: 0, deleted: 0 };
      if (overwrite) expected.inserted = model.size;
      else {
        for (const [id, op] of lastOp) {
          if (op !== 'd') expected[before.has(id) ? 'updated' : 'inserted']++;
          else if (before.has(id)) expected.deleted++;
        }
      }

      if (round % 6 === 5) {
        // Flip the mixed table between merge-on-read and copy-on-write (its DVs stay in the table).
        mixedDvOn = !mixedDvOn;
        const snap = await loadSnapshot(mixed);
        const configuration = {
          ...snap.metadata.configuration,
          'delta.enableDeletionVectors': String(mixedDvOn),
        };
        await commit(mixed, snap.version, [{ metaData: { ...snap.metadata, configuration } }], {
          operation: 'SET TBLPROPERTIES',
        });
      }

      for (const [root, kind] of [
        [cow, 'cow'],
        [dv, 'dv'],
        [mixed, 'mixed'],
      ] as const) {
        const tableProperties = kind === 'cow' ? undefined : DV_ON;
        const {
          plan,
          before: snap,
          version,
        } = await apply(root, segments, {
          overwrite,
          ...(tableProperties ? { tableProperties } : {}),
        });
        const where = `${kind} round ${round}`;
        expect({ ...plan.metrics, where }).toMatchObject({ ...expected, where });
        expectRemovesMatch(plan, snap);
        expect(await readTable(root), where).toEqual(rowsText(model));

        const newFiles = plan.actions.filter(
          (a) => 'add' in a && !(snap?.files ?? []).some((f) => f.path === a.add.path),
        );
        expect(newFiles.length, where).toBeLessThanOrEqual(1);
        if (kind === 'cow') {
          expect(dvAdds(plan), where).toEqual([]);
        }
        if (kind === 'dv') {
          dvVersions.set(version, rowsText(model));
          // One DV file per commit.
          expect(new Set(dvAdds(plan).map((a) => a.deletionVector?.pathOrInlineDv)).size).toBeLessThanOrEqual(
            1,
          );
          for (const add of dvAdds(plan)) {
            expect(JSON.parse(add.stats as string).tightBounds, where).toBe(false);
            descriptors.push(add.deletionVector as DeletionVectorDescriptor);
          }
          // Merge-on-read never rewrites: a removed path is either re-added with a DV or gone for good.
          const readded = new Set(dvAdds(plan).map((a) => a.path));
          for (const a of plan.actions) {
            if ('remove' in a && !readded.has(a.remove.path) && !overwrite) fileDrops++;
          }
          dvUpdates += plan.deletionVectors.updated;
        }
        if (kind === 'mixed' && !mixedDvOn && (snap?.files ?? []).some((f) => f.deletionVector)) {
          cowOverDvRounds++;
          expect(dvAdds(plan), where).toEqual([]);
        }
      }
    }

    // The random walk did reach the interesting cases.
    expect(cowOverDvRounds).toBeGreaterThan(0);
    expect(fileDrops).toBeGreaterThan(0);
    expect(dvUpdates).toBeGreaterThan(0);
    expect(descriptors.length).toBeGreaterThan(10);

    const dvSnapshot = await loadSnapshot(dv);
    expect(dvSnapshot.protocol).toEqual({
      minReaderVersion: 3,
      minWriterVersion: 7,
      readerFeatures: ['deletionVectors'],
      writerFeatures: ['deletionVectors'],
    });
    expect((await loadSnapshot(cow)).protocol).toEqual({ minReaderVersion: 1, minWriterVersion: 2 });
    // Checkpoints were written (every 10 commits), so DV descriptors also went through Parquet replay.
    expect(dvSnapshot.checkpointVersion).toBeDefined();

    for (const d of descriptors) await expectDvReadable(dv, d);

    // Time travel: each version reads as the model did right after it.
    for (const [version, rows] of dvVersions) {
      if (version % 5 === 0 || version === dvSnapshot.version) {
        expect(await readTable(dv, version), `dv version ${version}`).toEqual(rows);
      }
    }

    // A damaged DV file: reading and merging both fail with DELTA_CORRUPT naming the file.
    const broken = path.join(dir, 'dv-broken');
    await cp(dv, broken, { recursive: true });
    const victim = dvSnapshot.files.find((f) => f.deletionVector)?.deletionVector as DeletionVectorDescriptor;
    const file = deletionVectorFile(broken, victim) as string;
    const bytes = readFileSync(file);
    const at = (victim.offset ?? 1) + 4 + 6;
    bytes[at] = (bytes[at] as number) ^ 0xff;
    writeFileSync(file, bytes);
    const corrupt = { code: 'DELTA_CORRUPT', message: expect.stringContaining(file) };
    await expect(readTable(broken)).rejects.toMatchObject(corrupt);
    // Every key changes, so pruning cannot skip the damaged file.
    const everyKey = Array.from({ length: KEYS }, (_, i) => ({
      ord: i,
      op: 'd' as const,
      commitUs,
      row: toRow(newRow(keyOf(i + 1), random)),
    }));
    const batch = await stage(everyKey);
    await expect(apply(broken, [batch])).rejects.toMatchObject(corrupt);
  });
});

describe('change data feed', () => {
  const CDF_ON = { 'delta.enableChangeDataFeed': 'true' };
  const COMMIT_COLUMN = '_source_commit_timestamp';

  /** What the feed must say of one batch: per changed key, the stored row before and the row after. */
  function expectedChanges(before: Model, after: Model, keys: Iterable<string>): string[] {
    const text = (r: ModelRow, type: string) => JSON.stringify([r.id, r.name, r.qty, r.price, r.us, type]);
    const out: string[] = [];
    for (const id of new Set(keys)) {
      const old = before.get(id);
      const now = after.get(id);
      if (old && now) out.push(text(old, 'update_preimage'), text(now, 'update_postimage'));
      else if (now) out.push(text(now, 'insert'));
      else if (old) out.push(text(old, 'delete'));
    }
    return out.sort();
  }

  async function readChanges(root: string, version: number): Promise<string[]> {
    const connection = await db.instance.connect();
    try {
      const sql = await tableChangesSql(root, connection, { startVersion: version, endVersion: version });
      const reader = await connection.runAndReadAll(
        `SELECT CAST(id AS VARCHAR) AS id, name, CAST(qty AS VARCHAR) AS qty, CAST(price AS VARCHAR) AS price,
                CAST(epoch_us("${COMMIT_COLUMN}") AS VARCHAR) AS us, _change_type, _commit_version FROM (${sql})`,
      );
      return (reader.getRowObjectsJson() as Record<string, string | null>[])
        .map((r) => {
          expect(r['_commit_version']).toBe(String(version));
          return JSON.stringify([r['id'], r['name'], r['qty'], r['price'], r['us'], r['_change_type']]);
        })
        .sort();
    } finally {
      connection.closeSync();
    }
  }

  it('records every insert, update and delete of a merge, copy-on-write and merge-on-read alike', async () => {
    const random = rng(20261123);
    const KEYS = 120;
    const tables = [
      ['cdf-cow', CDF_ON],
      ['cdf-dv', { ...CDF_ON, ...DV_ON }],
    ] as const;
    const model: Model = new Map();
    let cdcCommits = 0;
    for (let round = 0; round < 16; round++) {
      const before = new Map(model);
      const overwrite = round === 9;
      const touched: string[] = [];
      const rows: StagedRow[] = [];
      if (overwrite) model.clear();
      const ops = overwrite ? KEYS : 1 + Math.floor(random() * 40);
      for (let o = 0; o < ops; o++) {
        const id = overwrite ? keyOf(o + 1) : keyOf(1 + Math.floor(random() * KEYS));
        if (overwrite && random() < 0.5) continue;
        commitUs += 1n;
        const current = model.get(id);
        let op: StagedOp = 'r';
        let image = current ?? newRow(id, random);
        if (overwrite) image = newRow(id, random);
        else if (current === undefined) op = 'c';
        else if (random() < 0.6) {
          op = 'u';
          image = newRow(id, random);
        } else op = 'd';
        if (op === 'd') model.delete(id);
        else model.set(id, { ...image, us: commitUs.toString() });
        touched.push(id);
        rows.push({ ord: rows.length, op, commitUs, row: toRow(image) });
      }
      const segment = await stage(rows);
      for (const [name, tableProperties] of tables) {
        const root = path.join(dir, name);
        const where = `${name} round ${round}`;
        const { plan, version } = await apply(root, [segment], {
          overwrite,
          tableProperties,
          commitTimestampColumn: COMMIT_COLUMN,
        });
        expect(await readTable(root, undefined, COMMIT_COLUMN), where).toEqual(rowsText(model));
        const cdc = plan.actions.filter((a) => 'cdc' in a);
        if (round === 0 || overwrite) {
          // Creating or overwriting the table: its adds and removes state the change, as Spark writes it.
          expect(plan.wholeFileChanges, where).toBe(true);
          expect(cdc, where).toEqual([]);
          // Every stored row deleted, every new row inserted (an overwrite says nothing of keys).
          const expected = [
            ...expectedChanges(before, new Map(), before.keys()),
            ...expectedChanges(new Map(), model, model.keys()),
          ].sort();
          expect(await readChanges(root, version), where).toEqual(expected);
        } else {
          expect(plan.wholeFileChanges, where).toBe(false);
          expect(cdc.length, where).toBeLessThanOrEqual(1);
          if (cdc.length > 0) cdcCommits++;
          expect(await readChanges(root, version), where).toEqual(expectedChanges(before, model, touched));
        }
      }
    }
    expect(cdcCommits).toBeGreaterThan(20);
    // The feed's cdc files hold the table's columns and _change_type, as Spark writes them.
    const snapshot = await loadSnapshot(path.join(dir, 'cdf-dv'));
    expect(snapshot.protocol.writerFeatures).toEqual(
      expect.arrayContaining(['deletionVectors', 'changeDataFeed']),
    );
    const cdcFiles = readdirSync(path.join(dir, 'cdf-dv', '_change_data'));
    expect(cdcFiles.length).toBeGreaterThan(5);
    for (const f of cdcFiles) expect(f).toMatch(/^cdc-00000-[0-9a-f-]{36}\.c000\.snappy\.parquet$/);
    const columns = await db.rows(
      `SELECT name FROM parquet_schema('${path.join(dir, 'cdf-dv', '_change_data', cdcFiles[0] as string)}') WHERE num_children IS NULL`,
    );
    expect(columns.map((c) => c['name'])).toEqual([
      'id',
      'name',
      'qty',
      'price',
      COMMIT_COLUMN,
      '_change_type',
    ]);
  });

  it('a table whose commits would rewrite rows without cdc files is refused at commit', async () => {
    const root = path.join(dir, 'cdf-refused');
    const first = await stage([{ ord: 0, op: 'c', commitUs, row: toRow(newRow('1', rng(1))) }]);
    await apply(root, [first], { tableProperties: CDF_ON, commitTimestampColumn: COMMIT_COLUMN });
    const update = await stage([{ ord: 0, op: 'u', commitUs, row: toRow(newRow('1', rng(2))) }]);
    const before = await loadSnapshot(root);
    const plan = await planMerge(db, {
      tableRoot: root,
      snapshot: before,
      source: SOURCE,
      stagedFiles: [update],
      stagedColumns: new Set(SOURCE.columns.map((c) => c.name)),
      overwrite: false,
      commitTimestampColumn: COMMIT_COLUMN,
    });
    const withoutCdc = plan.actions.filter((a) => !('cdc' in a));
    expect(withoutCdc.length).toBeLessThan(plan.actions.length);
    await expect(
      commit(root, before.version, withoutCdc, { operation: 'MERGE' }, { checkWriteSupport: true }),
    ).rejects.toMatchObject({ code: 'DELTA_PROTOCOL', message: expect.stringContaining('cdc') });
  });

  it('refuses the feed on a table keeping its commit time in _commit_timestamp, naming the fix', async () => {
    const root = path.join(dir, 'cdf-reserved');
    const first = await stage([{ ord: 0, op: 'c', commitUs, row: toRow(newRow('1', rng(1))) }]);
    await expect(apply(root, [first], { tableProperties: CDF_ON })).rejects.toMatchObject({
      code: 'DELTA_PROTOCOL',
      message: expect.stringContaining('_commit_timestamp'),
      hint: expect.stringContaining('commit_timestamp_column'),
    });
    expect(await isDeltaTable(root)).toBe(false);
  });
});

describe('pruning by key statistics', () => {
  it('reads only the files whose key range holds a changed key', async () => {
    for (const properties of [undefined, DV_ON]) {
      const root = path.join(dir, `pruned-${properties ? 'dv' : 'cow'}`);
      const files: string[] = [];
      for (let block = 0; block < 3; block++) {
        const rows = Array.from({ length: 100 }, (_, i) => {
          commitUs += 1n;
          const id = String(block * 1000 + i);
          return {
            ord: i,
            op: 'c' as const,
            commitUs,
            row: toRow({ id, name: `n${id}`, qty: '1', price: '1.00' }),
          };
        });
        const { plan } = await apply(
          root,
          [await stage(rows)],
          properties ? { tableProperties: properties } : {},
        );
        files.push(...plan.actions.flatMap((a) => ('add' in a ? [a.add.path] : [])));
      }
      // The boundary keys of the middle file: its stats bounds are inclusive.
      const update = await stage(
        ['1000', '1099'].map((id, ord) => ({
          ord,
          op: 'u' as const,
          commitUs,
          row: toRow({ id, name: 'changed', qty: '2', price: '2.00' }),
        })),
      );
      const { plan } = await apply(root, [update]);
      expect(plan.readFiles).toEqual([files[1]]);
      expect(plan.metrics).toMatchObject({ updated: 2, inserted: 0, deleted: 0 });
      // Keys outside every file's range: an append, nothing is read.
      const append = await stage([
        { ord: 0, op: 'c', commitUs, row: toRow({ id: '5000', name: 'new', qty: '1', price: '1.00' }) },
      ]);
      expect((await apply(root, [append])).plan.readFiles).toEqual([]);
      const rows = await readTable(root);
      expect(rows).toHaveLength(301);
      expect(rows.filter((r) => r.includes('"changed"'))).toHaveLength(2);
    }
  });

  it('prunes on every column of a composite key', async () => {
    const source: TableSchema = {
      id: { schema: 'shop', table: 'stock' },
      columns: [
        { name: 'region', type: 'string', nullable: false, sourceType: 'varchar(8)' },
        { name: 'n', type: 'integer', nullable: false, sourceType: 'int' },
        { name: 'qty', type: 'integer', nullable: true, sourceType: 'int' },
      ],
      primaryKey: ['region', 'n'],
    };
    const root = path.join(dir, 'composite');
    const files: string[] = [];
    for (const [region, base] of [
      ['a', 0],
      ['a', 100],
      ['b', 0],
    ] as const) {
      const rows = Array.from({ length: 50 }, (_, i) => {
        commitUs += 1n;
        return { ord: i, op: 'c' as const, commitUs, row: { region, n: String(base + i), qty: '1' } };
      });
      const { plan } = await apply(root, [await stage(rows, source)], { source, tableProperties: DV_ON });
      files.push(...plan.actions.flatMap((a) => ('add' in a ? [a.add.path] : [])));
    }
    const change = await stage(
      [{ ord: 0, op: 'd', commitUs, row: { region: 'a', n: '120', qty: '1' } }],
      source,
    );
    const { plan } = await apply(root, [change], { source });
    expect(plan.readFiles).toEqual([files[1]]);
    expect(plan.metrics).toMatchObject({ deleted: 1 });
    expect(plan.deletionVectors).toEqual({ added: 1, updated: 0, removed: 0 });
  });
});

describe('pruning without usable bounds', () => {
  it('always reads files whose stats cannot bound the key', async () => {
    const source: TableSchema = {
      id: { schema: 'shop', table: 'tags' },
      columns: [
        { name: 'tag', type: 'string', nullable: false, sourceType: 'varchar(80)' },
        { name: 'qty', type: 'integer', nullable: true, sourceType: 'int' },
      ],
      primaryKey: ['tag'],
    };
    const root = path.join(dir, 'unbounded');
    const files: string[] = [];
    // Keys longer than 32 characters get no min/max; the second file has no stats at all.
    for (const [prefix, withoutStats] of [
      [`long-${'x'.repeat(40)}`, false],
      ['m', true],
      ['z', false],
    ] as const) {
      const rows = Array.from({ length: 10 }, (_, i) => {
        commitUs += 1n;
        return { ord: i, op: 'c' as const, commitUs, row: { tag: `${prefix}${i}`, qty: '1' } };
      });
      const { plan } = await apply(root, [await stage(rows, source)], {
        source,
        tableProperties: DV_ON,
        withoutStats,
      });
      files.push(...plan.actions.flatMap((a) => ('add' in a ? [a.add.path] : [])));
    }
    const change = await stage(
      [`long-${'x'.repeat(40)}3`, 'm5'].map((tag, ord) => ({
        ord,
        op: 'u' as const,
        commitUs,
        row: { tag, qty: '2' },
      })),
      source,
    );
    const { plan } = await apply(root, [change], { source });
    expect(plan.readFiles).toEqual([files[0], files[1]]);
    expect(plan.metrics).toMatchObject({ updated: 2, inserted: 0 });
    // The file without stats falls back to its footer for the row count; two DVs, one file.
    expect(plan.deletionVectors).toEqual({ added: 2, updated: 0, removed: 0 });
  });
});

function newRow(id: string, random: () => number): Omit<ModelRow, 'us'> {
  const names = [null, 'plain', "it's", 'ünïcødé', 'x'.repeat(40)];
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

function toRow(r: Omit<ModelRow, 'us'>): Row {
  return { id: r.id, name: r.name, qty: r.qty, price: r.price };
}

describe('columns a change leaves unchanged (PostgreSQL unchanged TOAST values)', () => {
  const row = (id: number, name: string | null, qty: number, price: string): Row => ({
    id: String(id),
    name,
    qty: String(qty),
    price,
  });
  const us = (n: number) => String(1_700_000_000_000_000n + BigInt(n));

  for (const [label, properties] of [
    ['copy-on-write', {}],
    ['deletion vectors', DV_ON],
  ] as const) {
    it(`keep the stored value, or the batch's latest sent value, never NULL (${label})`, async () => {
      const root = path.join(dir, `unchanged-${label.replace(' ', '-')}`);
      const at = (op: StagedOp, n: number, r: Row, unchanged?: string[]): StagedRow => ({
        ord: n,
        op,
        commitUs: BigInt(us(n)),
        row: r,
        ...(unchanged ? { unchanged } : {}),
      });
      await apply(
        root,
        [await stage([at('c', 1, row(1, 'big-1', 1, '1.00')), at('c', 2, row(2, 'big-2', 2, '2.00'))])],
        { tableProperties: properties },
      );
      // Key 1: name left unchanged, then in a later segment of the same batch set to NULL on purpose.
      // Key 2: name left unchanged by two updates; the stored value must survive both.
      // Key 3: inserted and then updated with name unchanged, all in this batch.
      const { id: _1, name: _n1, ...qtyOnly1 } = row(1, null, 10, '1.10');
      const { id: _2, name: _n2, ...qtyOnly2 } = row(2, null, 20, '2.20');
      const first = await stage([
        at('u', 1, { id: '1', ...qtyOnly1 }, ['name']),
        at('u', 2, { id: '2', ...qtyOnly2 }, ['name']),
        at('c', 3, row(3, 'big-3', 3, '3.00')),
        at('u', 4, { id: '3', qty: '30', price: '3.30' }, ['name']),
      ]);
      const second = await stage([
        at('u', 1, row(1, null, 11, '1.11')),
        at('u', 2, { id: '2', qty: '21', price: '2.21' }, ['name']),
      ]);
      const { plan } = await apply(root, [first, second], { partial: true });
      expect(plan.metrics).toMatchObject({ inserted: 1, updated: 2, deleted: 0 });
      expect(await readTable(root)).toEqual(
        [
          ['1', null, '11', '1.11', us(1)],
          ['2', 'big-2', '21', '2.21', us(2)],
          ['3', 'big-3', '30', '3.30', us(4)],
        ].map((r) => JSON.stringify(r)),
      );
    });
  }
});

describe('staged text to wide whole-number decimals', () => {
  it('reads BIGINT UNSIGNED (decimal(20,0)) and decimal(38,0) exactly, as a direct cast does', async () => {
    await using db = await DuckDb.open();
    const values = ['0', '-1', '18446744073709551615', '99999999999999999999', '1.5', '-2.5', ' 7', null];
    const column = (type: string) => fromStaged({ name: 'v', type, nullable: true, metadata: {} }, true);
    for (const type of ['decimal(20,0)', 'decimal(38,0)']) {
      expect(column(type)).toContain('HUGEINT');
      const rows = await db.rows(
        `SELECT CAST(${column(type)} AS VARCHAR) AS ours, CAST(CAST(v AS ${type.toUpperCase()}) AS VARCHAR) AS direct
           FROM (SELECT unnest([${values.map((v) => (v === null ? 'NULL' : `'${v}'`)).join(', ')}]::VARCHAR[]) AS v)`,
      );
      for (const r of rows) expect(r['ours']).toBe(r['direct']);
      expect(rows.map((r) => r['ours'])).toContain('18446744073709551615');
    }
  });
});
