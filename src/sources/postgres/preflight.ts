/**
 * The source checks of the production checklist (reference 000, sections 1, 2 and 4) for PostgreSQL. Each
 * check reports what it saw and, when it is not a PASS, the exact statement or setting that fixes it.
 * Evidence never includes a secret, and stays the same from one run to the next while nothing changes (WAL
 * amounts are rounded down to a power of two), because a continuous run logs each warning once per evidence.
 *
 * {@link gatherPreflightFacts} does all the reading; {@link evaluatePreflight} is pure, so every verdict can
 * be tested without a server.
 */
import type { Finding, ReadinessContext } from '../../core/ports.js';
import { type TableId, tableKey } from '../../core/table.js';
import { type PgEndpoint, quotePgIdent, quotePgString } from './connect.js';
import {
  chooseKey,
  type FoundRelations,
  findRelations,
  identityColumns,
  isTrue,
  type PgUniqueIndex,
  qualifiedName,
  type ReplicaIdentity,
  readUniqueIndexes,
  replicaIdentityOf,
} from './schema-reader.js';
import { type PgQueryable, rowsOf } from './type-mapping.js';

const S1 = '1. PostgreSQL Configuration';
const S2 = '2. PostgreSQL Security and Access Control';
const S4 = '4. PostgreSQL Performance Baseline';

/** The oldest release whose catalogs the checks (and the schema reader) use: attgenerated, pg_partition_tree. */
const MIN_VERSION = 120000;

export type PgPreflightEndpoint = Pick<PgEndpoint, 'host' | 'port' | 'database' | 'user'>;

export interface PgPreflightContext extends ReadinessContext {
  /** The gateway's publication; checked when given. */
  readonly publication?: string;
  /** The gateway's slot: inactive between runs by design, so it is reported on its own, not as stale. */
  readonly slot?: string;
}

export interface PgSlotFact {
  readonly name: string;
  readonly type: string;
  readonly active: boolean;
  /** `reserved`, `extended`, `unreserved` or `lost` (PostgreSQL 13+); null before 13. */
  readonly walStatus: string | null;
  /** Bytes of WAL kept for the slot (current LSN − restart_lsn); null when it reserves none. */
  readonly retainedBytes: number | null;
}

/** One relation whose replica identity decides what an UPDATE or DELETE logs: a table or a leaf partition. */
export interface PgIdentityUnit {
  readonly id: TableId;
  readonly replicaIdentity: ReplicaIdentity;
  readonly indexes: readonly PgUniqueIndex[];
}

export interface PgTableFact {
  readonly id: TableId;
  readonly relkind: string;
  readonly estimatedRows: number;
  readonly columns: readonly string[];
  readonly indexes: readonly PgUniqueIndex[];
  readonly replicaIdentity: ReplicaIdentity;
  /** The table itself, or every leaf partition of a partitioned table. */
  readonly identityUnits: readonly PgIdentityUnit[];
  readonly canSelect: boolean;
  readonly schemaUsage: boolean;
  /** The CDC user owns it (or is a member of its owner). */
  readonly owned: boolean;
  readonly rowSecurity: boolean;
}

export interface PgPublicationFact {
  readonly allTables: boolean;
  readonly insert: boolean;
  readonly update: boolean;
  readonly delete: boolean;
  readonly truncate: boolean;
  readonly viaRoot: boolean;
  readonly owned: boolean;
  /** Published tables by `schema.table`, with the column list (PostgreSQL 15+) when the publication has one. */
  readonly tables: ReadonlyMap<
    string,
    { readonly columns: readonly string[] | null; readonly rowFilter: string | null }
  >;
}

export interface PgPreflightFacts {
  readonly versionNum: number;
  readonly version: string;
  readonly inRecovery: boolean;
  readonly database: string;
  readonly settings: Readonly<Record<string, string>>;
  readonly slots: readonly PgSlotFact[];
  readonly walSenders: number;
  /** Average WAL bytes per hour since pg_stat_wal was reset (14+), when that is at least an hour ago. */
  readonly walBytesPerHour: number | null;
  readonly user: {
    readonly name: string;
    readonly superuser: boolean;
    readonly replication: boolean;
    readonly bypassRls: boolean;
    readonly rdsReplication: boolean;
    readonly createOnDatabase: boolean;
  };
  readonly ssl: { readonly version: string; readonly cipher: string } | null;
  readonly found: Pick<FoundRelations, 'missingSchemas' | 'missingTables'>;
  /** Relations the selection names that are not tables (views, ...), by `schema.table`. */
  readonly notTables: readonly { readonly id: TableId; readonly relkind: string }[];
  readonly tables: readonly PgTableFact[];
  /** Undefined when no publication name is given; null when it does not exist. */
  readonly publication?: PgPublicationFact | null;
}

export async function runPostgresPreflight(
  db: PgQueryable,
  endpoint: PgPreflightEndpoint,
  context: PgPreflightContext,
): Promise<Finding[]> {
  return evaluatePreflight(await gatherPreflightFacts(db, context), endpoint, context);
}

