import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

/**
 * A superuser client of the integration PostgreSQL. Values come back as the server's text, so tests compare
 * what the server holds rather than a rounded JavaScript copy of it.
 */
export async function pgAdmin(database = 'postgres'): Promise<pg.Client> {
  const { host, port, user, password } = inject('postgres');
  const client = new pg.Client({
    host,
    port,
    user,
    password,
    database,
    types: { getTypeParser: () => (value: string) => value },
  });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

export interface FreshPgDatabase extends AsyncDisposable {
  readonly name: string;
  /** A superuser client connected to this database. */
  readonly client: pg.Client;
  /** Drops the database (and slots of it left behind) and closes the client; safe to call twice. */
  drop(): Promise<void>;
}

/** A database no other test uses, named `<prefix>_<random>`. */
export async function freshPgDatabase(prefix: string): Promise<FreshPgDatabase> {
  if (!/^[a-z0-9_]{1,40}$/.test(prefix)) {
    throw new Error(`freshPgDatabase prefix must be 1 to 40 lower-case letters, digits or "_": ${prefix}`);
  }
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = await pgAdmin();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const client = await pgAdmin(name);
  let dropped: Promise<void> | undefined;
  const drop = (): Promise<void> => {
    dropped ??= (async () => {
      await client.end().catch(() => undefined);
      const admin = await pgAdmin();
      try {
        // A slot keeps its database from being dropped, and holds WAL for as long as it exists.
        await admin.query(
          'SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active',
          [name],
        );
        await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await admin.end();
      }
    })();
    return dropped;
  };
  return { name, client, drop, [Symbol.asyncDispose]: drop };
}
