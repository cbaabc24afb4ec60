/**
 * The server-side objects logical replication needs: a publication naming the captured tables, a logical
 * slot decoding it with pgoutput, and a replica identity on each table that can carry its key.
 *
 * Tributary creates what is missing when the CDC user may, and otherwise stops with the exact statement an
 * administrator should run. It never widens what an existing publication publishes beyond the captured
 * tables, and never drops anything.
 */
import type pg from 'pg';
import { TributaryError } from '../../core/errors.js';
import type { TableId, TableSchema } from '../../core/table.js';
import { classifyPgError, type PgEndpoint, quotePgIdent } from './connect.js';
import { parseLsn } from './lsn.js';

export interface SlotState {
  readonly plugin: string | null;
  readonly database: string | null;
  readonly temporary: boolean;
  readonly active: boolean;
  /** `reserved`, `extended`, `unreserved` or `lost` (PostgreSQL 13+); null before 13. */
  readonly walStatus: string | null;
  readonly confirmedFlush: bigint | null;
  readonly restartLsn: bigint | null;
}

export async function readSlot(client: pg.Client, slot: string): Promise<SlotState | undefined> {
  const result = await client.query(
    `SELECT plugin, database, temporary::text AS temporary, active::text AS active, wal_status,
            confirmed_flush_lsn::text AS confirmed, restart_lsn::text AS restart
       FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const row = result.rows[0] as Record<string, string | null> | undefined;
  if (!row) return undefined;
  return {
    plugin: row['plugin'] ?? null,
    database: row['database'] ?? null,
    temporary: row['temporary'] === 'true',
    active: row['active'] === 'true',
    walStatus: row['wal_status'] ?? null,
    confirmedFlush: row['confirmed'] ? parseLsn(row['confirmed']) : null,
    restartLsn: row['restart'] ? parseLsn(row['restart']) : null,
  };
}

/**
 * Fails unless `slot` is a usable pgoutput slot of this database. A lost slot (WAL removed past
 * `max_slot_wal_keep_size`) and a missing slot (dropped, or not carried over by a failover) both mean the
 * changes since the last capture are gone: only a full refresh recovers.
 */
export function checkSlot(state: SlotState | undefined, slot: string, endpoint: PgEndpoint): SlotState {
  const where = `connection "${endpoint.name}"`;
  if (state === undefined) {
    throw new TributaryError(
      'SOURCE_HISTORY_LOST',
      `The replication slot "${slot}" of ${where} no longer exists, so the changes since the last capture cannot be read.`,
      {
        retry: 'resnapshot',
        hint: 'The slot was dropped, or the server was failed over to a replica that did not have it. A full refresh takes a new snapshot, and Tributary creates the slot anew.',
      },
    );
  }
  if (state.walStatus === 'lost') {
    throw new TributaryError(
      'SOURCE_HISTORY_LOST',
      `The replication slot "${slot}" of ${where} was invalidated (wal_status = 'lost'): the server removed WAL it still needed, because it exceeded max_slot_wal_keep_size.`,
      {
        retry: 'resnapshot',
        hint: `A full refresh takes a new snapshot and replaces the slot. Raise max_slot_wal_keep_size, or keep the pipeline's downtime below what it allows, so it does not happen again.`,
      },
    );
  }
  if (state.plugin !== 'pgoutput' || state.database !== endpoint.database) {
    throw new TributaryError(
      'SOURCE_MISCONFIGURED',
      `The replication slot "${slot}" exists but decodes ${state.plugin === 'pgoutput' ? `database "${state.database}"` : `with plugin "${state.plugin}"`}; Tributary needs a pgoutput slot of database "${endpoint.database}".`,
      {
        hint: 'Set slot_name on the gateway to a slot of its own, or drop the other slot if nothing uses it.',
      },
    );
  }
  return state;
}

/**
 * Makes sure publication `name` publishes every table of `tables`: creates it (FOR TABLE ...) when missing,
 * adds missing tables when it exists. With `allTables`, a new publication is FOR ALL TABLES, so tables that
 * appear later in a captured schema are published without a restart.
 */
export async function ensurePublication(
  client: pg.Client,
  endpoint: PgEndpoint,
  name: string,
  tables: readonly TableId[],
  options: { allTables: boolean },
): Promise<void> {
  const list = (ids: readonly TableId[]) =>
    ids.map((t) => `${quotePgIdent(t.schema)}.${quotePgIdent(t.table)}`).join(', ');
  const pub = await client.query(
    'SELECT puballtables::text AS alltables FROM pg_publication WHERE pubname = $1',
    [name],
  );
  let statement: string;
  if (pub.rows.length === 0) {
    // FOR ALL TABLES needs a superuser; an owner of the tables publishes them by name instead, and later
    // tables of a captured schema are added by name as they appear.
    const superuser = await client.query(
      'SELECT rolsuper::text AS s FROM pg_roles WHERE rolname = current_user',
    );
    const allTables = options.allTables && (superuser.rows[0] as { s?: string } | undefined)?.s === 'true';
    if (!allTables && tables.length === 0) return;
    // A partitioned table's changes then arrive under its own name rather than each partition's.
    const via = ' WITH (publish_via_partition_root = true)';
    statement = allTables
      ? `CREATE PUBLICATION ${quotePgIdent(name)} FOR ALL TABLES${via}`
      : `CREATE PUBLICATION ${quotePgIdent(name)} FOR TABLE ${list(tables)}${via}`;
  } else {
    if ((pub.rows[0] as Record<string, string>)['alltables'] === 'true') return;
    const published = await client.query(
      'SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = $1',
      [name],
    );
    const have = new Set(
      (published.rows as { schemaname: string; tablename: string }[]).map(
        (r) => `${r.schemaname}.${r.tablename}`,
      ),
    );
    const missing = tables.filter((t) => !have.has(`${t.schema}.${t.table}`));
    if (missing.length === 0) return;
    statement = `ALTER PUBLICATION ${quotePgIdent(name)} ADD TABLE ${list(missing)}`;
  }
  try {
    await client.query(statement);
  } catch (error) {
    const classified = classifyPgError(error, endpoint, `running ${statement}`);
    if (classified.code !== 'SOURCE_PRIVILEGE_MISSING') throw classified;
    throw new TributaryError(
      'SOURCE_PRIVILEGE_MISSING',
      `User "${endpoint.user}" of connection "${endpoint.name}" may not ${pub.rows.length === 0 ? 'create' : 'change'} the publication "${name}" that capture needs.`,
      {
        hint: `Have a database owner or superuser run:\n  ${statement};\nthen run again.`,
        cause: error,
      },
    );
  }
}

