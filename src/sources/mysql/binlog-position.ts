/**
 * MySQL/MariaDB positions as `Position` strings: `<binlog file>:<offset, zero-padded to 20 digits>`.
 * Binlog file names share one base name and a zero-padded sequence number, so plain string comparison
 * of the encoded form follows log order.
 */

import { TributaryError } from '../../core/errors.js';
import { asPosition, type Position } from '../../core/position.js';

export interface BinlogCoordinates {
  readonly file: string;
  readonly offset: number;
}

export function encodeBinlogPosition(c: BinlogCoordinates): Position {
  return asPosition(`${c.file}:${String(c.offset).padStart(20, '0')}`);
}

export function decodeBinlogPosition(position: Position | string): BinlogCoordinates {
  const at = position.lastIndexOf(':');
  const offset = Number(position.slice(at + 1));
  if (at <= 0 || !Number.isSafeInteger(offset) || offset < 0) {
    throw new TributaryError(
      'STAGING_CORRUPT',
      `"${position}" is not a MySQL binlog position (file:offset).`,
    );
  }
  return { file: position.slice(0, at), offset };
}
