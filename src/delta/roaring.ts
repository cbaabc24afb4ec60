/**
 * Deletion-vector bitmaps: Delta's "RoaringBitmapArray" (a 64-bit Roaring treemap in the portable serialization
 * of the Roaring format spec, https://github.com/RoaringBitmap/RoaringFormatSpec) decoded into a
 * {@link RowIndexSet}.
 *
 * Layout (little endian): `u32 magic 1681511377`, `u64 bucket count`, then per bucket in ascending order
 * `u32 key` (the high 32 bits of every row index in it) followed by a standard 32-bit portable Roaring bitmap:
 * cookie 12346 (no run containers, `u32` container count follows) or 12347 | (count-1) << 16 (run flags follow),
 * the key/cardinality header, the offset header (absent when run containers are possible and count < 4), then
 * array (≤ 4096 values), bitset (8 KiB) or run containers.
 */
import { TributaryError } from '../core/errors.js';

/** The magic number that starts Delta's 64-bit "RoaringBitmapArray" portable serialization. */
export const ROARING_ARRAY_MAGIC = 1681511377;
const SERIAL_COOKIE_NO_RUNCONTAINER = 12346;
const SERIAL_COOKIE = 12347;
const NO_OFFSET_THRESHOLD = 4;
const ARRAY_MAX = 4096;

/**
 * An immutable set of row indexes (0-based positions in a Parquet file) stored as sorted, disjoint, non-adjacent
 * half-open ranges: a run container of a million deleted rows costs one range, not a million numbers. Indexes
 * are plain numbers, exact up to 2⁵³.
 */
export class RowIndexSet {
  static readonly EMPTY = new RowIndexSet(new Float64Array(0), new Float64Array(0), 0);

  private constructor(
    /** Inclusive range starts, ascending. */
    readonly starts: Float64Array,
    /** Exclusive range ends; `ends[i] < starts[i + 1]`. */
    readonly ends: Float64Array,
    /** Number of indexes in the set. */
    readonly cardinality: number,
  ) {}

  /** Builds a set from ranges given in ascending order (overlapping or adjacent ones are merged). */
  static fromSortedRanges(ranges: Iterable<readonly [start: number, end: number]>): RowIndexSet {
    const b = new RangeBuilder();
    for (const [start, end] of ranges) b.add(start, end);
    return b.build();
  }

  /** Builds a set from indexes in any order, duplicates allowed. For tests and small sets. */
  static of(indexes: Iterable<number>): RowIndexSet {
    const sorted = [...indexes].sort((a, b) => a - b);
    const b = new RangeBuilder();
    for (const i of sorted) b.add(i, i + 1);
    return b.build();
  }

  /** For the range builder only: the arrays must already satisfy the invariants above. */
  static trusted(starts: Float64Array, ends: Float64Array, cardinality: number): RowIndexSet {
    return new RowIndexSet(starts, ends, cardinality);
  }

  get rangeCount(): number {
    return this.starts.length;
  }

  has(index: number): boolean {
    let lo = 0;
    let hi = this.starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (index < (this.starts[mid] as number)) hi = mid - 1;
      else if (index >= (this.ends[mid] as number)) lo = mid + 1;
      else return true;
    }
    return false;
  }

  *ranges(): IterableIterator<[start: number, end: number]> {
    for (let i = 0; i < this.starts.length; i++) yield [this.starts[i] as number, this.ends[i] as number];
  }

  /** Every index, ascending. Materialises the set: for tests and small sets only. */
  toArray(): number[] {
    const out: number[] = [];
    for (const [s, e] of this.ranges()) for (let i = s; i < e; i++) out.push(i);
    return out;
  }

  /** The indexes in this set and not in `other` (a linear merge of the two range lists). */
  difference(other: RowIndexSet): RowIndexSet {
    if (other.cardinality === 0 || this.cardinality === 0) return this;
    const b = new RangeBuilder();
    let j = 0;
    for (let i = 0; i < this.starts.length; i++) {
      let start = this.starts[i] as number;
      const end = this.ends[i] as number;
      while (j < other.starts.length && (other.ends[j] as number) <= start) j++;
      let k = j;
      while (start < end && k < other.starts.length && (other.starts[k] as number) < end) {
        const os = other.starts[k] as number;
        const oe = other.ends[k] as number;
        if (os > start) b.add(start, os);
        start = Math.max(start, oe);
        k++;
      }
      if (start < end) b.add(start, end);
    }
    return b.build();
  }
}

class RangeBuilder {
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private cardinality = 0;

  add(start: number, end: number): void {
    if (end <= start) return;
    const last = this.ends.length - 1;
    if (last >= 0 && start <= (this.ends[last] as number)) {
      const previousEnd = this.ends[last] as number;
      if (end > previousEnd) {
        this.cardinality += end - previousEnd;
        this.ends[last] = end;
      }
      return;
    }
    this.starts.push(start);
    this.ends.push(end);
    this.cardinality += end - start;
  }

