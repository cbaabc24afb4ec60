/**
 * What a position needs from the server: who it is, where its binlog ends, and the GTID state at a point.
 * Each function runs on the connection it is given, so a snapshot reads them inside its own session.
 */
import type mysql from 'mysql2/promise';
import { TributaryError } from '../../core/errors.js';
import type { BinlogPosition, ServerIdentity } from './binlog-position.js';
import { type Flavor, gtidOrdinal, normalizeGtid } from './gtid.js';

type Conn = Pick<mysql.Connection, 'query'>;

export async function readServerIdentity(conn: Conn): Promise<ServerIdentity> {
  const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT @@server_id AS id, VERSION() AS version');
  const flavor: Flavor = /mariadb/i.test(String(rows[0]?.['version'] ?? '')) ? 'mariadb' : 'mysql';
  const serverId = Number(rows[0]?.['id']);
  if (flavor === 'mariadb') return { flavor, serverId };
  const [uuid] = await conn.query<mysql.RowDataPacket[]>('SELECT @@server_uuid AS uuid');
  return { flavor, serverId, serverUuid: String(uuid[0]?.['uuid'] ?? '').toLowerCase() };
}

interface BinlogStatus {
  readonly file: string;
  readonly offset: number;
  /** MySQL's Executed_Gtid_Set column (absent on MariaDB). */
  readonly executedGtidSet?: string;
}

/** `SHOW MASTER STATUS` (MySQL 8.4 renamed it `SHOW BINARY LOG STATUS`); undefined when binary logging is off. */
export async function readBinlogStatus(conn: Conn): Promise<BinlogStatus | undefined> {
  let rows: mysql.RowDataPacket[];
  try {
    [rows] = await conn.query<mysql.RowDataPacket[]>('SHOW MASTER STATUS');
  } catch (error) {
    if ((error as { errno?: number }).errno !== 1064) throw error;
    [rows] = await conn.query<mysql.RowDataPacket[]>('SHOW BINARY LOG STATUS');
  }
  const head = rows[0];
  if (!head) return undefined;
  const gtid = head['Executed_Gtid_Set'];
  return {
    file: String(head['File']),
    offset: Number(head['Position']),
    ...(typeof gtid === 'string' ? { executedGtidSet: gtid } : {}),
  };
}

/**
 * The current end of the binlog as a position. MySQL reports file, offset and executed GTID set in one row.
 * MariaDB has no such row, so `@@gtid_binlog_pos` is read before and after `SHOW MASTER STATUS`: both update
 * under the binlog lock, so when the two reads agree no transaction committed in between and the state
 * belongs to that offset. (`BINLOG_GTID_POS()` would be exact too, but it reads the binlog file from its
 * start, which is too slow to do on every catch-up round.)
 */
export async function readHeadPosition(
  conn: Conn,
  server: ServerIdentity,
): Promise<BinlogPosition | undefined> {
  if (server.flavor === 'mysql') {
    const status = await readBinlogStatus(conn);
    if (!status) return undefined;
    return position(status, normalizeGtid('mysql', status.executedGtidSet ?? ''), server);
  }
  for (let attempt = 1; ; attempt++) {
    const before = await binlogGtidPos(conn);
    const status = await readBinlogStatus(conn);
    if (!status) return undefined;
    const after = await binlogGtidPos(conn);
    // Under constant writes the reads may never agree; `before` is then a lower bound, which only makes a
    // catch-up run stop a few transactions early.
    if (before === after || attempt === 5) return position(status, before, server);
  }
}

/**
 * MariaDB: the GTID state at a file and offset of this server's binlog (`BINLOG_GTID_POS`, which reads the
 * file up to the offset). Undefined when the server cannot tell (no such file, or not an event boundary).
 */
export async function mariaDbGtidAt(conn: Conn, file: string, offset: number): Promise<string | undefined> {
  const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT BINLOG_GTID_POS(?, ?) AS gtid', [
    file,
    offset,
  ]);
  const gtid = rows[0]?.['gtid'];
  return typeof gtid === 'string' ? normalizeGtid('mariadb', gtid) : undefined;
}

async function binlogGtidPos(conn: Conn): Promise<string> {
  const [rows] = await conn.query<mysql.RowDataPacket[]>('SELECT @@GLOBAL.gtid_binlog_pos AS gtid');
  return normalizeGtid('mariadb', String(rows[0]?.['gtid'] ?? ''));
}

function position(status: BinlogStatus, gtid: string, server: ServerIdentity): BinlogPosition {
  return { file: status.file, offset: status.offset, gtid, server, ordinal: gtidOrdinal(gtid) };
}

/** The error for a source whose binary log is switched off. */
export function binlogOff(connectionName?: string): TributaryError {
  return new TributaryError(
    'SOURCE_MISCONFIGURED',
    connectionName === undefined
      ? 'The source has binary logging switched off, so changes cannot be captured.'
      : `The source of connection "${connectionName}" has binary logging switched off.`,
    {
      hint: 'Start the server with log_bin enabled (log-bin=mysql-bin), binlog_format=ROW and binlog_row_image=FULL.',
    },
  );
}