export async function gatherPreflightFacts(
  db: PgQueryable,
  context: PgPreflightContext,
): Promise<PgPreflightFacts> {
  const one = async (sql: string, values?: unknown[]) => rowsOf(await db.query(sql, values))[0] ?? {};
  const head = await one(
    `SELECT current_setting('server_version_num')::int AS num, current_setting('server_version') AS version,
            pg_is_in_recovery() AS recovery, current_database() AS db`,
  );
  const versionNum = Number(head['num']);
  const base = {
    versionNum,
    version: String(head['version']),
    inRecovery: isTrue(head['recovery']),
    database: String(head['db']),
  };
  const empty = {
    settings: {},
    slots: [],
    walSenders: 0,
    walBytesPerHour: null,
    user: {
      name: '',
      superuser: false,
      replication: false,
      bypassRls: false,
      rdsReplication: false,
      createOnDatabase: false,
    },
    ssl: null,
    found: { missingSchemas: [], missingTables: [] },
    notTables: [],
    tables: [],
  };
  if (versionNum < MIN_VERSION) return { ...base, ...empty };

  const settingRows = rowsOf(
    await db.query('SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])', [
      ['wal_level', 'max_replication_slots', 'max_wal_senders', 'max_slot_wal_keep_size', 'ssl'],
    ]),
  );
  const settings = Object.fromEntries(settingRows.map((r) => [String(r['name']), String(r['setting'])]));

  const lsn = 'CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END';
  const slots = rowsOf(
    await db.query(
      `SELECT slot_name, slot_type, active, ${versionNum >= 130000 ? 'wal_status' : 'NULL::text AS wal_status'},
              pg_wal_lsn_diff(${lsn}, restart_lsn)::float8 AS retained
         FROM pg_replication_slots ORDER BY slot_name`,
    ),
  ).map(
    (r): PgSlotFact => ({
      name: String(r['slot_name']),
      type: String(r['slot_type']),
      active: isTrue(r['active']),
      walStatus: r['wal_status'] === null || r['wal_status'] === undefined ? null : String(r['wal_status']),
      retainedBytes: r['retained'] === null || r['retained'] === undefined ? null : Number(r['retained']),
    }),
  );
  const walSenders = Number((await one('SELECT count(*)::int AS n FROM pg_stat_replication'))['n']);
  let walBytesPerHour: number | null = null;
  if (versionNum >= 140000) {
    const wal = await one(
      'SELECT wal_bytes::float8 AS bytes, extract(epoch FROM now() - stats_reset)::float8 AS seconds FROM pg_stat_wal',
    );
    const seconds = Number(wal['seconds']);
    if (seconds >= 3600) walBytesPerHour = (Number(wal['bytes']) / seconds) * 3600;
  }

  const u = await one(
    `SELECT r.rolname, r.rolsuper, r.rolreplication, r.rolbypassrls,
            EXISTS (SELECT 1 FROM pg_roles g
                     WHERE g.rolname = 'rds_replication' AND pg_has_role(r.oid, g.oid, 'MEMBER')) AS rds_replication,
            has_database_privilege(current_database(), 'CREATE') AS create_on_db
       FROM pg_roles r WHERE r.rolname = current_user`,
  );
  const user = {
    name: String(u['rolname']),
    superuser: isTrue(u['rolsuper']),
    replication: isTrue(u['rolreplication']),
    bypassRls: isTrue(u['rolbypassrls']),
    rdsReplication: isTrue(u['rds_replication']),
    createOnDatabase: isTrue(u['create_on_db']),
  };
  const sslRow = rowsOf(
    await db.query('SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()'),
  )[0];
  const ssl =
    sslRow && isTrue(sslRow['ssl'])
      ? { version: String(sslRow['version']), cipher: String(sslRow['cipher']) }
      : null;

  const found = await findRelations(db, context.selection);
  const captured = found.relations.filter((r) => r.relkind === 'r' || r.relkind === 'p');
  const relids = captured.map((r) => r.relid);
  const access = new Map<number, Record<string, unknown>>();
  const columns = new Map<number, string[]>();
  const leaves = new Map<number, { relid: number; id: TableId; replicaIdentity: ReplicaIdentity }[]>();
  if (relids.length > 0) {
    for (const r of rowsOf(
      await db.query(
        `SELECT c.oid::int8 AS relid, has_table_privilege(c.oid, 'SELECT') AS can_select,
                has_schema_privilege(c.relnamespace, 'USAGE') AS schema_usage,
                pg_has_role(c.relowner, 'USAGE') AS owned
           FROM pg_class c WHERE c.oid = ANY($1::oid[])`,
        [relids.map(String)],
      ),
    )) {
      access.set(Number(r['relid']), r);
    }
    for (const r of rowsOf(
      await db.query(
        `SELECT attrelid::int8 AS relid, attname FROM pg_attribute
          WHERE attrelid = ANY($1::oid[]) AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
          ORDER BY attrelid, attnum`,
        [relids.map(String)],
      ),
    )) {
      const relid = Number(r['relid']);
      columns.set(relid, [...(columns.get(relid) ?? []), String(r['attname'])]);
    }
    const partitioned = captured.filter((r) => r.relkind === 'p').map((r) => r.relid);
    if (partitioned.length > 0) {
      for (const r of rowsOf(
        await db.query(
          `SELECT t.root::int8 AS root, c.oid::int8 AS relid, n.nspname, c.relname, c.relreplident
             FROM unnest($1::oid[]) AS t(root)
             CROSS JOIN LATERAL pg_partition_tree(t.root::regclass) p
             JOIN pg_class c ON c.oid = p.relid
             JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE p.isleaf
            ORDER BY n.nspname, c.relname`,
          [partitioned.map(String)],
        ),
      )) {
        const root = Number(r['root']);
        leaves.set(root, [
          ...(leaves.get(root) ?? []),
          {
            relid: Number(r['relid']),
            id: { schema: String(r['nspname']), table: String(r['relname']) },
            replicaIdentity: replicaIdentityOf(r['relreplident']),
          },
        ]);
      }
    }
  }
  const leafRelids = [...leaves.values()].flat().map((l) => l.relid);
  const indexes = await readUniqueIndexes(db, [...relids, ...leafRelids]);
  const tables = captured.map((rel): PgTableFact => {
    const a = access.get(rel.relid) ?? {};
    const tableIndexes = indexes.get(rel.relid) ?? [];
    return {
      id: rel.id,
      relkind: rel.relkind,
      estimatedRows: rel.estimatedRows,
      columns: columns.get(rel.relid) ?? [],
      indexes: tableIndexes,
      replicaIdentity: rel.replicaIdentity,
      identityUnits:
        rel.relkind === 'p'
          ? (leaves.get(rel.relid) ?? []).map((l) => ({
              id: l.id,
              replicaIdentity: l.replicaIdentity,
              indexes: indexes.get(l.relid) ?? [],
            }))
          : [{ id: rel.id, replicaIdentity: rel.replicaIdentity, indexes: tableIndexes }],
      canSelect: isTrue(a['can_select']),
      schemaUsage: isTrue(a['schema_usage']),
      owned: isTrue(a['owned']),
      rowSecurity: rel.rowSecurity,
    };
  });

  let publication: PgPublicationFact | null | undefined;
  if (context.publication !== undefined) {
    const p = rowsOf(
      await db.query(
        `SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate,
                ${versionNum >= 130000 ? 'pubviaroot' : 'false AS pubviaroot'}, pg_has_role(pubowner, 'USAGE') AS owned
           FROM pg_publication WHERE pubname = $1`,
        [context.publication],
      ),
    )[0];
    if (p === undefined) {
      publication = null;
    } else {
      const extra = versionNum >= 150000 ? ', to_json(attnames)::text AS attnames, rowfilter' : '';
      const published = rowsOf(
        await db.query(`SELECT schemaname, tablename${extra} FROM pg_publication_tables WHERE pubname = $1`, [
          context.publication,
        ]),
      );
      publication = {
        allTables: isTrue(p['puballtables']),
        insert: isTrue(p['pubinsert']),
        update: isTrue(p['pubupdate']),
        delete: isTrue(p['pubdelete']),
        truncate: isTrue(p['pubtruncate']),
        viaRoot: isTrue(p['pubviaroot']),
        owned: isTrue(p['owned']),
        tables: new Map(
          published.map((r) => [
            `${r['schemaname']}.${r['tablename']}`,
            {
              columns:
                typeof r['attnames'] === 'string' ? (JSON.parse(r['attnames']) as string[] | null) : null,
              rowFilter: typeof r['rowfilter'] === 'string' ? r['rowfilter'] : null,
            },
          ]),
        ),
      };
    }
  }

  return {
    ...base,
    settings,
    slots,
    walSenders,
    walBytesPerHour,
    user,
    ssl,
    found: { missingSchemas: found.missingSchemas, missingTables: found.missingTables },
    notTables: found.relations
      .filter((r) => r.relkind !== 'r' && r.relkind !== 'p')
      .map((r) => ({ id: r.id, relkind: r.relkind })),
    tables,
    ...(publication === undefined ? {} : { publication }),
  };
}

