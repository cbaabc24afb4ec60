/**
 * MySQL/MariaDB positions as `Position` strings. A position records everything needed to resume: the binlog
 * file and offset (where this server's log continues), the GTID state after the last transaction (where any
 * server of the replication topology continues, after a failover), and the identity of the server that
 * wrote the log.
 *
 *     ~<ordinal, 24 digits> <file>:<offset, 20 digits> gtid=<GTID state> server=<flavor>/<server_id>[/<server_uuid>]
 *
 * e.g. `~000000000000000000000042 mysql-bin.000003:00000000000000001234 gtid=0-101-42 server=mariadb/101`.
 *
 * String order must be log order, and the pipeline compares positions across a failover (the saved position
 * from the old primary against the new primary's head and changes), where file names and offsets of two
 * servers say nothing about each other. So the leading key is the GTID ordinal ({@link gtidOrdinal}), which
 * grows with every transaction whichever server logged it; between positions of equal ordinal (the same
 * transaction state: a head position read between transactions, or a log with no GTIDs at all) the file and
 * offset decide, which is log order on one server. Docs: docs/mysql-positions.md.
 *
 * Positions written before GTIDs were recorded are plain `<file>:<offset, 20 digits>`. They still decode
 * ({@link DecodedPosition} `legacy`), and every new position sorts after every old one (`~` sorts after the
 * characters binlog file names are made of), which is right because they were all written earlier.
 */

import { TributaryError } from '../../core/errors.js';
import { asPosition, type Position } from '../../core/position.js';
import { type Flavor, gtidFlavor, gtidOrdinal } from './gtid.js';

/** Who wrote a binlog: a file and offset mean something only on that server. */
export interface ServerIdentity {
  readonly flavor: Flavor;
  /** `@@server_id`. */
  readonly serverId: number;
  /** `@@server_uuid`, MySQL only. */
  readonly serverUuid?: string;
}

export interface BinlogCoordinates {
  readonly file: string;
  readonly offset: number;
}

export interface BinlogPosition extends BinlogCoordinates {
  /** GTID state after the last transaction before this point, canonical text; `''` when the log has none. */
  readonly gtid: string;
  readonly server: ServerIdentity;
  /**
   * The sort key. Normally {@link gtidOrdinal} of `gtid`; a stream never lets it go down, so on a server whose
   * GTID order is not strict it may be higher (see binlog-reader.ts).
   */
  readonly ordinal: bigint;
}

/** A decoded position: a full one, or an old `<file>:<offset>` with nothing else known. */
export type DecodedPosition =
  | (BinlogPosition & { readonly legacy: false })
  | (BinlogCoordinates & { readonly legacy: true });

const ORDINAL_DIGITS = 24;
const OFFSET_DIGITS = 20;

export function encodeBinlogPosition(p: {
  readonly file: string;
  readonly offset: number;
  readonly gtid: string;
  readonly server: ServerIdentity;
  readonly ordinal?: bigint;
}): Position {
  const ordinal = String(p.ordinal ?? gtidOrdinal(p.gtid));
  if (ordinal.length > ORDINAL_DIGITS || /\s/.test(p.gtid)) {
    throw new TributaryError('INTERNAL', `GTID state ${p.gtid} cannot be encoded in a position`);
  }
  const s = p.server;
  const server = `${s.flavor}/${s.serverId}${s.serverUuid ? `/${s.serverUuid}` : ''}`;
  return asPosition(
    `~${ordinal.padStart(ORDINAL_DIGITS, '0')} ${p.file}:${String(p.offset).padStart(OFFSET_DIGITS, '0')} gtid=${p.gtid} server=${server}`,
  );
}

export function decodeBinlogPosition(position: Position | string): DecodedPosition {
  if (!position.startsWith('~')) return { legacy: true, ...coordinates(position, position) };
  const tokens = position.split(' ');
  const [head] = tokens;
  const serverToken = tokens.at(-1) ?? '';
  const gtidToken = tokens.at(-2) ?? '';
  const core = tokens.slice(1, -2).join(' ');
  const ordinalText = head?.slice(1) ?? '';
  const serverParts = serverToken.startsWith('server=') ? serverToken.slice(7).split('/') : [];
  const [flavor, idText, uuid] = serverParts;
  const serverId = Number(idText);
  const gtid = gtidToken.slice(5);
  if (
    tokens.length < 4 ||
    !/^\d+$/.test(ordinalText) ||
    !gtidToken.startsWith('gtid=') ||
    (flavor !== 'mariadb' && flavor !== 'mysql') ||
    !Number.isSafeInteger(serverId) ||
    serverId < 0 ||
    (flavor === 'mysql') !== (uuid !== undefined) ||
    serverParts.length > 3 ||
    (gtid !== '' && gtidFlavor(gtid) !== flavor)
  ) {
    throw notAPosition(position);
  }
  return {
    legacy: false,
    ...coordinates(core, position),
    gtid,
    server: { flavor, serverId, ...(uuid === undefined ? {} : { serverUuid: uuid }) },
    ordinal: BigInt(ordinalText),
  };
}

/** Same server: a file and offset written by one mean the same place on the other. */
export function sameServer(a: ServerIdentity, b: ServerIdentity): boolean {
  return a.flavor === b.flavor && a.serverId === b.serverId && a.serverUuid === b.serverUuid;
}

/** `MariaDB server_id 101` / `MySQL server_id 1 (server_uuid 3e11fa47-…)`, for messages. */
export function describeServer(s: ServerIdentity): string {
  return `${s.flavor === 'mariadb' ? 'MariaDB' : 'MySQL'} server_id ${s.serverId}${s.serverUuid ? ` (server_uuid ${s.serverUuid})` : ''}`;
}

/** `mysql-bin.000003:1234`, for messages. */
export function describeCoordinates(c: BinlogCoordinates): string {
  return `${c.file}:${c.offset}`;
}

function coordinates(text: string, position: string): BinlogCoordinates {
  const at = text.lastIndexOf(':');
  const offsetText = text.slice(at + 1);
  const offset = Number(offsetText);
  if (at <= 0 || !/^\d+$/.test(offsetText) || !Number.isSafeInteger(offset)) throw notAPosition(position);
  return { file: text.slice(0, at), offset };
}

function notAPosition(position: string): TributaryError {
  return new TributaryError(
    'STAGING_CORRUPT',
    `"${position}" is not a MySQL binlog position (file:offset, or "~<ordinal> <file>:<offset> gtid=… server=…").`,
  );
}

/**
 * How much binlog lies between two positions, for catch-up progress: transactions when both carry a GTID
 * ordinal, bytes when both are in the same binlog file, otherwise undefined (file sizes would take a query).
 */
export function binlogDistance(from: Position | string, to: Position | string): number | undefined {
  const a = decodeBinlogPosition(from);
  const b = decodeBinlogPosition(to);
  if (!a.legacy && !b.legacy && a.ordinal > 0n && b.ordinal >= a.ordinal)
    return Number(b.ordinal - a.ordinal);
  if (a.file === b.file && b.offset >= a.offset) return b.offset - a.offset;
  return undefined;
}
