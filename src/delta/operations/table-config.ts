/**
 * Table properties the operations read that `table-properties.ts` does not cover: byte sizes such as
 * `delta.targetFileSize = 128mb`.
 */
import { TributaryError } from '../../core/errors.js';
import type { Metadata } from '../actions.js';

const BYTES: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1024,
  kb: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1024 ** 4,
};

/** Bytes of `134217728`, `128mb`, `1g`, ... (binary units, as Spark's byte-size configs), or undefined. */
export function parseByteSize(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  if (!m) return undefined;
  const factor = BYTES[(m[2] as string).toLowerCase()];
  if (factor === undefined) return undefined;
  const bytes = Math.round(Number(m[1]) * factor);
  return bytes > 0 ? bytes : undefined;
}

/** 128 MiB: the OPTIMIZE target when neither the call nor `delta.targetFileSize` sets one. */
export const DEFAULT_TARGET_FILE_SIZE = 128 * 1024 * 1024;

/** `delta.targetFileSize` in bytes, or undefined when not set. */
export function targetFileSizeOf(metadata: Metadata): number | undefined {
  const key = 'delta.targetFileSize';
  const text = metadata.configuration[key];
  if (text === undefined) return undefined;
  const bytes = parseByteSize(text);
  if (bytes === undefined) {
    throw new TributaryError(
      'DELTA_CORRUPT',
      `Table property ${key} = '${text}' is not a byte size such as "128mb"`,
      {
        hint: `Fix it with ALTER TABLE ... SET TBLPROPERTIES ('${key}' = '128mb').`,
      },
    );
  }
  return bytes;
}