function hours(h: number): string {
  return `${Math.round(h * 10) / 10} h`;
}

/** A byte count rounded down to a power of two, so evidence changes rarely as WAL grows. */
export function atLeast(bytes: number): string {
  if (bytes < 1024) return `${Math.max(0, Math.floor(bytes))} bytes`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `at least ${2 ** Math.floor(Math.log2(value))} ${units[unit]}`;
}

/** Megabytes, rounded up to a whole gigabyte once it is more than one: a setting value for ALTER SYSTEM. */
function sizeSetting(megabytes: number): string {
  return megabytes > 1024 ? `${Math.ceil(megabytes / 1024)}GB` : `${Math.max(1, Math.ceil(megabytes))}MB`;
}

const RELKIND: Record<string, string> = {
  v: 'a view',
  m: 'a materialized view',
  f: 'a foreign table',
  S: 'a sequence',
  i: 'an index',
  I: 'a partitioned index',
  c: 'a composite type',
  t: 'a TOAST table',
};

export function evaluatePreflight(
  facts: PgPreflightFacts,
  endpoint: PgPreflightEndpoint,
  context: PgPreflightContext,
): Finding[] {
  const findings: Finding[] = [];
  const add = (f: Finding) => findings.push(f);
  const where = `${endpoint.database} at ${endpoint.host}:${endpoint.port}`;

  // Section 1: the server.
  if (facts.versionNum < MIN_VERSION) {
    add({
      check: 'server_version',
      section: S1,
      title: 'PostgreSQL 12 or later',
      status: 'FAIL',
      evidence: `PostgreSQL ${facts.version} (${where})`,
      fix: 'Upgrade to a supported PostgreSQL release (13 or later); logical replication before 12 lacks what capture relies on.',
    });
    return findings;
  }
  add({
    check: 'server_version',
    section: S1,
    title: 'PostgreSQL 12 or later',
    status: 'PASS',
    evidence: `PostgreSQL ${facts.version} (${where})${facts.inRecovery ? ', a standby' : ''}`,
  });
  const s = (name: string) => facts.settings[name] ?? '';
  add(
    s('wal_level') === 'logical'
      ? {
          check: 'wal_level',
          section: S1,
          title: 'wal_level is logical',
          status: 'PASS',
          evidence: 'wal_level = logical',
        }
      : {
          check: 'wal_level',
          section: S1,
          title: 'wal_level is logical',
          status: 'FAIL',
          evidence: `wal_level = ${s('wal_level')}`,
          fix: "ALTER SYSTEM SET wal_level = 'logical'; then restart PostgreSQL (on RDS and Aurora: set rds.logical_replication = 1 in the parameter group and reboot). Below logical, the WAL does not carry row changes that can be decoded.",
        },
  );

  const own = context.slot === undefined ? undefined : facts.slots.find((x) => x.name === context.slot);
  const maxSlots = Number(s('max_replication_slots'));
  const neededSlots = own ? 0 : 1;
  const slotEvidence = `${facts.slots.length} of max_replication_slots = ${maxSlots} in use${context.slot === undefined ? '' : own ? `, including this gateway's ${context.slot}` : `; this gateway's ${context.slot} is still to be created`}`;
  add(
    maxSlots - facts.slots.length >= neededSlots
      ? {
          check: 'replication_slots',
          section: S1,
          title: 'A replication slot is available',
          status: 'PASS',
          evidence: slotEvidence,
        }
      : {
          check: 'replication_slots',
          section: S1,
          title: 'A replication slot is available',
          status: 'FAIL',
          evidence: slotEvidence,
          fix: `ALTER SYSTEM SET max_replication_slots = ${facts.slots.length + neededSlots + 1}; then restart PostgreSQL, or drop a slot nothing uses (see below).`,
        },
  );
  const maxSenders = Number(s('max_wal_senders'));
  const neededSenders = own?.active ? 0 : 1;
  const senderEvidence = `${facts.walSenders} of max_wal_senders = ${maxSenders} in use`;
  add(
    maxSenders - facts.walSenders >= neededSenders
      ? {
          check: 'wal_senders',
          section: S1,
          title: 'A WAL sender is available',
          status: 'PASS',
          evidence: senderEvidence,
        }
      : {
          check: 'wal_senders',
          section: S1,
          title: 'A WAL sender is available',
          status: 'FAIL',
          evidence: senderEvidence,
          fix: `ALTER SYSTEM SET max_wal_senders = ${facts.walSenders + neededSenders + 2}; then restart PostgreSQL (it must stay at least as high as on every standby).`,
        },
  );

  // Retention: a slot keeps WAL until it is consumed, up to max_slot_wal_keep_size.
  const r = context.retention;
  const requiredHours = 2 * (r.maxDowntimeHours + r.maxPipelineHours + r.bufferHours);
  const formula = `2 × (${r.maxDowntimeHours} h downtime + ${r.maxPipelineHours} h pipeline + ${r.bufferHours} h buffer) = ${hours(requiredHours)}`;
  const rate = facts.walBytesPerHour;
  const requiredMb = rate === null ? null : (rate * requiredHours) / 2 ** 20;
  const setting =
    requiredMb === null
      ? `ALTER SYSTEM SET max_slot_wal_keep_size = '<the WAL your server writes in ${hours(requiredHours)}>'; SELECT pg_reload_conf();`
      : `ALTER SYSTEM SET max_slot_wal_keep_size = '${sizeSetting(requiredMb)}'; SELECT pg_reload_conf(); (the WAL written in ${hours(requiredHours)} at the average rate since pg_stat_wal was reset, ${sizeSetting(rate === null ? 0 : rate / 2 ** 20)}/h)`;
  const keep = facts.settings['max_slot_wal_keep_size'];
  if (keep === undefined || Number(keep) < 0) {
    add({
      check: 'wal_retention',
      section: S1,
      title: 'WAL retention for the slot',
      status: 'WARN',
      evidence: `${keep === undefined ? `PostgreSQL ${facts.version} has no max_slot_wal_keep_size` : 'max_slot_wal_keep_size = -1'}: the slot keeps WAL however long the pipeline is down, which meets the required ${formula}, but a pipeline that never comes back fills the WAL disk and stops the server`,
      fix: `${keep === undefined ? 'Monitor the pg_wal disk and alert at 70%; on PostgreSQL 13+ ' : ''}${setting} Then a pipeline down longer than that loses its slot and needs a full refresh, instead of the server running out of disk.`,
    });
  } else if (requiredMb === null) {
    add({
      check: 'wal_retention',
      section: S1,
      title: 'WAL retention for the slot',
      status: 'WARN',
      evidence: `max_slot_wal_keep_size = ${keep} MB; the WAL rate is unknown (pg_stat_wal ${facts.versionNum < 140000 ? 'needs PostgreSQL 14' : 'was reset less than an hour ago'}), so it cannot be compared with the required ${formula}`,
      fix: `Check that ${keep} MB holds more WAL than the server writes in ${hours(requiredHours)}; otherwise ${setting}`,
    });
  } else {
    const enough = Number(keep) >= requiredMb;
    add({
      check: 'wal_retention',
      section: S1,
      title: 'WAL retention for the slot',
      status: enough ? 'PASS' : 'FAIL',
      evidence: `max_slot_wal_keep_size = ${keep} MB; ${enough ? 'at least' : 'less than'} the WAL of the required ${formula}`,
      ...(enough
        ? {}
        : {
            fix: `${setting} Otherwise a pipeline that is down longer than the retention loses its slot and needs a full refresh.`,
          }),
    });
  }

  if (own) {
    const lost = own.walStatus === 'lost';
    const unreserved = own.walStatus === 'unreserved';
    add({
      check: `slot:${own.name}`,
      section: S1,
      title: `The gateway's slot ${own.name} is usable`,
      status: lost ? 'FAIL' : unreserved ? 'WARN' : own.active ? 'PASS' : 'INFO',
      evidence: `${own.active ? 'active' : 'inactive'}${own.walStatus === null ? '' : `, wal_status = ${own.walStatus}`}${own.retainedBytes === null ? '' : `, holding ${atLeast(own.retainedBytes)} of WAL`}`,
      ...(lost
        ? {
            fix: 'The server removed WAL the slot still needed. Run `tributary refresh <pipeline>` (or set auto_full_refresh: true): the new snapshot replaces the slot. Then raise max_slot_wal_keep_size.',
            recovery: 'resnapshot' as const,
          }
        : unreserved
          ? {
              fix: 'Start the pipeline now: the slot holds more WAL than max_slot_wal_keep_size and will be lost at the next checkpoint.',
            }
          : own.active
            ? {}
            : { fix: 'Expected while the pipeline is stopped; it releases the WAL once it runs.' }),
    });
  }
  const stale = facts.slots.filter((x) => !x.active && x.name !== context.slot && x.retainedBytes !== null);
  for (const slot of stale) {
    add({
      check: `inactive_slot:${slot.name}`,
      section: S1,
      title: `Inactive replication slot ${slot.name}`,
      status: 'WARN',
      evidence: `${slot.type} slot, inactive${slot.walStatus === null ? '' : `, wal_status = ${slot.walStatus}`}, holding ${atLeast(slot.retainedBytes ?? 0)} of WAL`,
      fix: `If nothing consumes it any more: SELECT pg_drop_replication_slot(${quotePgString(slot.name)}); an abandoned slot keeps WAL until the disk fills.`,
    });
  }
  if (stale.length === 0) {
    add({
      check: 'inactive_slots',
      section: S1,
      title: 'No abandoned replication slots',
      status: 'PASS',
      evidence: `no other inactive slot holds WAL (${facts.slots.length} slot(s) in all)`,
    });
  }

  if (facts.publication !== undefined && context.publication !== undefined) {
    add(publicationFinding(facts, context.publication));
  }

  // Section 2: the CDC user.
  const u = facts.user;
  const missing: string[] = [];
  const fixes: string[] = [];
  const role = quotePgIdent(u.name);
  if (!u.superuser && !u.replication && !u.rdsReplication) {
    missing.push('REPLICATION');
    fixes.push(`ALTER ROLE ${role} WITH REPLICATION; (on RDS and Aurora: GRANT rds_replication TO ${role};)`);
  }
  const noUsage = [...new Set(facts.tables.filter((t) => !t.schemaUsage).map((t) => t.id.schema))];
  for (const schema of noUsage) {
    missing.push(`USAGE ON SCHEMA ${schema}`);
    fixes.push(`GRANT USAGE ON SCHEMA ${quotePgIdent(schema)} TO ${role};`);
  }
  const noSelect = facts.tables.filter((t) => !t.canSelect);
  const wholeSchemas = new Set(context.selection.schemas);
  const selectBySchema = new Map<string, TableId[]>();
  for (const t of noSelect)
    selectBySchema.set(t.id.schema, [...(selectBySchema.get(t.id.schema) ?? []), t.id]);
  for (const [schema, ids] of selectBySchema) {
    missing.push(...ids.map((id) => `SELECT ON ${tableKey(id)}`));
    fixes.push(
      wholeSchemas.has(schema)
        ? `GRANT SELECT ON ALL TABLES IN SCHEMA ${quotePgIdent(schema)} TO ${role}; ALTER DEFAULT PRIVILEGES IN SCHEMA ${quotePgIdent(schema)} GRANT SELECT ON TABLES TO ${role};`
        : `GRANT SELECT ON ${ids.map(qualifiedName).join(', ')} TO ${role};`,
    );
  }
  const attribute = u.superuser
    ? 'superuser'
    : u.replication
      ? 'REPLICATION'
      : u.rdsReplication
        ? 'member of rds_replication'
        : 'no REPLICATION';
  const selectable = facts.tables.length - noSelect.length;
  const grantsEvidence = `${u.name}: ${attribute}; SELECT on ${selectable} of ${facts.tables.length} captured table(s)${missing.length > 0 ? `; missing ${missing.join(', ')}` : ''}`;
  add(
    missing.length === 0
      ? {
          check: 'cdc_user_grants',
          section: S2,
          title: 'CDC user has the privileges capture needs',
          status: 'PASS',
          evidence: grantsEvidence,
        }
      : {
          check: 'cdc_user_grants',
          section: S2,
          title: 'CDC user has the privileges capture needs',
          status: 'FAIL',
          evidence: grantsEvidence,
          fix: fixes.join(' '),
        },
  );
  add(
    u.superuser
      ? {
          check: 'cdc_user_least_privilege',
          section: S2,
          title: 'CDC user is not a superuser',
          status: 'WARN',
          evidence: `${u.name} is a superuser`,
          fix: `Acceptable in development; in production capture as a role with only what it needs: CREATE ROLE tributary_cdc LOGIN REPLICATION PASSWORD '...'; GRANT USAGE ON SCHEMA <schema> TO tributary_cdc; GRANT SELECT ON ALL TABLES IN SCHEMA <schema> TO tributary_cdc; and create the publication as the table owner.`,
        }
      : {
          check: 'cdc_user_least_privilege',
          section: S2,
          title: 'CDC user is not a superuser',
          status: 'PASS',
          evidence: `${u.name} is not a superuser`,
        },
  );
  // Decoding ignores row security; a SELECT does not. A snapshot limited by a policy would miss rows for good.
  const filtered = facts.tables.filter((t) => t.rowSecurity && !t.owned && !u.superuser && !u.bypassRls);
  const secured = facts.tables.filter((t) => t.rowSecurity);
  if (secured.length > 0) {
    add(
      filtered.length === 0
        ? {
            check: 'row_security',
            section: S2,
            title: 'Row-level security does not hide rows from the snapshot',
            status: 'PASS',
            evidence: `row-level security on ${secured.map((t) => tableKey(t.id)).join(', ')}; ${u.name} ${u.superuser ? 'is a superuser' : u.bypassRls ? 'has BYPASSRLS' : 'owns them'}`,
          }
        : {
            check: 'row_security',
            section: S2,
            title: 'Row-level security does not hide rows from the snapshot',
            status: 'FAIL',
            evidence: `row-level security on ${filtered.map((t) => tableKey(t.id)).join(', ')}, and ${u.name} neither owns them nor has BYPASSRLS: the snapshot would read only the rows a policy shows, while the stream carries all changes`,
            fix: `ALTER ROLE ${role} BYPASSRLS;`,
          },
    );
  }
  add({
    check: 'tls',
    section: S2,
    title: 'SSL/TLS to the source',
    status: facts.ssl ? 'PASS' : 'WARN',
    evidence: `ssl = ${s('ssl') || 'unknown'}; this connection is ${facts.ssl ? `encrypted (${facts.ssl.version}, ${facts.ssl.cipher})` : 'not encrypted'}`,
    ...(facts.ssl
      ? {}
      : {
          fix: 'Enable TLS on the server (ssl = on, ssl_cert_file, ssl_key_file) and set ssl.mode on the connection in tributary.yaml, if your security policy requires encryption in transit.',
        }),
  });

  // Section 4: the captured tables.
  for (const t of facts.tables) {
    const key = tableKey(t.id);
    const configured = context.selection.primaryKeys?.get(key);
    add(keyFinding(t, configured));
    add({
      check: `statistics:${key}`,
      section: S4,
      title: `${key} statistics`,
      status: 'INFO',
      evidence:
        t.estimatedRows < 0
          ? 'never analyzed: no row estimate'
          : `about ${Math.round(t.estimatedRows)} rows (pg_class estimate)`,
      fix: `ANALYZE ${qualifiedName(t.id)}; keeps the estimate (used for snapshot progress) current.`,
    });
  }
  for (const schema of facts.found.missingSchemas) {
    add({
      check: `schema_exists:${schema}`,
      section: S4,
      title: `Schema ${schema} exists`,
      status: 'FAIL',
      evidence: 'not found in pg_namespace',
      fix: 'Check source_schema in the pipeline (PostgreSQL folds unquoted names to lower case).',
    });
  }
  for (const id of facts.found.missingTables) {
    add({
      check: `table_exists:${tableKey(id)}`,
      section: S4,
      title: `${tableKey(id)} exists`,
      status: 'FAIL',
      evidence: 'not found in pg_class',
      fix: 'Check source_schema/source_table in the pipeline (PostgreSQL folds unquoted names to lower case).',
    });
  }
  for (const { id, relkind } of facts.notTables) {
    add({
      check: `table_exists:${tableKey(id)}`,
      section: S4,
      title: `${tableKey(id)} exists`,
      status: 'FAIL',
      evidence: `${tableKey(id)} is ${RELKIND[relkind] ?? `a relation of kind ${relkind}`}, not a table`,
      fix: 'Logical replication carries only changes to tables: capture the tables it reads from instead.',
    });
  }
  return findings;
}

