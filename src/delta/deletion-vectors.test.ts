import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeletionVectorDescriptor } from './actions.js';
import { crc32, deletionVectorFile, readDeletionVector } from './deletion-vectors.js';
import { decodeRoaringBitmapArray, ROARING_ARRAY_MAGIC, RowIndexSet } from './roaring.js';
import { z85Decode, z85Encode } from './z85.js';

const CORPUS = '/work/shared/conformance/delta';

/** Little-endian byte writer for hand-built bitmaps. */
class Bytes {
  readonly parts: number[] = [];
  u16(v: number): this {
    this.parts.push(v & 0xff, (v >>> 8) & 0xff);
    return this;
  }
  u32(v: number): this {
    return this.u16(v & 0xffff).u16(v >>> 16);
  }
  u64(v: number): this {
    return this.u32(v % 2 ** 32).u32(Math.floor(v / 2 ** 32));
  }
  get bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

type Container = { key: number } & (
  | { kind: 'array'; values: number[] }
  | { kind: 'bitset'; values: number[] }
  | { kind: 'run'; runs: [start: number, length: number][] }
);

/** Portable 32-bit Roaring serialization, following the format spec, for the decoder's tests. */
function roaring32(out: Bytes, containers: Container[]): void {
  const hasRun = containers.some((c) => c.kind === 'run');
  const card = (c: Container) => (c.kind === 'run' ? c.runs.reduce((n, r) => n + r[1], 0) : c.values.length);
  if (hasRun) {
    out.u32(12347 | ((containers.length - 1) << 16));
    const flags = new Array(Math.ceil(containers.length / 8)).fill(0);
    containers.forEach((c, i) => {
      if (c.kind === 'run') flags[i >>> 3] |= 1 << (i & 7);
    });
    out.parts.push(...flags);
  } else {
    out.u32(12346).u32(containers.length);
  }
  for (const c of containers) out.u16(c.key).u16(card(c) - 1);
  if (!hasRun || containers.length >= 4) for (const _ of containers) out.u32(0);
  for (const c of containers) {
    if (c.kind === 'run') {
      out.u16(c.runs.length);
      for (const [s, l] of c.runs) out.u16(s).u16(l - 1);
    } else if (c.kind === 'array') {
      for (const v of c.values) out.u16(v);
    } else {
      const words = new Uint32Array(2048);
      for (const v of c.values) words[v >>> 5] = ((words[v >>> 5] as number) | (1 << (v & 31))) >>> 0;
      for (const w of words) out.u32(w);
    }
  }
}

function treemap(buckets: [key: number, containers: Container[]][]): Uint8Array {
  const out = new Bytes().u32(ROARING_ARRAY_MAGIC).u64(buckets.length);
  for (const [key, containers] of buckets) {
    out.u32(key);
    roaring32(out, containers);
  }
  return out.bytes;
}

describe('z85', () => {
  it('round-trips and decodes the RFC 32 test vector', () => {
    const hello = Uint8Array.from([0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b]);
    expect(z85Encode(hello)).toBe('HelloWorld');
    expect([...z85Decode('HelloWorld')]).toEqual([...hello]);
  });
  it('accepts the Rust z85 crate tail (k "#" = k missing bytes)', () => {
    expect([...z85Decode('##093')]).toEqual([0x03, 0x00]);
  });
  it('rejects bad characters and lengths as DELTA_CORRUPT', () => {
    expect(() => z85Decode('abc')).toThrow(expect.objectContaining({ code: 'DELTA_CORRUPT' }));
    expect(() => z85Decode('abc"d')).toThrow(expect.objectContaining({ code: 'DELTA_CORRUPT' }));
  });
});

describe('roaring', () => {
  it('decodes array, bitset and run containers across 64-bit buckets', () => {
    const bitset = Array.from({ length: 5000 }, (_, i) => i * 3);
    const bytes = treemap([
      [
        0,
        [
          { key: 0, kind: 'array', values: [1, 2, 3, 10] },
          { key: 1, kind: 'bitset', values: bitset },
          {
            key: 2,
            kind: 'run',
            runs: [
              [0, 100],
              [65_000, 536],
            ],
          },
        ],
      ],
      [1, [{ key: 7, kind: 'array', values: [5] }]],
    ]);
    const set = decodeRoaringBitmapArray(bytes, 'test');
    expect(set.cardinality).toBe(4 + 5000 + 636 + 1);
    expect(set.has(2)).toBe(true);
    expect(set.has(4)).toBe(false);
    expect(set.has(65_536 + 3 * 4999)).toBe(true);
    expect(set.has(65_536 + 1)).toBe(false);
    expect(set.has(2 * 65_536 + 99)).toBe(true);
    expect(set.has(2 * 65_536 + 100)).toBe(false);
    expect(set.has(3 * 65_536 - 1)).toBe(true);
    expect(set.has(2 ** 32 + 7 * 65_536 + 5)).toBe(true);
    // The run at the end of container 2 and nothing in container 3: one range, not 536.
    expect([...set.ranges()].filter(([s]) => s >= 2 * 65_536 && s < 3 * 65_536)).toEqual([
      [2 * 65_536, 2 * 65_536 + 100],
      [2 * 65_536 + 65_000, 3 * 65_536],
    ]);
  });
  it('uses the offset header with four or more containers when runs are present', () => {
    const containers: Container[] = [0, 1, 2, 3].map((key) => ({ key, kind: 'run', runs: [[key, 2]] }));
    const set = decodeRoaringBitmapArray(treemap([[0, containers]]), 'test');
    expect(set.toArray()).toEqual([0, 1, 65_537, 65_538, 131_074, 131_075, 196_611, 196_612]);
  });
  it('rejects a wrong magic, truncation and trailing bytes', () => {
    const good = treemap([[0, [{ key: 0, kind: 'array', values: [1] }]]]);
    const badMagic = Uint8Array.from(good);
    badMagic[0] = 0;
    expect(() => decodeRoaringBitmapArray(badMagic, 'x.bin')).toThrow(/x\.bin: magic number/);
    expect(() => decodeRoaringBitmapArray(good.subarray(0, good.length - 1), 'x.bin')).toThrow(/truncated/);
    expect(() => decodeRoaringBitmapArray(Uint8Array.from([...good, 0]), 'x.bin')).toThrow(/trailing/);
  });
  it('computes set differences on ranges', () => {
    const a = RowIndexSet.of([1, 2, 3, 4, 5, 10, 11, 20]);
    const b = RowIndexSet.of([2, 3, 11, 12, 30]);
    expect(a.difference(b).toArray()).toEqual([1, 4, 5, 10, 20]);
    expect(b.difference(a).toArray()).toEqual([12, 30]);
  });
});

describe('deletion vector files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tributary-dv-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function writeDv(
    name: string,
    bitmap: Uint8Array,
    corruptCrc = false,
  ): Promise<DeletionVectorDescriptor> {
    const frame = Buffer.alloc(1 + 4 + bitmap.length + 4);
    frame[0] = 1;
    frame.writeUInt32BE(bitmap.length, 1);
    Buffer.from(bitmap).copy(frame, 5);
    frame.writeUInt32BE((crc32(bitmap) ^ (corruptCrc ? 1 : 0)) >>> 0, 5 + bitmap.length);
    await writeFile(path.join(dir, name), frame);
    return {
      storageType: 'p',
      pathOrInlineDv: `file://${path.join(dir, name)}`,
      offset: 1,
      sizeInBytes: bitmap.length,
      cardinality: 2,
    };
  }