/**
 * Creates the slot in a replication session and exports its snapshot. The snapshot stays importable
 * (`SET TRANSACTION SNAPSHOT`) only while that session is open and idle, so the caller closes it once the
 * snapshot reader has imported it.
 */
export async function createSlotWithSnapshot(
  replication: pg.Client,
  endpoint: PgEndpoint,
  slot: string,
): Promise<{ consistentPoint: bigint; snapshotName: string }> {
  try {
    const result = await replication.query(
      `CREATE_REPLICATION_SLOT ${quotePgIdent(slot)} LOGICAL pgoutput (SNAPSHOT 'export')`,
    );
    const row = result.rows[0] as Record<string, string>;
    return {
      consistentPoint: parseLsn(String(row['consistent_point'])),
      snapshotName: String(row['snapshot_name']),
    };
  } catch (error) {
    const classified = classifyPgError(error, endpoint, `creating the replication slot "${slot}"`);
    if (classified.code === 'SOURCE_PRIVILEGE_MISSING') {
      throw new TributaryError(
        'SOURCE_PRIVILEGE_MISSING',
        `User "${endpoint.user}" of connection "${endpoint.name}" may not create replication slots.`,
        {
          hint: `Grant it: ALTER ROLE ${quotePgIdent(endpoint.user)} WITH REPLICATION; (on RDS: GRANT rds_replication TO ${quotePgIdent(endpoint.user)};)`,
          cause: error,
        },
      );
    }
    if (/max_replication_slots|all replication slots are in use/i.test(classified.message)) {
      throw new TributaryError(
        'SOURCE_MISCONFIGURED',
        `The source of connection "${endpoint.name}" has no free replication slot.`,
        {
          hint: 'Raise max_replication_slots (a restart is needed), or drop slots nothing uses (see tributary preflight).',
          cause: error,
        },
      );
    }
    throw classified;
  }
}

/**
 * The REPLICA IDENTITY a table needs so that every UPDATE and DELETE logs its key, or undefined when the one
 * it has does: the primary key (DEFAULT), the unique index chosen as key (USING INDEX), or the whole old row
 * for configured keys (FULL). The same choice preflight's key check reports.
 */
export function replicaIdentityFor(
  table: TableSchema,
  identity: 'default' | 'nothing' | 'full' | 'index',
): string | undefined {
  if (identity === 'full') return undefined;
  if (table.keySource === undefined) return identity === 'nothing' ? 'DEFAULT' : undefined;
  if (table.keySource.startsWith('unique:')) {
    return identity === 'index' ? undefined : `USING INDEX ${quotePgIdent(table.keySource.slice(7))}`;
  }
  return 'FULL';
}

/**
 * Sets the replica identity of captured tables that need one, before they are published (a published table
 * without one makes PostgreSQL refuse the application's UPDATEs and DELETEs). Only tables the CDC role owns
 * can be altered; for the others preflight has already stopped the run with the statement to run.
 */
export async function ensureReplicaIdentities(
  client: pg.Client,
  endpoint: PgEndpoint,
  tables: readonly {
    readonly table: TableSchema;
    readonly replicaIdentity: 'default' | 'nothing' | 'full' | 'index';
    readonly partitioned: boolean;
  }[],
  log: (message: string) => void,
): Promise<void> {
  for (const t of tables) {
    const wanted = t.partitioned ? undefined : replicaIdentityFor(t.table, t.replicaIdentity);
    if (wanted === undefined) continue;
    const name = `${quotePgIdent(t.table.id.schema)}.${quotePgIdent(t.table.id.table)}`;
    const statement = `ALTER TABLE ${name} REPLICA IDENTITY ${wanted}`;
    try {
      await client.query(statement);
      log(
        `${t.table.id.schema}.${t.table.id.table}: set REPLICA IDENTITY ${wanted} so that updates and deletes log its key`,
      );
    } catch (error) {
      throw new TributaryError(
        'SOURCE_PRIVILEGE_MISSING',
        `Could not set the replica identity of ${t.table.id.schema}.${t.table.id.table} on connection "${endpoint.name}": ${classifyPgError(error, endpoint).message}`,
        { hint: `As the table's owner: ${statement};`, cause: error },
      );
    }
  }
}