/**
 * The key rows are matched by must be in what PostgreSQL logs of the old row (the replica identity), or an
 * UPDATE that changes the key and every DELETE cannot be applied. Worse, a published table without any
 * identity makes PostgreSQL refuse the application's UPDATEs and DELETEs. Partitions are what decode, so a
 * partitioned table is judged by every leaf.
 */
function keyFinding(t: PgTableFact, configured: readonly string[] | undefined): Finding {
  const key = tableKey(t.id);
  const base = {
    check: `primary_key:${key}`,
    section: S4,
    title: `${key} has a key that its replica identity logs`,
  };
  const chosen = chooseKey(t.replicaIdentity, t.indexes, configured);
  if (!chosen) {
    return {
      ...base,
      status: 'FAIL',
      evidence: `no primary key, no unique index over NOT NULL columns, no primary_keys configured; REPLICA IDENTITY ${t.replicaIdentity.toUpperCase()}`,
      fix: `ALTER TABLE ${qualifiedName(t.id)} ADD PRIMARY KEY (...); or set table_configuration.primary_keys in the pipeline and ALTER TABLE ${qualifiedName(t.id)} REPLICA IDENTITY FULL;`,
    };
  }
  const source =
    chosen.keySource === 'configured'
      ? 'primary_keys configured in tributary.yaml'
      : chosen.keySource?.startsWith('unique:')
        ? `no primary key; unique index ${chosen.keySource.slice(7)}`
        : 'primary key';
  const keyText = `${source} (${chosen.columns.join(', ')})`;
  for (const unit of t.identityUnits) {
    const logged = identityColumns(unit.replicaIdentity, unit.indexes, t.columns);
    if (chosen.columns.every((c) => logged.includes(c))) continue;
    const where =
      unit.id.table === t.id.table && unit.id.schema === t.id.schema
        ? ''
        : ` on partition ${tableKey(unit.id)}`;
    const identity = `REPLICA IDENTITY ${unit.replicaIdentity.toUpperCase()}${where}`;
    const index = chosen.keySource?.startsWith('unique:') ? chosen.keySource.slice(7) : undefined;
    const hasPrimary = unit.indexes.some((i) => i.primary);
    const statement =
      unit.replicaIdentity === 'nothing' && hasPrimary && chosen.keySource === undefined
        ? 'REPLICA IDENTITY DEFAULT'
        : index !== undefined && unit.indexes.some((i) => i.name === index)
          ? `REPLICA IDENTITY USING INDEX ${quotePgIdent(index)}`
          : 'REPLICA IDENTITY FULL';
    const problem = `${keyText}; ${identity} logs ${logged.length === 0 ? 'no old-row columns' : `only (${logged.join(', ')})`}, so ${unit.replicaIdentity === 'nothing' || logged.length === 0 ? 'PostgreSQL refuses UPDATE and DELETE on it once it is published' : 'an UPDATE of the key or a DELETE cannot be matched to its row'}`;
    // The CDC role owns a plain table: Tributary sets the identity itself before publishing it
    // (replicaIdentityFor in replication-setup.ts makes the same choice).
    if (t.owned && t.relkind === 'r') {
      return {
        ...base,
        status: 'INFO',
        evidence: `${problem}; ${t.id.table} is owned by the CDC user, and Tributary sets ${statement} before capturing it`,
        fix: `Or run it yourself: ALTER TABLE ${qualifiedName(unit.id)} ${statement};`,
      };
    }
    return {
      ...base,
      status: 'FAIL',
      evidence: problem,
      fix: `ALTER TABLE ${qualifiedName(unit.id)} ${statement};`,
    };
  }
  const full = t.identityUnits.some((u) => u.replicaIdentity === 'full');
  return {
    ...base,
    status: 'PASS',
    evidence: `${keyText}; REPLICA IDENTITY ${t.replicaIdentity.toUpperCase()}${t.relkind === 'p' ? ` (${t.identityUnits.length} partition(s) checked)` : ''}${full ? ' (old rows are logged in full: more WAL per UPDATE and DELETE)' : ''}`,
  };
}

