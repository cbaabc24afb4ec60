/**
 * Connection settings and error classification for MySQL and MariaDB.
 *
 * Every value that leaves the driver must keep full precision, so the driver is told to hand back DECIMAL,
 * BIGINT, JSON and temporal values as strings. Sessions run in UTC so TIMESTAMP columns read the same
 * from a snapshot as from the binlog.
 */
import mysql from 'mysql2/promise';
import { messageOf, TributaryError } from '../../core/errors.js';

export interface MySqlEndpoint {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** The name the user gave this connection, for messages. */
  readonly name: string;
}

export function driverOptions(endpoint: MySqlEndpoint): mysql.ConnectionOptions {
  return {
    host: endpoint.host,
    port: endpoint.port,
    user: endpoint.user,
    password: endpoint.password,
    charset: 'utf8mb4',
    timezone: 'Z',
    dateStrings: true,
    supportBigNumbers: true,
    bigNumberStrings: true,
    decimalNumbers: false,
    jsonStrings: true,
    connectTimeout: 10_000,
  };
}

export async function openConnection(endpoint: MySqlEndpoint): Promise<mysql.Connection> {
  try {
    const conn = await mysql.createConnection(driverOptions(endpoint));
    await conn.query("SET SESSION time_zone = '+00:00'");
    return conn;
  } catch (error) {
    throw classifyMySqlError(error, endpoint);
  }
}

interface DriverError {
  code?: string;
  errno?: number;
  sqlMessage?: string;
}

/** Turns a driver error into a TributaryError that names the connection and says what to do. */
export function classifyMySqlError(
  error: unknown,
  endpoint: MySqlEndpoint,
  doing = 'connecting',
): TributaryError {
  if (error instanceof TributaryError) return error;
  const e = (error ?? {}) as DriverError;
  const where = `connection "${endpoint.name}" (${endpoint.host}:${endpoint.port})`;
  const detail = e.sqlMessage ?? messageOf(error);
  switch (e.code) {
    case 'ECONNREFUSED':
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'ECONNRESET':
    case 'PROTOCOL_CONNECTION_LOST':
      return new TributaryError('SOURCE_UNREACHABLE', `Cannot reach the source of ${where}: ${e.code}.`, {
        hint: 'Check that the server is running and that host and port in the connection are right, and that no firewall blocks the port.',
        cause: error,
      });
    case 'ER_ACCESS_DENIED_ERROR':
    case 'ER_DBACCESS_DENIED_ERROR':
      return new TributaryError(
        'SOURCE_AUTH_FAILED',
        `The source of ${where} rejected user "${endpoint.user}": ${detail}`,
        {
          hint: 'Check the user name and the password stored in the secret the connection references (tributary secrets put ...).',
          cause: error,
        },
      );
    case 'ER_SPECIFIC_ACCESS_DENIED_ERROR':
    case 'ER_TABLEACCESS_DENIED_ERROR':
    case 'ER_COLUMNACCESS_DENIED_ERROR':
      return new TributaryError(
        'SOURCE_PRIVILEGE_MISSING',
        `User "${endpoint.user}" of ${where} lacks a privilege while ${doing}: ${detail}`,
        {
          hint: `Grant the CDC user what capture needs: GRANT SELECT, REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '${endpoint.user}'@'<host>' (MariaDB 10.5+: also BINLOG MONITOR).`,
          cause: error,
        },
      );
    default:
      return new TributaryError(
        'SOURCE_QUERY_FAILED',
        `The source of ${where} failed while ${doing}: ${detail}`,
        {
          cause: error,
        },
      );
  }
}
