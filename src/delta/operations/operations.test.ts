import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AddFile, RawAction } from '../actions.js';
import { commit, commitWithRetry, DEFAULT_PROTOCOL, newTableMetadata } from '../commit.js';
import { withConnection } from '../duckdb.js';
import { commitFileName } from '../log-files.js';
import { scanSql } from '../scan.js';
import type { StructType } from '../schema.js';
import { loadSnapshot, type Snapshot } from '../snapshot.js';
import { shallowClone } from './clone.js';
import { tableDetail, tableFeatures } from './detail.js';
import { tableHistory } from './history.js';
import { optimize } from './optimize.js';
import { normaliseTableProperty, setTableProperties, unsetTableProperties } from './properties.js';
import { restoreTable } from './restore.js';
import { parseByteSize } from './table-config.js';
import { vacuum } from './vacuum.js';
import { writeDataFile } from './write-files.js';
import { bitsPerColumn, interleaveBitsSql } from './zorder.js';

const CORPUS = '/work/shared/conformance/delta';
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tributary-ops-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const schema: StructType = {
  type: 'struct',
  fields: [
    { name: 'id', type: 'long', nullable: false, metadata: {} },
    { name: 'x', type: 'double', nullable: true, metadata: {} },
    { name: 'y', type: 'double', nullable: true, metadata: {} },
    { name: 'region', type: 'string', nullable: true, metadata: {} },
  ],
};

function conn<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
  return withConnection(async (c) => {
    await c.run("SET TimeZone = 'UTC'");
    return fn(c);
  });
}

async function createTable(name: string, options: { partitioned?: boolean } = {}): Promise<string> {
  const root = path.join(dir, name);
  const metadata = newTableMetadata(schema, options.partitioned ? { partitionColumns: ['region'] } : {});
  await commit(root, -1, [{ protocol: DEFAULT_PROTOCOL }, { metaData: metadata }], {
    operation: 'CREATE TABLE',
  });
  return root;
}

/** Appends one file per region holding rows `ids` (x = id, y = id * 7 mod 101). */
async function append(root: string, ids: readonly number[], region: string | null = 'a'): Promise<number> {
  const snapshot = await loadSnapshot(root);
  const partitioned = snapshot.metadata.partitionColumns.length > 0;
  const add = await conn((c) =>
    writeDataFile(c, {
      snapshot,
      query: `SELECT id::BIGINT AS id, id::DOUBLE AS x, ((id * 7) % 101)::DOUBLE AS y, ${region === null ? 'NULL' : `'${region}'`} AS region FROM unnest([${ids.join(',')}]) AS t(id)`,
      partitionValues: partitioned ? { region } : {},
      dataChange: true,
    }),
  );
  // A blind append, as a writer does it: moved past concurrent commits.
  const result = await commitWithRetry(
    root,
    async () => ({
      actions: [{ add }],
      request: { operation: 'WRITE', operationParameters: { mode: 'Append' } },
    }),
    { snapshot },
  );
  return result.version;
}

async function rows(snapshot: Snapshot, columns = '*'): Promise<string[]> {
  return conn(async (c) => {
    const sql = await scanSql(snapshot, c);
    const r = await c.runAndReadAll(`SELECT ${columns} FROM (${sql}) ORDER BY ALL`);
    return r.getRowsJS().map((row) => row.map((v) => (v === null ? 'null' : String(v))).join('|'));
  });
}

async function commitActions(root: string, version: number): Promise<RawAction[]> {
  const text = await readFile(path.join(root, '_delta_log', commitFileName(version)), 'utf8');
  return text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as RawAction);
}

function info(actions: RawAction[]): Record<string, unknown> {
  return actions[0]?.commitInfo as Record<string, unknown>;
}

/** Sets every commit file's mtime: version v at `start + v * step` ms. */
async function ageLog(root: string, start: number, step: number): Promise<void> {
  const log = path.join(root, '_delta_log');
  for (const name of await readdir(log)) {
    const m = /^(\d{20})\.json$/.exec(name);
    if (!m) continue;
    const t = (start + Number(m[1]) * step) / 1000;
    await utimes(path.join(log, name), t, t);
  }
}