  it('checks CRC-32 and names the file on mismatch', async () => {
    const bitmap = treemap([[0, [{ key: 0, kind: 'array', values: [3, 4] }]]]);
    const ok = await writeDv('ok.bin', bitmap);
    expect((await readDeletionVector(dir, ok)).toArray()).toEqual([3, 4]);
    const bad = await writeDv('bad.bin', bitmap, true);
    await expect(readDeletionVector(dir, bad)).rejects.toMatchObject({
      code: 'DELTA_CORRUPT',
      message: expect.stringMatching(/bad\.bin.*CRC-32/),
    });
    await expect(readDeletionVector(dir, { ...ok, cardinality: 3 })).rejects.toThrow(/holds 2 rows.*says 3/);
    await expect(
      readDeletionVector(dir, { ...ok, pathOrInlineDv: `file://${dir}/missing.bin` }),
    ).rejects.toThrow(/missing\.bin/);
  });
  it('decodes inline descriptors (Spark zero padding)', async () => {
    const bitmap = treemap([[0, [{ key: 0, kind: 'array', values: [7] }]]]);
    const padded = new Uint8Array(Math.ceil(bitmap.length / 4) * 4);
    padded.set(bitmap);
    const dv = {
      storageType: 'i',
      pathOrInlineDv: z85Encode(padded),
      sizeInBytes: bitmap.length,
      cardinality: 1,
    };
    expect((await readDeletionVector(dir, dv)).toArray()).toEqual([7]);
  });
  it('resolves u descriptors under the table root, with the random prefix as a directory', () => {
    const uuid = z85Encode(new Uint8Array(16).fill(0xab));
    expect(
      deletionVectorFile('/t', {
        storageType: 'u',
        pathOrInlineDv: `ab${uuid}`,
        sizeInBytes: 0,
        cardinality: 0,
      }),
    ).toBe('/t/ab/deletion_vector_abababab-abab-abab-abab-abababababab.bin');
    expect(() =>
      deletionVectorFile('/t', {
        storageType: 'u',
        pathOrInlineDv: `../../x${uuid}`,
        sizeInBytes: 0,
        cardinality: 0,
      }),
    ).toThrow(/escapes the table root/);
  });
});