function publicationFinding(facts: PgPreflightFacts, name: string): Finding {
  const base = {
    check: 'publication',
    section: S1,
    title: `Publication ${name} publishes the captured tables`,
  };
  const pub = facts.publication;
  const partitioned = facts.tables.some((t) => t.relkind === 'p');
  const list = facts.tables.map((t) => qualifiedName(t.id)).join(', ');
  const create = `CREATE PUBLICATION ${quotePgIdent(name)} FOR TABLE ${list}${partitioned ? ' WITH (publish_via_partition_root = true)' : ''};`;
  if (!pub) {
    const mayCreate =
      facts.user.superuser || (facts.user.createOnDatabase && facts.tables.every((t) => t.owned));
    return mayCreate
      ? {
          ...base,
          status: 'INFO',
          evidence: `does not exist yet; ${facts.user.name} may create it, and Tributary does on the first run`,
          fix: `Or create it yourself: ${create}`,
        }
      : {
          ...base,
          status: 'FAIL',
          evidence: `does not exist, and ${facts.user.name} may not create it (that needs CREATE on the database and ownership of the tables)`,
          fix: `As the table owner or a superuser: ${create}`,
        };
  }
  const problems: string[] = [];
  const fixes: string[] = [];
  const actions = ['insert', 'update', 'delete'] as const;
  const unpublished = actions.filter((a) => !pub[a]);
  if (unpublished.length > 0) {
    problems.push(`does not publish ${unpublished.join(', ')}`);
    fixes.push(`ALTER PUBLICATION ${quotePgIdent(name)} SET (publish = 'insert, update, delete, truncate');`);
  }
  if (partitioned && !pub.viaRoot) {
    problems.push('publishes partitions under their own names (publish_via_partition_root = false)');
    fixes.push(`ALTER PUBLICATION ${quotePgIdent(name)} SET (publish_via_partition_root = true);`);
  }
  const missing = pub.allTables
    ? []
    : facts.tables.filter((t) => !pub.tables.has(tableKey(t.id)) && !(t.relkind === 'p' && !pub.viaRoot));
  const mayAdd = facts.user.superuser || (pub.owned && missing.every((t) => t.owned));
  if (missing.length > 0) {
    problems.push(
      `does not publish ${missing.map((t) => tableKey(t.id)).join(', ')}${mayAdd ? ` (${facts.user.name} may add them, and Tributary does on the next run)` : ''}`,
    );
    if (!mayAdd) {
      fixes.push(
        `ALTER PUBLICATION ${quotePgIdent(name)} ADD TABLE ${missing.map((t) => qualifiedName(t.id)).join(', ')};`,
      );
    }
  }
  for (const t of facts.tables) {
    const published = pub.tables.get(tableKey(t.id));
    const left = published?.columns ? t.columns.filter((c) => !published.columns?.includes(c)) : [];
    if (left.length > 0) {
      const shown =
        left.length > 8 ? `${left.slice(0, 8).join(', ')} and ${left.length - 8} more` : left.join(', ');
      problems.push(`publishes ${tableKey(t.id)} without ${shown} (a column list)`);
    }
    if (published?.rowFilter) {
      problems.push(`publishes only the rows of ${tableKey(t.id)} WHERE ${published.rowFilter}`);
    }
    if (left.length > 0 || published?.rowFilter) {
      // Dropping and adding the table again publishes it whole; ALTER PUBLICATION has no other way back.
      fixes.push(
        `ALTER PUBLICATION ${quotePgIdent(name)} DROP TABLE ${qualifiedName(t.id)}; ALTER PUBLICATION ${quotePgIdent(name)} ADD TABLE ${qualifiedName(t.id)};`,
      );
    }
  }
  const shape = `publishes ${actions.filter((a) => pub[a]).join(', ')}${pub.truncate ? ', truncate' : ''}; ${pub.allTables ? 'FOR ALL TABLES' : `${pub.tables.size} table(s)`}${pub.viaRoot ? ', via partition root' : ''}`;
  if (problems.length === 0) return { ...base, status: 'PASS', evidence: shape };
  const onlyMissing = fixes.length === 0;
  return {
    ...base,
    status: onlyMissing ? 'INFO' : 'FAIL',
    evidence: `${shape}; ${problems.join('; ')}`,
    fix: onlyMissing
      ? `Or add them yourself: ALTER PUBLICATION ${quotePgIdent(name)} ADD TABLE ${missing.map((t) => qualifiedName(t.id)).join(', ')};`
      : fixes.join(' '),
  };
}
