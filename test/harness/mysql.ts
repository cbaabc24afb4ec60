import { randomBytes } from 'node:crypto';
import { type Connection, type ConnectionOptions, createConnection } from 'mysql2/promise';
import { inject } from 'vitest';

/**
 * A root connection to the integration server. Dates come back as strings and large integers as strings, so
 * that tests compare what the server holds rather than a rounded JavaScript copy of it.
 */
export async function adminConnection(overrides: ConnectionOptions = {}): Promise<Connection> {
  const { host, port, user, password } = inject('mysql');
  return createConnection({
    host,
    port,
    user,
    password,
    charset: 'utf8mb4',
    multipleStatements: true,
    dateStrings: true,
    supportBigNumbers: true,
    ...overrides,
  });
}

export interface FreshDatabase extends AsyncDisposable {
  /** Unquoted; safe to put between backquotes. */
  readonly name: string;
  /** An admin connection whose default database is this one. */
  readonly conn: Connection;
  /** Drops the database and closes the connection; safe to call twice. */
  drop(): Promise<void>;
}

/** Where a MariaDB other than the integration server listens, with its root user. */
export interface ServerAddress {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
}

/**
 * Creates a database no other test uses, named `<prefix>_<random>`, so that test files sharing the server
 * neither collide nor depend on each other's leftovers. On the integration server, or on `server`.
 */
export async function freshDatabase(prefix: string, server?: ServerAddress): Promise<FreshDatabase> {
  if (!/^[A-Za-z0-9_]{1,40}$/.test(prefix)) {
    throw new Error(
      `freshDatabase prefix must be 1 to 40 letters, digits or underscores: ${JSON.stringify(prefix)}`,
    );
  }
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = await adminConnection({ ...server });
  try {
    await admin.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4`);
  } finally {
    await admin.end();
  }
  const conn = await adminConnection({ ...server, database: name });
  let dropped: Promise<void> | undefined;
  const drop = (): Promise<void> => {
    dropped ??= (async () => {
      try {
        await conn.query(`DROP DATABASE IF EXISTS \`${name}\``);
      } finally {
        await conn.end();
      }
    })();
    return dropped;
  };
  return { name, conn, drop, [Symbol.asyncDispose]: drop };
}
