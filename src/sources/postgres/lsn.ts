/**
 * PostgreSQL log sequence numbers: a 64-bit byte offset into the WAL, written by PostgreSQL as `X/Y` (the
 * high and low 32 bits in upper-case hex). LSNs stay bigints everywhere: they pass 2^53 on busy servers.
 *
 * As a `Position`, an LSN is 16 zero-padded upper-case hex digits, so plain string order is log order.
 */
import { TributaryError } from '../../core/errors.js';
import { asPosition, type Position } from '../../core/position.js';

const MAX_LSN = (1n << 64n) - 1n;
const TEXT_LSN = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;
const POSITION = /^[0-9A-F]{16}$/;

/** Parses PostgreSQL's `X/Y` form, e.g. `16/B374D848`, as the server prints it. */
export function parseLsn(text: string): bigint {
  const m = TEXT_LSN.exec(text);
  if (!m?.[1] || !m[2]) {
    // Only server output reaches here, so a mismatch means we misread what the server sent.
    throw new TributaryError('INTERNAL', `"${text}" is not a PostgreSQL LSN (X/Y in hex).`, {
      hint: 'Report it with the PostgreSQL version: the server printed an LSN in an unexpected form.',
    });
  }
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** PostgreSQL's `X/Y` form, as `pg_current_wal_lsn()` prints it. */
export function formatLsn(lsn: bigint): string {
  checkRange(lsn);
  const hi = (lsn >> 32n).toString(16).toUpperCase();
  const lo = (lsn & 0xffff_ffffn).toString(16).toUpperCase();
  return `${hi}/${lo}`;
}

export function encodePgPosition(lsn: bigint): Position {
  checkRange(lsn);
  return asPosition(lsn.toString(16).toUpperCase().padStart(16, '0'));
}

export function decodePgPosition(position: Position | string): bigint {
  if (!POSITION.test(position)) {
    throw new TributaryError(
      'STAGING_CORRUPT',
      `"${position}" is not a PostgreSQL position (16 upper-case hex digits of an LSN).`,
      {
        hint: 'The staging volume holds a position written by another source or damaged by hand; restore it from a backup or run a full refresh.',
      },
    );
  }
  return BigInt(`0x${position}`);
}

function checkRange(lsn: bigint): void {
  if (lsn < 0n || lsn > MAX_LSN) {
    throw new TributaryError('INTERNAL', `LSN ${lsn} is outside 0..2^64-1.`, {
      hint: 'A bug in Tributary: an LSN was computed wrongly; report it with the message.',
    });
  }
}
