/**
 * Writing deletion vectors (DIGEST §9), the inverse of `deletion-vectors.ts`.
 *
 * One commit writes one file, `<table>/[<prefix>/]deletion_vector_<uuid>.bin`, holding every DV it creates:
 * readers open one file per commit instead of one per data file, and the file is as immutable as a data file
 * (a DV update writes a new file and points the `add` at it). Layout: version byte `1`, then per DV a `u32 BE`
 * size, the RoaringBitmapArray bytes, and a `u32 BE` CRC-32 of those bytes. The descriptors are
 * `storageType: 'u'` with `pathOrInlineDv` = prefix + the Z85 text of the UUID, so the file name never
 * appears in the log.
 *
 * A DV update in the log is `remove(path, oldDv)` + `add(path, newDv)` ({@link removeFileAction},
 * {@link readdWithDeletionVector}); the new DV holds the old one's rows too ({@link unionRowIndexSets}).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import type { AddFile, DeletionVectorDescriptor, RemoveFile } from './actions.js';
import { crc32 } from './deletion-vectors.js';
import { encodeRoaringBitmapArray, RowIndexSet } from './roaring.js';
import { z85Encode } from './z85.js';

/** The version byte every DV file starts with. */
const FORMAT_VERSION = 1;

/** The file a commit's deletion vectors went to, and one descriptor per input set, in input order. */
export interface WrittenDeletionVectors {
  /** Absolute path of the DV file. */
  readonly file: string;
  readonly descriptors: DeletionVectorDescriptor[];
}

export interface DeletionVectorWriteOptions {
  /**
   * A directory under the table root, recorded in the descriptor in front of the Z85 UUID (Spark's
   * `delta.randomizeFilePrefixes`). Letters and digits only, so it needs no encoding in the descriptor.
   */
  readonly prefix?: string;
}

/**
 * The bytes of a DV file holding `sets`, in order, and where each one starts. Pure: for the writer and for
 * tests that need a file without the file system.
 */
export function deletionVectorFileBytes(sets: readonly RowIndexSet[]): {
  bytes: Uint8Array;
  entries: { offset: number; sizeInBytes: number; cardinality: number }[];
} {
  const bitmaps = sets.map((set) => {
    if (set.cardinality === 0) {
      // An empty DV deletes nothing; the add should simply carry no DV.
      throw new RangeError('A deletion vector must delete at least one row');
    }
    return encodeRoaringBitmapArray(set);
  });
  const total = 1 + bitmaps.reduce((n, b) => n + 8 + b.length, 0);
  const out = Buffer.alloc(total);
  out[0] = FORMAT_VERSION;
  let at = 1;
  const entries = bitmaps.map((bitmap, i) => {
    const offset = at;
    out.writeUInt32BE(bitmap.length, at);
    out.set(bitmap, at + 4);
    out.writeUInt32BE(crc32(bitmap), at + 4 + bitmap.length);
    at += 8 + bitmap.length;
    return { offset, sizeInBytes: bitmap.length, cardinality: (sets[i] as RowIndexSet).cardinality };
  });
  return { bytes: out, entries };
}

/** The 20-character Z85 text of a UUID's 16 bytes, as `pathOrInlineDv` of a `u` descriptor holds it. */
export function z85Uuid(uuid: string): string {
  return z85Encode(Buffer.from(uuid.replaceAll('-', ''), 'hex'));
}

/**
 * Writes `sets` into one new DV file of the table and returns their descriptors. The file is created
 * exclusively and fsynced, as is its directory, before this returns: a commit referencing it may follow at
 * once, and a crash must not leave the log pointing at a DV that never reached the disk.
 */
export async function writeDeletionVectors(
  tableRoot: string,
  sets: readonly RowIndexSet[],
  options: DeletionVectorWriteOptions = {},
): Promise<WrittenDeletionVectors> {
  const prefix = options.prefix ?? '';
  if (!/^[A-Za-z0-9]*$/.test(prefix)) {
    throw new RangeError(`Deletion vector prefix ${JSON.stringify(prefix)} must be letters and digits`);
  }
  if (sets.length === 0) return { file: '', descriptors: [] };
  const { bytes, entries } = deletionVectorFileBytes(sets);
  const uuid = randomUUID();
  const dir = prefix === '' ? tableRoot : path.join(tableRoot, prefix);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `deletion_vector_${uuid}.bin`);
  const handle = await open(file, 'wx');
  try {
    await handle.writeFile(bytes);
    await handle.sync();
  } finally {
    await handle.close();
  }
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
  const id = prefix + z85Uuid(uuid);
  return {
    file,
    descriptors: entries.map((e) => ({
      storageType: 'u',
      pathOrInlineDv: id,
      offset: e.offset,
      sizeInBytes: e.sizeInBytes,
      cardinality: e.cardinality,
    })),
  };
}

