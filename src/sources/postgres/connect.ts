/**
 * Connection settings and error classification for PostgreSQL.
 *
 * Every value must leave the driver as the server's own text, so `pg`'s type parsers are switched off (a
 * parsed int8 or timestamp would lose digits). Sessions fix the settings that shape that text (DateStyle,
 * IntervalStyle, TimeZone, bytea_output, extra_float_digits) as startup options, so a snapshot query and the
 * walsender's pgoutput produce the same text for the same value whatever the server's defaults are.
 */
import pg from 'pg';
import { messageOf, TributaryError } from '../../core/errors.js';

export interface PgEndpoint {
  readonly host: string;
  readonly port: number;
  readonly database: string;
  readonly user: string;
  readonly password: string;
  /** The name the user gave this connection, for messages. */
  readonly name: string;
  /** TLS as libpq's sslmode: require, verify-ca, verify-full (here `verify_identity`). Absent: plain TCP. */
  readonly tls?: { readonly mode: 'required' | 'verify_ca' | 'verify_identity'; readonly ca?: string };
}

/** Every Tributary session's settings: the server then prints each type in the one text form decoders expect. */
const SESSION_SETTINGS = [
  'DateStyle=ISO,YMD',
  'IntervalStyle=iso_8601',
  'TimeZone=UTC',
  'bytea_output=hex',
  'extra_float_digits=3',
  'client_encoding=UTF8',
  'application_name=tributary',
];

/** SESSION_SETTINGS as libpq's `options` (PGOPTIONS): what psql needs to print values exactly as Tributary sees them. */
export const SESSION_OPTIONS = SESSION_SETTINGS.map((s) => `-c ${s}`).join(' ');

/** Returns the text the server sent for every type, including arrays; NULL stays null. */
const textTypes = { getTypeParser: () => (value: string) => value };

export function clientConfig(endpoint: PgEndpoint, options: { replication?: boolean } = {}): pg.ClientConfig {
  const tls = endpoint.tls;
  return {
    host: endpoint.host,
    port: endpoint.port,
    database: endpoint.database,
    user: endpoint.user,
    password: endpoint.password,
    options: SESSION_OPTIONS,
    types: textTypes,
    connectionTimeoutMillis: 10_000,
    // A dead peer on an idle replication connection is otherwise noticed only by the TCP stack, minutes later.
    keepAlive: true,
    ...(options.replication ? { replication: 'database' } : {}),
    ...(tls
      ? {
          ssl: {
            ...(tls.ca === undefined ? {} : { ca: tls.ca }),
            rejectUnauthorized: tls.mode !== 'required',
            // verify-ca trusts the authority but not the name, as libpq does.
            ...(tls.mode === 'verify_ca' ? { checkServerIdentity: () => undefined } : {}),
          },
        }
      : {}),
  };
}

/** An open client; `replication` opens a walsender session (logical replication commands, no SQL). */
export async function openPgClient(
  endpoint: PgEndpoint,
  options: { replication?: boolean } = {},
): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(endpoint, options));
  // An error on an idle client (the server went away) is reported by the next query; unhandled it would
  // crash the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
    return client;
  } catch (error) {
    await client.end().catch(() => undefined);
    throw classifyPgError(error, endpoint);
  }
}

interface DriverError {
  code?: string;
  message?: string;
}

const TLS_FAILURES = /^(ERR_TLS_|ERR_SSL_|UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|CERT_)/;

/** Turns a driver error into a TributaryError that names the connection and says what to do. */
export function classifyPgError(error: unknown, endpoint: PgEndpoint, doing = 'connecting'): TributaryError {
  if (error instanceof TributaryError) return error;
  const e = (error ?? {}) as DriverError;
  const where = `connection "${endpoint.name}" (${endpoint.host}:${endpoint.port}/${endpoint.database})`;
  const detail = messageOf(error);
  const code = e.code ?? '';
  if (TLS_FAILURES.test(code) || /does not support SSL|SSL off|no encryption/i.test(detail)) {
    return new TributaryError('SOURCE_TLS_FAILED', `TLS to the source of ${where} failed: ${detail}`, {
      hint:
        endpoint.tls?.mode === 'verify_identity'
          ? 'Check that ssl.ca names the authority that signed the server certificate and that the certificate lists the host you connect to (or use verify_ca to skip the name check).'
          : 'Check that the server has ssl=on and that ssl.ca names the authority that signed its certificate; to connect without TLS, remove ssl from the connection or set hostssl rules in pg_hba.conf.',
      cause: error,
    });
  }
  if (
    ['ECONNREFUSED', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EPIPE'].includes(
      code,
    )
  ) {
    return new TributaryError('SOURCE_UNREACHABLE', `Cannot reach the source of ${where}: ${code}.`, {
      hint: 'Check that the server is running, that host and port in the connection are right, and that no firewall blocks the port.',
      cause: error,
    });
  }
  if (code === '' && /Connection terminated|timeout expired|connection timeout/i.test(detail)) {
    return new TributaryError(
      'SOURCE_UNREACHABLE',
      `Lost the connection to the source of ${where}: ${detail}`,
      {
        hint: 'The server closed the connection or stopped answering; capture retries with backoff.',
        cause: error,
      },
    );
  }
  switch (code) {
    case '28P01':
    case '28000':
      return new TributaryError(
        'SOURCE_AUTH_FAILED',
        `The source of ${where} rejected user "${endpoint.user}": ${detail}`,
        {
          hint: /pg_hba|no pg_hba/i.test(detail)
            ? `Add a pg_hba.conf line that lets "${endpoint.user}" connect from this host (a "replication" line too, for logical replication), then SELECT pg_reload_conf().`
            : 'Check the user name and the password stored in the secret the connection references (tributary secrets put ...).',
          cause: error,
        },
      );
    case '3D000':
      return new TributaryError(
        'SOURCE_TABLE_NOT_FOUND',
        `The database "${endpoint.database}" of ${where} does not exist.`,
        {
          hint: 'Check `database` in the connection.',
          cause: error,
        },
      );
    case '42501':
      return new TributaryError(
        'SOURCE_PRIVILEGE_MISSING',
        `User "${endpoint.user}" of ${where} lacks a privilege while ${doing}: ${detail}`,
        {
          hint: `Grant the CDC user what capture needs: ALTER ROLE ${endpoint.user} WITH REPLICATION; GRANT SELECT ON ALL TABLES IN SCHEMA <schema> TO ${endpoint.user}; and CREATE on the database if Tributary should create the publication (or create it yourself; see tributary preflight).`,
          cause: error,
        },
      );
    case '57P01':
    case '57P02':
    case '57P03':
    case '53300':
    case '40001':
    case '40P01':
      return new TributaryError(
        'SOURCE_UNREACHABLE',
        `The source of ${where} is not available right now (${code}): ${detail}`,
        {
          hint: 'The server is shutting down, starting, or out of connections; capture retries with backoff.',
          cause: error,
        },
      );
    default:
      if (code.startsWith('08')) {
        return new TributaryError(
          'SOURCE_UNREACHABLE',
          `Lost the connection to the source of ${where}: ${detail}`,
          {
            cause: error,
          },
        );
      }
      return new TributaryError(
        'SOURCE_QUERY_FAILED',
        `The source of ${where} failed while ${doing}: ${detail}`,
        {
          cause: error,
        },
      );
  }
}

/** Quotes an identifier for SQL and for replication commands. */
export function quotePgIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

/** Quotes a string literal (standard_conforming_strings is on in every supported version). */
export function quotePgString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
