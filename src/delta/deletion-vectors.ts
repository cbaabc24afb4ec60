/**
 * Reading deletion vectors (DIGEST §9): which rows of a data file are deleted.
 *
 * A descriptor (`add.deletionVector`) is stored one of three ways:
 * - `u`: `pathOrInlineDv` is an optional random prefix followed by the 20-character Z85 encoding of a UUID; the
 *   file is `<table>/<prefix>/deletion_vector_<uuid>.bin`.
 * - `p`: `pathOrInlineDv` is an absolute URI of the file.
 * - `i`: `pathOrInlineDv` is the Z85-encoded bitmap itself (`sizeInBytes` long once decoded).
 *
 * A DV file starts with a version byte (1) and may hold several DVs. At `offset` (default 1) each one is
 * `u32 BE size`, `size` bytes of bitmap ({@link decodeRoaringBitmapArray}), `u32 BE CRC-32` of those bytes.
 * Every check (version, size, CRC, bitmap structure, cardinality) fails with `DELTA_CORRUPT` naming the file.
 */
import { open } from 'node:fs/promises';
import { messageOf, TributaryError } from '../core/errors.js';
import type { DeletionVectorDescriptor } from './actions.js';
import { resolveTablePath } from './paths.js';
import { decodeRoaringBitmapArray, type RowIndexSet } from './roaring.js';
import { z85Decode } from './z85.js';

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 (IEEE 802.3, as zlib and java.util.zip.CRC32 compute it). */
export function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) {
    crc = (CRC_TABLE[(crc ^ (bytes[i] as number)) & 0xff] as number) ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}

function uuidFromBytes(bytes: Uint8Array): string {
  const hex = Buffer.from(bytes).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function corrupt(message: string, cause?: unknown): TributaryError {
  return new TributaryError('DELTA_CORRUPT', message, {
    ...(cause === undefined ? {} : { cause }),
    hint: 'A deletion vector is missing or damaged; the rows it deletes cannot be known. Restore the file.',
  });
}

/**
 * The absolute path of the file holding a `u` or `p` deletion vector; `undefined` for inline (`i`) ones.
 * `source` names the log file the descriptor came from, for errors.
 */
export function deletionVectorFile(
  tableRoot: string,
  dv: DeletionVectorDescriptor,
  source = tableRoot,
): string | undefined {
  switch (dv.storageType) {
    case 'i':
      return undefined;
    case 'p':
      return resolveTablePath(tableRoot, dv.pathOrInlineDv, source);
    case 'u': {
      const encoded = dv.pathOrInlineDv;
      if (encoded.length < 20) {
        throw corrupt(
          `Deletion vector id ${JSON.stringify(encoded)} in ${source} is shorter than a Z85 UUID`,
        );
      }
      const prefix = encoded.slice(0, -20);
      const uuid = uuidFromBytes(z85Decode(encoded.slice(-20), `deletion vector id in ${source}`));
      const relative =
        prefix === '' ? `deletion_vector_${uuid}.bin` : `${prefix}/deletion_vector_${uuid}.bin`;
      // The prefix is raw text, not a URI: encode it so `%` in a prefix survives the decoding in resolveTablePath.
      return resolveTablePath(tableRoot, encodeURIComponent(relative).replaceAll('%2F', '/'), source);
    }
    default:
      throw new TributaryError(
        'DELTA_PROTOCOL',
        `Deletion vector in ${source} has unknown storage type ${JSON.stringify(dv.storageType)}`,
        { hint: 'The table was written by a newer Delta engine; read it with that engine.' },
      );
  }
}

/** Human-readable location of a DV for error messages. */
function describe(dv: DeletionVectorDescriptor, file: string | undefined): string {
  return file === undefined
    ? `inline deletion vector ${dv.pathOrInlineDv.slice(0, 40)}`
    : `${file}@${dv.offset ?? 1}`;
}

async function readFramedBitmap(file: string, dv: DeletionVectorDescriptor): Promise<Uint8Array> {
  const offset = dv.offset ?? 1;
  const size = dv.sizeInBytes;
  if (!Number.isInteger(offset) || offset < 1 || !Number.isInteger(size) || size < 12) {
    throw corrupt(
      `Deletion vector descriptor for ${file} has invalid offset ${offset} / sizeInBytes ${size}`,
    );
  }
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    throw corrupt(`Cannot open deletion vector file ${file}: ${messageOf(error)}`, error);
  }
  try {
    const version = Buffer.alloc(1);
    await handle.read(version, 0, 1, 0);
    if (version[0] !== 1)
      throw corrupt(`Deletion vector file ${file} has format version ${version[0]}, expected 1`);
    const frame = Buffer.alloc(size + 8);
    const { bytesRead } = await handle.read(frame, 0, frame.length, offset);
    if (bytesRead < frame.length) {
      throw corrupt(
        `Deletion vector file ${file} is truncated: ${bytesRead} of ${frame.length} bytes at ${offset}`,
      );
    }
    const stored = frame.readUInt32BE(0);
    if (stored !== size) {
      throw corrupt(
        `Deletion vector in ${file} at ${offset} is ${stored} bytes, the descriptor says ${size}`,
      );
    }
    const data = frame.subarray(4, 4 + size);
    const expected = frame.readUInt32BE(4 + size);
    const actual = crc32(data);
    if (actual !== expected) {
      throw corrupt(
        `Deletion vector in ${file} at ${offset} fails its CRC-32 check (stored ${expected.toString(16)}, computed ${actual.toString(16)})`,
      );
    }
    return data;
  } finally {
    await handle.close();
  }
}

/**
 * Loads the set of deleted row indexes of one data file. `source` names the log file the descriptor came from.
 * The decoded cardinality must equal `dv.cardinality`.
 */
export async function readDeletionVector(
  tableRoot: string,
  dv: DeletionVectorDescriptor,
  source = tableRoot,
): Promise<RowIndexSet> {
  const file = deletionVectorFile(tableRoot, dv, source);
  let bytes: Uint8Array;
  if (file === undefined) {
    const decoded = z85Decode(dv.pathOrInlineDv, `inline deletion vector in ${source}`);
    if (decoded.length < dv.sizeInBytes) {
      throw corrupt(
        `Inline deletion vector in ${source} decodes to ${decoded.length} bytes, expected ${dv.sizeInBytes}`,
      );
    }
    bytes = decoded.subarray(0, dv.sizeInBytes);
  } else {
    bytes = await readFramedBitmap(file, dv);
  }
  const what = describe(dv, file);
  const rows = decodeRoaringBitmapArray(bytes, what);
  if (rows.cardinality !== Number(dv.cardinality)) {
    throw corrupt(
      `Deletion vector ${what} holds ${rows.cardinality} rows, its descriptor says ${dv.cardinality}`,
    );
  }
  return rows;
}
