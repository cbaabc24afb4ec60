import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../testing/seeded-random.js';
import { type AddFile, deletionVectorId } from './actions.js';
import {
  deletionVectorFileBytes,
  looseBoundsStats,
  readdWithDeletionVector,
  removeFileAction,
  unionRowIndexSets,
  writeDeletionVectors,
  z85Uuid,
} from './deletion-vector-writer.js';
import { crc32, deletionVectorFile, readDeletionVector } from './deletion-vectors.js';
import { RowIndexSet } from './roaring.js';

let root: string;

beforeAll(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'dv-writer-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const SETS = [
  RowIndexSet.of([0]),
  RowIndexSet.of([3, 4, 5, 9, 70_000, 70_001]),
  RowIndexSet.fromSortedRanges([[0, 1_000_000]]),
  // Dense enough for bitset containers, and a row beyond 2^32 (second bucket).
  RowIndexSet.fromSortedRanges([
    ...Array.from({ length: 5000 }, (_, i) => [i * 2, i * 2 + 1] as [number, number]),
    [2 ** 32 + 5, 2 ** 32 + 7],
  ]),
];

describe('writeDeletionVectors', () => {
  it('writes one file per call whose DVs read back with their cardinality and CRC', async () => {
    const { file, descriptors } = await writeDeletionVectors(root, SETS);
    expect(path.dirname(file)).toBe(root);
    expect(path.basename(file)).toMatch(/^deletion_vector_[0-9a-f-]{36}\.bin$/);
    expect(descriptors).toHaveLength(SETS.length);
    const bytes = readFileSync(file);
    expect(bytes[0]).toBe(1);
    let expectedOffset = 1;
    for (const [i, dv] of descriptors.entries()) {
      const set = SETS[i] as RowIndexSet;
      expect(dv.storageType).toBe('u');
      expect(dv.pathOrInlineDv).toHaveLength(20);
      expect(dv.pathOrInlineDv).toBe(descriptors[0]?.pathOrInlineDv);
      expect(dv.offset).toBe(expectedOffset);
      expect(dv.cardinality).toBe(set.cardinality);
      expect(deletionVectorFile(root, dv)).toBe(file);
      // Framing: BE size, bitmap, BE CRC-32 of the bitmap.
      const at = dv.offset as number;
      expect(bytes.readUInt32BE(at)).toBe(dv.sizeInBytes);
      const bitmap = bytes.subarray(at + 4, at + 4 + dv.sizeInBytes);
      expect(bytes.readUInt32BE(at + 4 + dv.sizeInBytes)).toBe(crc32(bitmap));
      const back = await readDeletionVector(root, dv);
      expect(back.cardinality).toBe(set.cardinality);
      expect([...back.ranges()]).toEqual([...set.ranges()]);
      expectedOffset = at + 8 + dv.sizeInBytes;
    }
    expect(bytes.length).toBe(expectedOffset);
  });

  it('puts a prefixed DV in the prefix directory and records the prefix in the descriptor', async () => {
    const { file, descriptors } = await writeDeletionVectors(root, [RowIndexSet.of([1, 2])], {
      prefix: 'ab',
    });
    expect(path.basename(path.dirname(file))).toBe('ab');
    const dv = descriptors[0];
    expect(dv?.pathOrInlineDv).toMatch(/^ab.{20}$/);
    expect((await readDeletionVector(root, dv as NonNullable<typeof dv>)).toArray()).toEqual([1, 2]);
    await expect(writeDeletionVectors(root, [RowIndexSet.of([1])], { prefix: '../x' })).rejects.toThrow(
      RangeError,
    );
  });

  it('writes nothing for no sets and refuses an empty set', async () => {
    const before = readdirSync(root).length;
    expect((await writeDeletionVectors(root, [])).descriptors).toEqual([]);
    expect(readdirSync(root).length).toBe(before);
    expect(() => deletionVectorFileBytes([RowIndexSet.EMPTY])).toThrow(RangeError);
  });

  it('encodes UUIDs as 20 Z85 characters that decode back to the file name', () => {
    const uuid = '0e1f7bd8-8a0b-4bd4-8d4b-7a3c9e5b1c2d';
    const id = z85Uuid(uuid);
    expect(id).toHaveLength(20);
    expect(
      deletionVectorFile('/t', { storageType: 'u', pathOrInlineDv: id, sizeInBytes: 20, cardinality: 1 }),
    ).toBe(`/t/deletion_vector_${uuid}.bin`);
  });
});

describe('unionRowIndexSets', () => {
  it('matches a set built from both inputs', () => {
    const random = seededRandom(7);
    for (let round = 0; round < 50; round++) {
      const a = Array.from({ length: Math.floor(random() * 200) }, () => Math.floor(random() * 500));
      const b = Array.from({ length: Math.floor(random() * 200) }, () => Math.floor(random() * 500));
      const union = unionRowIndexSets(RowIndexSet.of(a), RowIndexSet.of(b));
      const expected = RowIndexSet.of([...a, ...b]);
      expect(union.cardinality).toBe(expected.cardinality);
      expect([...union.ranges()]).toEqual([...expected.ranges()]);
    }
  });
});

describe('looseBoundsStats', () => {
  it('sets tightBounds false and keeps every other byte, exact integers included', () => {
    const stats =
      '{"numRecords":3,"minValues":{"id":9007199254740993,"tightBounds":"x"},"maxValues":{"p":1.10}}';
    expect(looseBoundsStats(stats)).toBe(`${stats.slice(0, -1)},"tightBounds":false}`);
    expect(looseBoundsStats('{"numRecords":3,"tightBounds":true,"nullCount":{}}')).toBe(
      '{"numRecords":3,"tightBounds":false,"nullCount":{}}',
    );
    expect(looseBoundsStats('{"tightBounds" : true }')).toBe('{"tightBounds" : false }');
    expect(looseBoundsStats('{}')).toBe('{"tightBounds":false}');
    expect(looseBoundsStats('not json')).toBeUndefined();
  });
});

describe('DV update actions', () => {
  it('removes with the old DV and re-adds the same file with the new one and loose bounds', () => {
    const old = {
      storageType: 'u',
      pathOrInlineDv: 'ab'.repeat(10),
      offset: 1,
      sizeInBytes: 30,
      cardinality: 2,
    };
    // A Parquet checkpoint fills absent fields with null.
    const add = {
      path: 'part-1.parquet',
      partitionValues: {},
      size: 10,
      modificationTime: 5,
      dataChange: false,
      stats: '{"numRecords":9}',
      deletionVector: { ...old, maxRowIndex: null },
      tags: null,
      baseRowId: null,
    } as unknown as AddFile;
    const remove = removeFileAction(add, 77);
    expect(remove).toEqual({
      path: 'part-1.parquet',
      deletionTimestamp: 77,
      dataChange: true,
      extendedFileMetadata: true,
      partitionValues: {},
      size: 10,
      deletionVector: old,
    });
    expect(deletionVectorId(remove.deletionVector)).toBe(deletionVectorId(add.deletionVector));
    const dv = {
      storageType: 'u',
      pathOrInlineDv: 'cd'.repeat(10),
      offset: 1,
      sizeInBytes: 40,
      cardinality: 3,
    };
    expect(readdWithDeletionVector(add, dv)).toEqual({
      path: 'part-1.parquet',
      partitionValues: {},
      size: 10,
      modificationTime: 5,
      dataChange: true,
      deletionVector: dv,
      stats: '{"numRecords":9,"tightBounds":false}',
    });
  });
});