async function ageDataFiles(root: string, at: number): Promise<void> {
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.name === '_delta_log') continue;
      const full = path.join(d, e.name);
      if (e.isDirectory()) await walk(full);
      else await utimes(full, at / 1000, at / 1000);
    }
  };
  await walk(root);
}

async function copyCorpus(relative: string, name: string): Promise<string> {
  const target = path.join(dir, name);
  await cp(path.join(CORPUS, relative), target, { recursive: true });
  // The corpus is read-only; the copies must be writable.
  const chmod = async (d: string): Promise<void> => {
    const { chmod: ch } = await import('node:fs/promises');
    await ch(d, 0o755);
    for (const e of await readdir(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) await chmod(full);
      else await ch(full, 0o644);
    }
  };
  await chmod(target);
  return target;
}

function statsOf(add: AddFile): {
  numRecords: number;
  minValues: Record<string, number>;
  maxValues: Record<string, number>;
} {
  return JSON.parse(add.stats ?? '{}');
}

describe('DESCRIBE HISTORY and DETAIL', () => {
  it('lists every commit newest first with Databricks columns, and describes the table', async () => {
    const root = await createTable('history', { partitioned: true });
    await append(root, [1, 2], 'a');
    await append(root, [3], 'b');
    const history = await tableHistory(root);
    expect(history.map((h) => [h.version, h.operation, h.readVersion])).toEqual([
      [2, 'WRITE', 1],
      [1, 'WRITE', 0],
      [0, 'CREATE TABLE', null],
    ]);
    expect(history[0]).toMatchObject({
      operationParameters: { mode: 'Append' },
      isBlindAppend: true,
      engineInfo: expect.stringMatching(/^Tributary\//),
      userId: null,
    });
    expect(history[0]?.timestamp).toBeGreaterThan(history[1]?.timestamp as number);
    expect((await tableHistory(root, { limit: 1 })).map((h) => h.version)).toEqual([2]);

    const detail = tableDetail(await loadSnapshot(root), { name: 'lake.bronze.history' });
    expect(detail).toMatchObject({
      format: 'delta',
      name: 'lake.bronze.history',
      location: root,
      partitionColumns: ['region'],
      numFiles: 2,
      minReaderVersion: 1,
      minWriterVersion: 2,
      tableFeatures: ['appendOnly', 'invariants'],
      statistics: { numDeletionVectors: 0, numRowsDeletedByDeletionVectors: 0 },
    });
    expect(detail.sizeInBytes).toBeGreaterThan(0);
    expect(
      tableFeatures({
        minReaderVersion: 3,
        minWriterVersion: 7,
        readerFeatures: ['deletionVectors'],
        writerFeatures: ['deletionVectors', 'appendOnly'],
      }),
    ).toEqual(['appendOnly', 'deletionVectors']);
  });

  it('reads commitInfo fields written by Spark', async () => {
    const history = await tableHistory(`${CORPUS}/kernel-rs/golden/deltalog-commit-info/delta`);
    expect(history[0]).toMatchObject({
      version: 0,
      userId: 'user_0',
      userName: 'username_0',
      job: { jobId: 'job_id_0' },
      notebook: { notebookId: 'notebook_id_0' },
      clusterId: 'cluster_id_0',
      isolationLevel: 'default',
      userMetadata: 'foo',
    });
  });
});

describe('OPTIMIZE', () => {
  it('bin-packs the small files of each partition, as a dataChange=false rearrangement', async () => {
    const root = await createTable('compact', { partitioned: true });
    for (const ids of [[1, 2], [3], [4, 5, 6]]) await append(root, ids, 'a');
    for (const ids of [[7], [8]]) await append(root, ids, 'b');
    await append(root, [9], 'c');
    const before = await loadSnapshot(root);
    const result = await optimize(root);
    expect(result.version).toBe(before.version + 1);
    expect(result.metrics).toMatchObject({
      numFilesRemoved: 5,
      numFilesAdded: 2,
      partitionsOptimized: 2,
      totalConsideredFiles: 6,
    });
    const after = await loadSnapshot(root);
    expect(after.files).toHaveLength(3);
    expect(await rows(after)).toEqual(await rows(before));
    const actions = await commitActions(root, result.version as number);
    expect(info(actions)).toMatchObject({
      operation: 'OPTIMIZE',
      operationParameters: { predicate: '[]', zOrderBy: '[]', auto: 'false' },
      isBlindAppend: false,
      isolationLevel: 'SnapshotIsolation',
      operationMetrics: { numRemovedFiles: '5', numAddedFiles: '2' },
    });
    for (const a of actions) {
      if (a.add)
        expect(a.add).toMatchObject({ dataChange: false, partitionValues: { region: expect.any(String) } });
      if (a.remove) expect(a.remove).toMatchObject({ dataChange: false, extendedFileMetadata: true });
    }
    const added = after.files.find((f) => f.partitionValues['region'] === 'a') as AddFile;
    expect(added.path).toMatch(/^region=a\/part-/);
    expect(statsOf(added)).toMatchObject({ numRecords: 6, minValues: { id: 1 }, maxValues: { id: 6 } });
    // Idempotent: nothing left to compact.
    expect((await optimize(root)).version).toBeNull();
  });

  it('restricts to partitions matching WHERE and refuses predicates on data columns', async () => {
    const root = await createTable('compact-where', { partitioned: true });
    for (const region of ['a', 'a', 'b', 'b']) await append(root, [1], region);
    const result = await optimize(root, { where: "region = 'b'" });
    expect(result.metrics.numFilesRemoved).toBe(2);
    const after = await loadSnapshot(root);
    expect(after.files.filter((f) => f.partitionValues['region'] === 'a')).toHaveLength(2);
    expect(info(await commitActions(root, result.version as number))['operationParameters']).toMatchObject({
      predicate: `["region = 'b'"]`,
    });
    await expect(optimize(root, { where: 'id > 3' })).rejects.toMatchObject({
      code: 'SQL_ERROR',
      message: expect.stringContaining("partition columns (region); 'id' is not one"),
    });
  });

  it('packs bins up to the target size', async () => {
    const root = await createTable('compact-target');
    for (let i = 0; i < 6; i++) await append(root, [i * 10, i * 10 + 1]);
    const size = (await loadSnapshot(root)).files[0]?.size as number;
    const result = await optimize(root, { targetFileSize: size * 2 + 1 });
    expect(result.metrics).toMatchObject({ numFilesRemoved: 6, numFilesAdded: 3 });
    expect(parseByteSize('128mb')).toBe(134_217_728);
    expect(parseByteSize('1.5k')).toBe(1536);
    expect(parseByteSize('lots')).toBeUndefined();
  });

  it('ZORDER BY clusters on every column: file ranges overlap far less than after bin-packing', async () => {
    const build = async (name: string) => {
      const root = await createTable(name);
      // 16 files of 250 rows each, x and y spread independently over [0, 1000).
      const snapshot = await loadSnapshot(root);
      const adds: AddFile[] = [];
      for (let f = 0; f < 16; f++) {
        adds.push(
          await conn((c) =>
            writeDataFile(c, {
              snapshot,
              query: `SELECT i::BIGINT AS id, ((i * 7919) % 1000)::DOUBLE AS x, ((i * 104729 + 13) % 997)::DOUBLE AS y, 'a' AS region FROM range(${f * 250}, ${(f + 1) * 250}) AS t(i)`,
              partitionValues: {},
              dataChange: true,
            }),
          ),
        );
      }
      await commit(
        root,
        snapshot.version,
        adds.map((add) => ({ add })),
        { operation: 'WRITE' },
      );
      return root;
    };
    const zRoot = await build('zorder');
    const binRoot = await build('binpack');
    const target = ((await loadSnapshot(zRoot)).files.reduce((s, f) => s + f.size, 0) / 8) | 0;
    const z = await optimize(zRoot, { zOrderBy: ['x', 'Y'], targetFileSize: target });
    const bins = await optimize(binRoot, { targetFileSize: target * 1.2 });
    expect(z.metrics.numFilesAdded).toBeGreaterThanOrEqual(6);
    expect(bins.metrics.numFilesAdded).toBeGreaterThanOrEqual(6);
    expect(info(await commitActions(zRoot, z.version as number))['operationParameters']).toMatchObject({
      zOrderBy: '["x","y"]',
    });

    const boxes = async (root: string) =>
      (await loadSnapshot(root)).files.map((f) => {
        const s = statsOf(f);
        return { x: [s.minValues['x'], s.maxValues['x']], y: [s.minValues['y'], s.maxValues['y']] } as {
          x: [number, number];
          y: [number, number];
        };
      });
    const overlaps = (b: Awaited<ReturnType<typeof boxes>>) => {
      let n = 0;
      for (let i = 0; i < b.length; i++)
        for (let j = i + 1; j < b.length; j++) {
          const p = b[i] as (typeof b)[number];
          const q = b[j] as (typeof b)[number];
          if (p.x[0] <= q.x[1] && q.x[0] <= p.x[1] && p.y[0] <= q.y[1] && q.y[0] <= p.y[1]) n++;
        }
      return n / ((b.length * (b.length - 1)) / 2);
    };
    const zBoxes = await boxes(zRoot);
    const binBoxes = await boxes(binRoot);
    expect(overlaps(binBoxes)).toBe(1); // every bin spans the whole square
    expect(overlaps(zBoxes)).toBeLessThan(0.5);
    // Not a sort on x alone: the y ranges shrink too.
    const meanWidth = (b: typeof zBoxes, axis: 'x' | 'y') =>
      b.reduce((s, r) => s + r[axis][1] - r[axis][0], 0) / b.length;
    expect(meanWidth(zBoxes, 'x')).toBeLessThan(700);
    expect(meanWidth(zBoxes, 'y')).toBeLessThan(700);
    expect(await rows(await loadSnapshot(zRoot), 'count(*), sum(id), sum(x), sum(y)')).toEqual(
      await rows(await loadSnapshot(binRoot), 'count(*), sum(id), sum(x), sum(y)'),
    );
  });

  it('interleaves bits most significant first', async () => {
    expect(bitsPerColumn(1)).toBe(32);
    expect(bitsPerColumn(3)).toBe(21);
    const key = await conn(async (c) => {
      const r = await c.runAndReadAll(
        `SELECT ${interleaveBitsSql(['3::UBIGINT', '0::UBIGINT'], 2)}, ${interleaveBitsSql(['0::UBIGINT', '3::UBIGINT'], 2)}`,
      );
      return r.getRowsJS()[0]?.map(Number);
    });
    // a = 11, b = 00 → a1 b1 a0 b0 = 1010; a = 00, b = 11 → 0101.
    expect(key).toEqual([10, 5]);
  });

  it('refuses ZORDER BY a partition column or an unknown one', async () => {
    const root = await createTable('zorder-bad', { partitioned: true });
    await append(root, [1], 'a');
    await expect(optimize(root, { zOrderBy: ['region'] })).rejects.toMatchObject({
      message: expect.stringContaining('partition column'),
    });
    await expect(optimize(root, { zOrderBy: ['nope'] })).rejects.toMatchObject({
      message: expect.stringContaining("'nope' does not exist"),
    });
  });

  it('rewrites a column-mapped table under its physical names and field ids', async () => {
    for (const mode of ['name', 'id']) {
      const root = await copyCorpus(
        `kernel-rs/golden/table-with-columnmapping-mode-${mode}/delta`,
        `cm-${mode}`,
      );
      const before = await loadSnapshot(root);
      const expected = await rows(before);
      const result = await optimize(root);
      expect(result.metrics.numFilesAdded).toBe(1);
      const after = await loadSnapshot(root);
      expect(await rows(after)).toEqual(expected);
      const file = after.dataFilePath(after.files[0] as AddFile);
      const columns = await conn(async (c) =>
        (
          await c.runAndReadAll(
            `SELECT name, field_id FROM parquet_schema('${file}') WHERE name LIKE 'col-%'`,
          )
        ).getRowsJS(),
      );
      const physical = before.schema.fields.map((f) => f.metadata['delta.columnMapping.physicalName']);
      expect(columns.map((c) => c[0])).toEqual(expect.arrayContaining(physical));
      if (mode === 'id') expect(Number(columns.find((c) => c[0] === physical[0])?.[1])).toBe(1);
      expect(Object.keys(statsOf(after.files[0] as AddFile).minValues)).toContain(physical[2]);
    }
  });

  it('drops deleted rows of files with deletion vectors (partitioned, column-mapped, checkpointed)', async () => {
    const root = await copyCorpus('kernel-rs/golden/dv-with-columnmapping/delta', 'dv-cm');
    const before = await loadSnapshot(root);
    expect(before.files.some((f) => f.deletionVector)).toBe(true);
    const expected = await rows(before);
    const result = await optimize(root);
    const after = await loadSnapshot(root);
    expect(result.metrics.numDeletionVectorsRemoved).toBeGreaterThan(0);
    expect(after.files.some((f) => f.deletionVector)).toBe(false);
    expect(await rows(after)).toEqual(expected);
    expect(after.files.every((f) => f.path.startsWith('col-60c949ca-b8bc-4330-b931-b73fb4c60037='))).toBe(
      true,
    );
  });
});

describe('VACUUM', () => {
  /** A table whose history is days old: v0 create, v1 add A, v2 add B, v3 remove A (6 days ago). */
  async function oldTable(name: string, now: number): Promise<{ root: string; a: string; b: string }> {
    const root = await createTable(name, { partitioned: true });
    await append(root, [1], 'a');
    await append(root, [2], 'b');
    const snapshot = await loadSnapshot(root);
    const a = snapshot.files.find((f) => f.partitionValues['region'] === 'a') as AddFile;
    const b = snapshot.files.find((f) => f.partitionValues['region'] === 'b') as AddFile;
    await commit(
      root,
      snapshot.version,
      [{ remove: { path: a.path, deletionTimestamp: now - 6 * DAY, dataChange: true } }],
      {
        operation: 'DELETE',
      },
    );
    // v0..v3 at 10, 9, 8 and 6 days ago.
    await ageLog(root, now - 10 * DAY, 0);
    const log = path.join(root, '_delta_log');
    for (const [v, t] of [
      [1, 9],
      [2, 8],
      [3, 6],
    ] as const) {
      await utimes(path.join(log, commitFileName(v)), (now - t * DAY) / 1000, (now - t * DAY) / 1000);
    }
    await ageDataFiles(root, now - 9 * DAY);
    return { root, a: snapshot.dataFilePath(a), b: snapshot.dataFilePath(b) };
  }

  it('refuses a retention below the table default unless the check is off', async () => {
    const now = Date.now();
    const { root } = await oldTable('vacuum-check', now);
    await expect(vacuum(root, { retentionHours: 1, now })).rejects.toMatchObject({
      code: 'SQL_ERROR',
      message: expect.stringContaining('shorter than'),
      hint: expect.stringContaining('retentionDurationCheck.enabled = false'),
    });
    expect(
      (await vacuum(root, { retentionHours: 1, retentionCheck: false, dryRun: true, now })).files,
    ).toHaveLength(1);
  });

  it('keeps files any version within retention references, deletes older unreferenced ones, logs START/END', async () => {
    const now = Date.now();
    const { root, a, b } = await oldTable('vacuum', now);
    const orphanOld = path.join(root, 'region=a', 'part-00000-orphan-old.snappy.parquet');
    const orphanNew = path.join(root, 'region=a', 'part-00000-orphan-new.snappy.parquet');
    await writeFile(orphanOld, 'x');
    await writeFile(orphanNew, 'x');
    await utimes(orphanOld, (now - 30 * DAY) / 1000, (now - 30 * DAY) / 1000);
    // Things VACUUM must never touch, however old.
    const hidden = path.join(root, 'region=a', '.part-00000-orphan-old.snappy.parquet.crc');
    const underscore = path.join(root, '_tributary_notes', 'keep.parquet');
    const volume = path.join(root, 'landing', 'gw', 'seg-000000000001', 'x.parquet');
    const nestedTable = path.join(root, 'nested', 'part-0.parquet');
    for (const f of [hidden, underscore, volume, nestedTable]) {
      await mkdir(path.dirname(f), { recursive: true });
      await writeFile(f, 'x');
      await utimes(f, (now - 30 * DAY) / 1000, (now - 30 * DAY) / 1000);
    }
    await writeFile(path.join(root, 'landing', '.tributary-volume'), 'lake.bronze.landing\n');
    await mkdir(path.join(root, 'nested', '_delta_log'), { recursive: true });

    // Default 7 days: v3 (6 days ago) is within retention, and v2 (8 days) was current at the cutoff: A is
    // still referenced by v2, so only the untracked old orphan goes.
    const dry = await vacuum(root, { dryRun: true, now });
    expect(dry.files).toEqual([orphanOld]);
    const versionBefore = (await loadSnapshot(root)).version;
    expect((await loadSnapshot(root)).version).toBe(versionBefore);

    // 5 days: v3 is the version current at the cutoff, and A is no longer in any retained version.
    const real = await vacuum(root, { retentionHours: 120, retentionCheck: false, now });
    expect([...real.files].sort()).toEqual([a, orphanOld].sort());
    for (const f of [b, orphanNew, hidden, underscore, volume, nestedTable])
      await expect(stat(f)).resolves.toBeDefined();
    await expect(stat(a)).rejects.toThrow();
    const history = await tableHistory(root, { limit: 2 });
    expect(history.map((h) => h.operation)).toEqual(['VACUUM END', 'VACUUM START']);
    expect(history[1]?.operationParameters).toMatchObject({
      specifiedRetentionMillis: String(120 * HOUR),
      retentionCheckEnabled: 'false',
    });
    expect(history[1]?.operationMetrics).toMatchObject({ numFilesToDelete: '2' });
    expect(history[0]?.operationParameters).toMatchObject({ status: 'COMPLETED' });
    expect(history[0]?.operationMetrics).toMatchObject({ numDeletedFiles: '2' });
    expect(await rows(await loadSnapshot(root))).toEqual(['2|2|14|b']);
  });

  it('keeps deletion vector files that are referenced, deletes replaced ones', async () => {
    const root = await copyCorpus('kernel-rs/golden/dv-partitioned-with-checkpoint/delta', 'dv-vacuum');
    const snapshot = await loadSnapshot(root);
    const now = Date.now() + 30 * DAY;
    const result = await vacuum(root, { dryRun: true, now, retentionHours: 0, retentionCheck: false });
    const live = new Set(snapshot.files.map((f) => snapshot.dataFilePath(f)));
    expect(result.files.some((f) => live.has(f))).toBe(false);
    const referencedDvs = snapshot.files.filter((f) => f.deletionVector).length;
    const dvFiles = (await readdir(root)).filter((n) => n.startsWith('deletion_vector_'));
    const deletedDvs = result.files.filter((f) => path.basename(f).startsWith('deletion_vector_'));
    expect(dvFiles.length - deletedDvs.length).toBeGreaterThan(0);
    expect(dvFiles.length - deletedDvs.length).toBeLessThanOrEqual(referencedDvs);
  });
});

describe('RESTORE', () => {
  it('restores an older version as a new commit with metrics, and fails clearly when files were vacuumed', async () => {
    const root = await createTable('restore', { partitioned: true });
    await append(root, [1, 2], 'a'); // v1
    await append(root, [3], 'b'); // v2
    await optimize(root, { targetFileSize: 1 << 20, minNumFiles: 1 }); // no-op: one file per partition
    const v2 = await loadSnapshot(root);
    await append(root, [4], 'a'); // v3
    await setTableProperties(root, { 'delta.appendOnly': 'false', owner: 'me' }); // v4
    const result = await restoreTable(root, { version: 1 });
    expect(result).toMatchObject({ restoredVersion: 1, version: 5 });
    expect(result.metrics).toMatchObject({
      numRestoredFiles: 0,
      numRemovedFiles: 2,
      numOfFilesAfterRestore: 1,
    });
    const restored = await loadSnapshot(root);
    expect(await rows(restored)).toEqual(await rows(await loadSnapshot(root, { version: 1 })));
    expect(restored.metadata.configuration).toEqual({});
    const actions = await commitActions(root, 5);
    expect(info(actions)).toMatchObject({
      operation: 'RESTORE',
      operationParameters: { version: '1' },
      operationMetrics: { numRemovedFiles: '2' },
    });
    expect(
      actions.filter((a) => a.remove).every((a) => (a.remove as { dataChange: boolean }).dataChange),
    ).toBe(true);

    // Forward again, by timestamp.
    const back = await restoreTable(root, { timestamp: new Date(v2.timestamp) });
    expect(back.restoredVersion).toBe(2);
    expect(back.metrics).toMatchObject({ numRestoredFiles: 1, numRemovedFiles: 0 });
    expect(await rows(await loadSnapshot(root))).toEqual(await rows(v2));
    const readd = (await commitActions(root, back.version)).find((a) => a.add)?.add as AddFile;
    expect(readd.dataChange).toBe(true);

    // Vacuum everything unreferenced now, then restoring v3 (which had the file of id 4) must fail.
    await ageDataFiles(root, Date.now() - 30 * DAY);
    await vacuum(root, { retentionHours: 0, retentionCheck: false, now: Date.now() + DAY });
    await expect(restoreTable(root, { version: 3 })).rejects.toMatchObject({
      code: 'DELTA_CORRUPT',
      message: expect.stringMatching(/Cannot restore .* to version 3: 1 of its files no longer exist/),
    });
  });

  it('restores a table with deletion vectors (same file, other DV)', async () => {
    const root = await copyCorpus('kernel-rs/data/table-with-dv-small', 'restore-dv');
    expect(await rows(await loadSnapshot(root))).toHaveLength(8);
    await restoreTable(root, { version: 0 });
    const snapshot = await loadSnapshot(root);
    expect(await rows(snapshot)).toHaveLength(10);
    expect(snapshot.files[0]?.deletionVector).toBeUndefined();
  });
});

describe('SHALLOW CLONE', () => {
  it('creates a table referencing the source files by absolute path, independent of the source', async () => {
    const source = await createTable('clone-src', { partitioned: true });
    await append(source, [1], 'a');
    await append(source, [2], 'b');
    const v1 = await loadSnapshot(source, { version: 1 });
    const target = path.join(dir, 'clone-dst');
    const result = await shallowClone(v1, target, { properties: { owner: 'me' }, sourceName: 'lake.s.src' });
    expect(result).toMatchObject({
      version: 0,
      sourceVersion: 1,
      metrics: { sourceNumOfFiles: 1, numCopiedFiles: 0 },
    });
    const clone = await loadSnapshot(target);
    expect(clone.metadata.id).not.toBe(v1.metadata.id);
    expect(clone.metadata.configuration).toEqual({ owner: 'me' });
    expect(clone.files[0]?.path).toMatch(/^file:\/\/\//);
    expect(await rows(clone)).toEqual(await rows(v1));
    expect(info(await commitActions(target, 0))).toMatchObject({
      operation: 'CLONE',
      operationParameters: { source: 'lake.s.src', sourceVersion: '1', isShallow: 'true' },
    });
    // The clone's own VACUUM never deletes the source's files.
    await vacuum(target, { retentionHours: 0, retentionCheck: false, now: Date.now() + 30 * DAY });
    expect(await rows(await loadSnapshot(target))).toEqual(await rows(v1));
    await expect(shallowClone(v1, target)).rejects.toMatchObject({ code: 'SQL_ERROR' });
    expect((await shallowClone(v1, target, { ifNotExists: true })).version).toBeNull();
    const replaced = await shallowClone(await loadSnapshot(source), target, { replace: true });
    // v1 and v2 are the clone's VACUUM START/END.
    expect(replaced).toMatchObject({ version: 3, metrics: { numRemovedFiles: 0 } });
    expect(await rows(await loadSnapshot(target))).toEqual(await rows(await loadSnapshot(source)));
    expect((await loadSnapshot(target)).metadata.id).toBe(clone.metadata.id);
  });

  it('makes table-relative deletion vectors absolute', async () => {
    const root = await copyCorpus('kernel-rs/data/table-with-dv-small', 'clone-dv-src');
    const target = path.join(dir, 'clone-dv');
    await shallowClone(await loadSnapshot(root), target);
    const clone = await loadSnapshot(target);
    expect(clone.files[0]?.deletionVector).toMatchObject({
      storageType: 'p',
      pathOrInlineDv: expect.stringMatching(
        /^file:.*deletion_vector_61d16c75-6994-46b7-a15b-8b538852e50e\.bin$/,
      ),
    });
    expect(await rows(clone)).toHaveLength(8);
  });
});

describe('TBLPROPERTIES', () => {
  it('sets and unsets properties, checking delta.* keys and values', async () => {
    const root = await createTable('props');
    const set = await setTableProperties(root, {
      'delta.autoOptimize.optimizeWrite': 'TRUE',
      'Delta.AutoOptimize.AutoCompact': 'true',
      'delta.deletedFileRetentionDuration': 'interval 10 days',
      comment: 'bronze customers',
      owner: 'data-eng',
    });
    expect(set.version).toBe(1);
    let snapshot = await loadSnapshot(root);
    expect(snapshot.metadata.configuration).toEqual({
      'delta.autoOptimize.optimizeWrite': 'true',
      'delta.autoOptimize.autoCompact': 'true',
      'delta.deletedFileRetentionDuration': 'interval 10 days',
      owner: 'data-eng',
    });
    expect(snapshot.metadata.description).toBe('bronze customers');
    expect(info(await commitActions(root, 1))).toMatchObject({ operation: 'SET TBLPROPERTIES' });
    expect((await setTableProperties(root, { owner: 'data-eng' })).version).toBeNull();

    await unsetTableProperties(root, ['owner', 'delta.autoOptimize.autoCompact']);
    snapshot = await loadSnapshot(root);
    expect(Object.keys(snapshot.metadata.configuration).sort()).toEqual([
      'delta.autoOptimize.optimizeWrite',
      'delta.deletedFileRetentionDuration',
    ]);
    expect(info(await commitActions(root, 2))).toMatchObject({
      operation: 'UNSET TBLPROPERTIES',
      operationParameters: { properties: '["owner","delta.autoOptimize.autoCompact"]', ifExists: 'false' },
    });
    await expect(unsetTableProperties(root, ['nope'])).rejects.toMatchObject({ code: 'SQL_ERROR' });
    expect((await unsetTableProperties(root, ['nope'], { ifExists: true })).version).toBeNull();

    expect(() => normaliseTableProperty('delta.bogus', 'x')).toThrow(
      expect.objectContaining({ code: 'SQL_ERROR' }),
    );
    expect(() => normaliseTableProperty('delta.appendOnly', 'yes')).toThrow(/true or false/);
    expect(() => normaliseTableProperty('delta.logRetentionDuration', 'interval 1 month')).toThrow(
      /interval/,
    );
    expect(() => normaliseTableProperty('delta.enableRowTracking', 'true')).toThrow(
      expect.objectContaining({ code: 'DELTA_PROTOCOL' }),
    );
    expect(normaliseTableProperty('delta.enableRowTracking', 'false')).toEqual([
      'delta.enableRowTracking',
      'false',
    ]);
    // Written by the bronze merges since they write _change_data files.
    expect(normaliseTableProperty('delta.enableChangeDataFeed', 'TRUE')).toEqual([
      'delta.enableChangeDataFeed',
      'true',
    ]);
    expect(normaliseTableProperty('delta.targetFileSize', '64mb')).toEqual(['delta.targetFileSize', '64mb']);
  });

  it('upgrades the protocol when a writer-7 table needs the feature a property turns on', async () => {
    const root = await copyCorpus('kernel-rs/data/table-with-dv-small', 'props-dv');
    await setTableProperties(root, { 'delta.appendOnly': 'true' });
    const snapshot = await loadSnapshot(root);
    expect(snapshot.protocol.writerFeatures).toEqual(
      expect.arrayContaining(['deletionVectors', 'appendOnly']),
    );
    // RESTORE would remove files from an append-only table.
    await expect(restoreTable(root, { version: 0 })).rejects.toMatchObject({ code: 'DELTA_PROTOCOL' });
  });
});

describe('concurrency', () => {
  it('racing OPTIMIZEs and an append all end well: one rewrite, the other finds nothing left', async () => {
    const root = await createTable('race', { partitioned: true });
    for (let i = 0; i < 3; i++) await append(root, [i], 'a');
    const [first, second] = await Promise.all([optimize(root), optimize(root), append(root, [9], 'b')]);
    const versions = [first?.version, second?.version];
    expect(versions.filter((v) => v !== null)).toHaveLength(1);
    const snapshot = await loadSnapshot(root);
    expect(await rows(snapshot, 'id')).toEqual(['0', '1', '2', '9']);
    expect(snapshot.files.filter((f) => f.partitionValues['region'] === 'a')).toHaveLength(1);
  });
});
