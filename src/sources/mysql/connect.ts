/**
 * Connection settings and error classification for MySQL and MariaDB.
 *
 * Every value that leaves the driver must keep full precision, so the driver is told to hand back DECIMAL,
 * BIGINT, JSON and temporal values as strings. Sessions run in UTC so TIMESTAMP columns read the same
 * from a snapshot as from the binlog.
 */
import { isIP } from 'node:net';
import { checkServerIdentity, TLSSocket } from 'node:tls';
import mysql from 'mysql2/promise';
import { messageOf, TributaryError } from '../../core/errors.js';

export interface MySqlEndpoint {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** The name the user gave this connection, for messages. */
  readonly name: string;
  /** TLS, as MySQL's ssl-mode; `ca` is the PEM text of the trusted authority. Absent: plain TCP. */
  readonly tls?: { readonly mode: 'required' | 'verify_ca' | 'verify_identity'; readonly ca?: string };
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
    ...(endpoint.tls
      ? {
          ssl: {
            ...(endpoint.tls.ca === undefined ? {} : { ca: endpoint.tls.ca }),
            rejectUnauthorized: endpoint.tls.mode !== 'required',
            // mysql2 checks a host *name*, but for an IP literal it checks "localhost" instead; IP hosts are
            // verified by verifyPeerIdentity on every connection.
            verifyIdentity: endpoint.tls.mode === 'verify_identity' && isIP(endpoint.host) === 0,
          },
        }
      : {}),
  };
}

/** Node's and mysql2's names for a TLS handshake that failed or a certificate that was refused. */
const TLS_FAILURES = /^(HANDSHAKE_|ERR_TLS_|ERR_SSL_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|CERT_)/;

export async function openConnection(endpoint: MySqlEndpoint): Promise<mysql.Connection> {
  let conn: mysql.Connection | undefined;
  try {
    conn = await mysql.createConnection(driverOptions(endpoint));
    verifyPeerIdentity((conn as unknown as { connection: unknown }).connection, endpoint);
    await conn.query("SET SESSION time_zone = '+00:00'");
    return conn;
  } catch (error) {
    conn?.destroy();
    throw classifyMySqlError(error, endpoint);
  }
}

/**
 * verify_identity for an IP host: the certificate must list that IP (mysql2 cannot check it; see
 * driverOptions). Called on every connection before anything it returns is used.
 */
export function verifyPeerIdentity(coreConnection: unknown, endpoint: MySqlEndpoint): void {
  if (endpoint.tls?.mode !== 'verify_identity' || isIP(endpoint.host) === 0) return;
  const stream = (coreConnection as { stream?: unknown } | undefined)?.stream;
  if (!(stream instanceof TLSSocket)) {
    throw new TributaryError(
      'SOURCE_TLS_FAILED',
      `The connection to ${endpoint.host}:${endpoint.port} is not encrypted although ssl.mode is verify_identity.`,
      {
        hint: 'Enable TLS on the server (ssl_cert, ssl_key).',
      },
    );
  }
  // A resumed TLS session carries no certificate to check. mysql2 resumes only sessions of the same TLS
  // settings and peer, and every connection that opens such a session is checked here first (zongji's two
  // connections are checked together, before any event is used), so the peer was verified.
  if (stream.isSessionReused()) return;
  const mismatch = checkServerIdentity(endpoint.host, stream.getPeerCertificate(true));
  if (mismatch) {
    throw new TributaryError(
      'SOURCE_TLS_FAILED',
      `TLS to the source of connection "${endpoint.name}" (${endpoint.host}:${endpoint.port}) failed: ${mismatch.message}`,
      {
        hint: 'The server certificate must list this IP address in its subjectAltName; or connect by a host name it lists, or use verify_ca to skip the name check.',
      },
    );
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
  if (e.code && TLS_FAILURES.test(e.code)) {
    return new TributaryError(
      'SOURCE_TLS_FAILED',
      `TLS to the source of ${where} failed: ${e.code}: ${detail}`,
      {
        hint:
          endpoint.tls?.mode === 'verify_identity'
            ? 'Check that ssl.ca names the authority that signed the server certificate and that the certificate lists the host you connect to (or use verify_ca to skip the name check).'
            : 'Check that the server has TLS enabled and that ssl.ca names the authority that signed its certificate.',
        cause: error,
      },
    );
  }
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