/** The union of two row sets: a DV update deletes the old DV's rows and the new ones. */
export function unionRowIndexSets(a: RowIndexSet, b: RowIndexSet): RowIndexSet {
  if (b.cardinality === 0) return a;
  if (a.cardinality === 0) return b;
  const ranges: [number, number][] = [];
  let i = 0;
  let j = 0;
  // A merge by range start keeps the input ascending, which is all fromSortedRanges needs.
  while (i < a.rangeCount || j < b.rangeCount) {
    const takeA =
      j >= b.rangeCount || (i < a.rangeCount && (a.starts[i] as number) <= (b.starts[j] as number));
    if (takeA) {
      ranges.push([a.starts[i] as number, a.ends[i] as number]);
      i++;
    } else {
      ranges.push([b.starts[j] as number, b.ends[j] as number]);
      j++;
    }
  }
  return RowIndexSet.fromSortedRanges(ranges);
}

/** The descriptor without the nulls a Parquet checkpoint fills in (the DV id stays the same). */
function cleanDescriptor(dv: DeletionVectorDescriptor): DeletionVectorDescriptor {
  const out: DeletionVectorDescriptor = {
    storageType: dv.storageType,
    pathOrInlineDv: dv.pathOrInlineDv,
    sizeInBytes: dv.sizeInBytes,
    cardinality: dv.cardinality,
  };
  if (dv.offset !== undefined && dv.offset !== null) out.offset = dv.offset;
  if (dv.maxRowIndex !== undefined && dv.maxRowIndex !== null) out.maxRowIndex = dv.maxRowIndex;
  return out;
}

/** Copies the optional file fields that are set (checkpoints hold nulls for the absent ones). */
function copyOptional(from: AddFile, to: AddFile | RemoveFile): void {
  if (from.tags) to.tags = from.tags;
  if (typeof from.baseRowId === 'number') to.baseRowId = from.baseRowId;
  if (typeof from.defaultRowCommitVersion === 'number')
    to.defaultRowCommitVersion = from.defaultRowCommitVersion;
}

/**
 * The `remove` of a live file (`dataChange: true`, extended metadata). Replay keys files by (path, DV id),
 * so it carries the add's DV exactly: without it the old entry would stay live next to any re-add of the
 * path, and its rows would be read twice.
 */
export function removeFileAction(add: AddFile, now: number): RemoveFile {
  const remove: RemoveFile = {
    path: add.path,
    deletionTimestamp: now,
    dataChange: true,
    extendedFileMetadata: true,
    partitionValues: add.partitionValues,
    size: add.size,
  };
  if (add.deletionVector) remove.deletionVector = cleanDescriptor(add.deletionVector);
  copyOptional(add, remove);
  return remove;
}

/**
 * The `add` half of a DV update (the other half is {@link removeFileAction} of the old add): the same file,
 * size and stats, now with `dv`, and `tightBounds: false` since the deleted rows may have held the bounds.
 */
export function readdWithDeletionVector(add: AddFile, dv: DeletionVectorDescriptor): AddFile {
  const out: AddFile = {
    path: add.path,
    partitionValues: add.partitionValues,
    size: add.size,
    modificationTime: add.modificationTime,
    dataChange: true,
    deletionVector: dv,
  };
  const stats = add.stats ? looseBoundsStats(add.stats) : undefined;
  if (stats !== undefined) out.stats = stats;
  if (typeof add.clusteringProvider === 'string') out.clusteringProvider = add.clusteringProvider;
  copyOptional(add, out);
  return out;
}

/**
 * `stats` with top-level `"tightBounds": false`, every other byte kept: a JSON round trip would turn exact
 * 64-bit integers and decimals into doubles. `numRecords` stays the physical count, as the protocol wants.
 * Unparseable stats are dropped (undefined), which only costs data skipping.
 */
export function looseBoundsStats(stats: string): string | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stats);
  } catch {
    return undefined;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return undefined;
  const at = topLevelValue(stats, 'tightBounds');
  if (at) return `${stats.slice(0, at.start)}false${stats.slice(at.end)}`;
  const close = stats.lastIndexOf('}');
  const empty = Object.keys(parsed).length === 0;
  return `${stats.slice(0, close)}${empty ? '' : ','}"tightBounds":false${stats.slice(close)}`;
}

/** Where the value of a top-level key starts and ends in a JSON object text known to be valid. */
function topLevelValue(text: string, key: string): { start: number; end: number } | undefined {
  let depth = 0;
  let i = 0;
  const skipString = (): string => {
    const start = i;
    i++;
    while (text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const skipSpace = () => {
    while (/\s/.test(text[i] ?? '')) i++;
  };
  while (i < text.length) {
    const ch = text[i] as string;
    if (ch === '"') {
      const name = skipString();
      skipSpace();
      if (depth === 1 && text[i] === ':' && name === key) {
        i++;
        skipSpace();
        const start = i;
        let inner = 0;
        while (i < text.length) {
          const c = text[i] as string;
          if (c === '"') {
            skipString();
            continue;
          }
          if (c === '{' || c === '[') inner++;
          else if (c === '}' || c === ']') {
            if (inner === 0) break;
            inner--;
          } else if (c === ',' && inner === 0) break;
          i++;
        }
        let end = i;
        while (end > start && /\s/.test(text[end - 1] as string)) end--;
        return { start, end };
      }
      continue;
    }
    if (ch === '{' || ch === '[') depth++;
    else if (ch === '}' || ch === ']') depth--;
    i++;
  }
  return undefined;
}