  build(): RowIndexSet {
    if (this.starts.length === 0) return RowIndexSet.EMPTY;
    return RowIndexSet.trusted(
      Float64Array.from(this.starts),
      Float64Array.from(this.ends),
      this.cardinality,
    );
  }
}

/** Bounds-checked little-endian reader whose errors name the bitmap's source. */
class Reader {
  pos = 0;
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly what: string,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(message: string): never {
    throw new TributaryError('DELTA_CORRUPT', `Corrupt deletion vector bitmap in ${this.what}: ${message}`, {
      hint: 'The deletion vector file or inline descriptor is damaged; restore it or rewrite the data file.',
    });
  }

  need(n: number): void {
    if (this.pos + n > this.bytes.length) this.fail(`truncated at byte ${this.pos} (needs ${n} more)`);
  }

  u16(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  u64(): number {
    const lo = this.u32();
    const hi = this.u32();
    if (hi >= 2 ** 21) this.fail(`64-bit count ${hi} * 2^32 + ${lo} is not plausible`);
    return hi * 2 ** 32 + lo;
  }

  u16At(at: number): number {
    return this.view.getUint16(at, true);
  }

  u32At(at: number): number {
    return this.view.getUint32(at, true);
  }

  byteAt(at: number): number {
    return this.bytes[at] as number;
  }

  get remaining(): number {
    return this.bytes.length - this.pos;
  }
}

/** Appends one standard 32-bit portable Roaring bitmap, offsetting every value by `high`. */
function readRoaring32(r: Reader, high: number, out: RangeBuilder): void {
  const cookie = r.u32();
  let size: number;
  let runFlagsAt = -1;
  if ((cookie & 0xffff) === SERIAL_COOKIE) {
    size = (cookie >>> 16) + 1;
    runFlagsAt = r.pos;
    r.need(Math.ceil(size / 8));
    r.pos += Math.ceil(size / 8);
  } else if (cookie === SERIAL_COOKIE_NO_RUNCONTAINER) {
    size = r.u32();
    if (size > 65536) r.fail(`container count ${size} exceeds 65536`);
  } else {
    r.fail(`unknown Roaring cookie ${cookie}`);
  }
  const isRun = (i: number): boolean =>
    runFlagsAt >= 0 && (r.byteAt(runFlagsAt + (i >>> 3)) & (1 << (i & 7))) !== 0;
  const headerAt = r.pos;
  r.need(4 * size);
  r.pos += 4 * size;
  if (runFlagsAt < 0 || size >= NO_OFFSET_THRESHOLD) {
    // The offsets only allow random access; containers are read sequentially.
    r.need(4 * size);
    r.pos += 4 * size;
  }
  let previousKey = -1;
  for (let i = 0; i < size; i++) {
    const key = r.u16At(headerAt + 4 * i);
    const cardinality = r.u16At(headerAt + 4 * i + 2) + 1;
    if (key <= previousKey) r.fail(`container keys not ascending (${key} after ${previousKey})`);
    previousKey = key;
    const base = high + key * 65536;
    if (isRun(i)) {
      const runs = r.u16();
      r.need(4 * runs);
      let count = 0;
      let previousEnd = -1;
      for (let k = 0; k < runs; k++) {
        const start = r.u16();
        const length = r.u16() + 1;
        if (start < previousEnd || start + length > 65536)
          r.fail(`run ${k} of container ${key} is out of order`);
        previousEnd = start + length;
        out.add(base + start, base + start + length);
        count += length;
      }
      if (count !== cardinality)
        r.fail(`run container ${key} holds ${count} values, header says ${cardinality}`);
    } else if (cardinality <= ARRAY_MAX) {
      r.need(2 * cardinality);
      let previous = -1;
      for (let k = 0; k < cardinality; k++) {
        const v = r.u16();
        if (v <= previous) r.fail(`array container ${key} is not strictly ascending`);
        previous = v;
        out.add(base + v, base + v + 1);
      }
    } else {
      r.need(8192);
      let count = 0;
      let runStart = -1;
      for (let w = 0; w < 2048; w++) {
        const word = r.u32At(r.pos + 4 * w);
        if (word === 0xffffffff && runStart >= 0) {
          count += 32;
          continue;
        }
        for (let bit = 0; bit < 32; bit++) {
          const set = (word >>> bit) & 1;
          const v = w * 32 + bit;
          if (set) {
            count++;
            if (runStart < 0) runStart = v;
          } else if (runStart >= 0) {
            out.add(base + runStart, base + v);
            runStart = -1;
          }
        }
      }
      if (runStart >= 0) out.add(base + runStart, base + 65536);
      r.pos += 8192;
      if (count !== cardinality)
        r.fail(`bitset container ${key} holds ${count} values, header says ${cardinality}`);
    }
  }
}

/**
 * Decodes Delta's RoaringBitmapArray bytes (starting with the magic number) into a set of row indexes. `what`
 * names the source (file and offset, or inline descriptor) in `DELTA_CORRUPT` errors. Trailing bytes are an
 * error: the descriptor gives the exact size.
 */
export function decodeRoaringBitmapArray(bytes: Uint8Array, what: string): RowIndexSet {
  const r = new Reader(bytes, what);
  const magic = r.u32();
  if (magic !== ROARING_ARRAY_MAGIC) r.fail(`magic number ${magic}, expected ${ROARING_ARRAY_MAGIC}`);
  const buckets = r.u64();
  const out = new RangeBuilder();
  let previousKey = -1;
  for (let b = 0; b < buckets; b++) {
    const key = r.u32();
    if (key <= previousKey) r.fail(`bucket keys not ascending (${key} after ${previousKey})`);
    if (key >= 2 ** 21) r.fail(`row index bucket ${key} exceeds 2^53`);
    previousKey = key;
    readRoaring32(r, key * 2 ** 32, out);
  }
  if (r.remaining !== 0) r.fail(`${r.remaining} unexpected trailing bytes`);
  return out.build();
}

/**
 * Serializes a set in Delta's RoaringBitmapArray format (the inverse of {@link decodeRoaringBitmapArray}), for
 * writers of deletion vectors. Each 2¹⁶-value container is written in its smallest form: run, array (at most
 * 4096 values, as every Roaring reader assumes) or bitset.
 */
export function encodeRoaringBitmapArray(set: RowIndexSet): Uint8Array {
  // Group ranges by 64-bit bucket (high 32 bits), then by 16-bit container key, splitting at boundaries.
  const buckets = new Map<number, Map<number, [number, number][]>>();
  for (let [start, end] of set.ranges()) {
    while (start < end) {
      const containerStart = Math.floor(start / 65536) * 65536;
      const stop = Math.min(end, containerStart + 65536);
      const high = Math.floor(start / 2 ** 32);
      const key = Math.floor((start - high * 2 ** 32) / 65536);
      let bucket = buckets.get(high);
      if (!bucket) {
        bucket = new Map();
        buckets.set(high, bucket);
      }
      let runs = bucket.get(key);
      if (!runs) {
        runs = [];
        bucket.set(key, runs);
      }
      runs.push([start - containerStart, stop - containerStart]);
      start = stop;
    }
  }
  const out: number[] = [];
  const u16 = (v: number) => out.push(v & 0xff, (v >>> 8) & 0xff);
  const u32 = (v: number) => {
    u16(v & 0xffff);
    u16(v >>> 16);
  };
  u32(ROARING_ARRAY_MAGIC);
  u32(buckets.size);
  u32(0);
  for (const [high, containers] of buckets) {
    u32(high);
    const keys = [...containers.keys()];
    const kinds = keys.map((key) => {
      const runs = containers.get(key) as [number, number][];
      const cardinality = runs.reduce((n, [s, e]) => n + e - s, 0);
      const runBytes = 2 + 4 * runs.length;
      const otherBytes = cardinality <= ARRAY_MAX ? 2 * cardinality : 8192;
      return {
        key,
        runs,
        cardinality,
        kind: runBytes < otherBytes ? 'run' : cardinality <= ARRAY_MAX ? 'array' : 'bitset',
      };
    });
    const size = kinds.length;
    u32(SERIAL_COOKIE | ((size - 1) << 16));
    const flags = new Array<number>(Math.ceil(size / 8)).fill(0);
    kinds.forEach((k, i) => {
      if (k.kind === 'run') flags[i >>> 3] = (flags[i >>> 3] as number) | (1 << (i & 7));
    });
    out.push(...flags);
    for (const k of kinds) {
      u16(k.key);
      u16(k.cardinality - 1);
    }
    const bodies = kinds.map((k) => {
      const body: number[] = [];
      const b16 = (v: number) => body.push(v & 0xff, (v >>> 8) & 0xff);
      if (k.kind === 'run') {
        b16(k.runs.length);
        for (const [s, e] of k.runs) {
          b16(s);
          b16(e - s - 1);
        }
      } else if (k.kind === 'array') {
        for (const [s, e] of k.runs) for (let v = s; v < e; v++) b16(v);
      } else {
        const words = new Uint32Array(2048);
        for (const [s, e] of k.runs) {
          for (let v = s; v < e; v++) words[v >>> 5] = ((words[v >>> 5] as number) | (1 << (v & 31))) >>> 0;
        }
        for (const w of words) {
          b16(w & 0xffff);
          b16(w >>> 16);
        }
      }
      return body;
    });
    if (size >= NO_OFFSET_THRESHOLD) {
      // Offsets are relative to the start of this 32-bit bitmap.
      let offset = 4 + flags.length + 4 * size + 4 * size;
      for (const body of bodies) {
        u32(offset);
        offset += body.length;
      }
    }
    for (const body of bodies) for (const byte of body) out.push(byte);
  }
  return Uint8Array.from(out);
}