/** Every DV descriptor in the corpus's JSON commits, per table root. */
function corpusDescriptors(): { root: string; file: string; dv: DeletionVectorDescriptor }[] {
  const found: { root: string; file: string; dv: DeletionVectorDescriptor }[] = [];
  const seen = new Set<string>();
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const child = path.join(dir, name);
      if (!statSync(child).isDirectory()) continue;
      if (name !== '_delta_log') {
        walk(child);
        continue;
      }
      for (const commit of readdirSync(child).filter((n) => n.endsWith('.json'))) {
        for (const line of readFileSync(path.join(child, commit), 'utf8').split('\n')) {
          if (!line.includes('deletionVector')) continue;
          const action = JSON.parse(line) as {
            add?: { deletionVector?: DeletionVectorDescriptor };
            remove?: typeof action.add;
          };
          const dv = (action.add ?? action.remove)?.deletionVector;
          const key = `${dir}\u0000${JSON.stringify(dv)}`;
          if (!dv || seen.has(key)) continue;
          seen.add(key);
          found.push({ root: dir, file: path.join(child, commit), dv });
        }
      }
    }
  };
  walk(CORPUS);
  return found;
}

describe.skipIf(!existsSync(CORPUS))('corpus deletion vectors', () => {
  it('decode with the cardinality their descriptors state', async () => {
    const all = corpusDescriptors();
    expect(all.length).toBeGreaterThan(100);
    const unreadable: string[] = [];
    let decoded = 0;
    let rows = 0;
    for (const { root, file, dv } of all) {
      try {
        rows += (await readDeletionVector(root, dv, file)).cardinality;
        decoded++;
      } catch (error) {
        // Spark's own test tables put a test-only prefix in DV file names that the descriptor does not carry,
        // and one holds a placeholder absolute path: both are unreadable by design, and must fail clearly.
        expect(error).toMatchObject({ code: 'DELTA_CORRUPT' });
        unreadable.push(path.relative(CORPUS, root));
      }
    }
    expect(new Set(unreadable)).toEqual(
      new Set(unreadable.filter((r) => r.startsWith('delta-spark/spark-test-resources/') && /dv/.test(r))),
    );
    expect(decoded).toBeGreaterThan(100);
    expect(rows).toBeGreaterThan(decoded);
  });
});
