/**
 * Reads table shapes from pg_catalog. A selection naming a table or schema that does not exist is an error,
 * never an empty capture: a typo in the config must not look like a quiet source.
 *
 * A whole schema means its ordinary tables and partitioned tables, not the partitions: with
 * `publish_via_partition_root` a partition's changes arrive under its root, and the root's snapshot reads every
 * partition, so capturing both would capture rows twice. A partition named on its own is captured as asked.
 *
 * Stored generated columns are left out: pgoutput (PostgreSQL 12 to 17) does not send them, so bronze could only
 * ever hold their snapshot value.
 */
import { TributaryError } from '../../core/errors.js';
import type { TableSelection } from '../../core/ports.js';
import { type ColumnSchema, type TableId, type TableSchema, tableKey } from '../../core/table.js';
import { quotePgIdent } from './connect.js';
import { type PgColumnType, type PgQueryable, type PgTypeCatalog, rowsOf } from './type-mapping.js';

/** pg_class.relreplident: which old-row columns PostgreSQL logs for an UPDATE or DELETE. */
export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';

/** A captured column with what the snapshot and the stream need to stage its values. */
export interface PgColumn extends PgColumnType {
  readonly name: string;
  readonly attnum: number;
  readonly typeOid: number;
  readonly typmod: number;
}

export interface PgTable {
  readonly table: TableSchema;
  /** The pg_class OID, by which pgoutput's Relation messages name the table. */
  readonly relid: number;
  readonly partitioned: boolean;
  readonly replicaIdentity: ReplicaIdentity;
  /** The captured columns (filters applied), in table order, by name; the same set as `table.columns`. */
  readonly columns: ReadonlyMap<string, PgColumn>;
}

/** A table, partitioned table or other relation found for a selection. */
export interface PgRelation {
  readonly relid: number;
  readonly id: TableId;
  /** pg_class.relkind: `r` table, `p` partitioned table, `v` view, `m` materialized view, `f` foreign table... */
  readonly relkind: string;
  readonly replicaIdentity: ReplicaIdentity;
  readonly rowSecurity: boolean;
  /** The planner's row estimate; -1 when the table was never analyzed (PostgreSQL 14+). */
  readonly estimatedRows: number;
}

/** A unique index, as key selection sees it. */
export interface PgUniqueIndex {
  readonly name: string;
  readonly primary: boolean;
  readonly replicaIdentity: boolean;
  /** Key columns in index order; an expression column makes the index unusable as a key. */
  readonly columns: readonly string[];
  /**
   * Whether it identifies a row as a primary key would, by PostgreSQL's own rule for REPLICA IDENTITY USING
   * INDEX: no expressions, not partial, not deferrable, valid, and every column NOT NULL.
   */
  readonly usable: boolean;
}

export interface FoundRelations {
  /** Every relation the selection names or implies, in (schema, name) order. */
  readonly relations: readonly PgRelation[];
  readonly missingSchemas: readonly string[];
  readonly missingTables: readonly TableId[];
}

const REPLICA_IDENTITY: Record<string, ReplicaIdentity> = {
  d: 'default',
  n: 'nothing',
  f: 'full',
  i: 'index',
};

/** pg_class.relreplident's letter as a {@link ReplicaIdentity}. */
export function replicaIdentityOf(code: unknown): ReplicaIdentity {
  return REPLICA_IDENTITY[String(code)] ?? 'default';
}

/** The driver's boolean, whether its type parsers are on (`true`) or off (`'t'`). */
export function isTrue(value: unknown): boolean {
  return value === true || value === 't';
}

/** `"schema"."table"`, safe to splice into SQL. */
export function qualifiedName(id: TableId): string {
  return `${quotePgIdent(id.schema)}.${quotePgIdent(id.table)}`;
}

/** Finds the relations of a selection without judging them (preflight reports what is missing). */
export async function findRelations(db: PgQueryable, selection: TableSelection): Promise<FoundRelations> {
  const schemaRows =
    selection.schemas.length === 0
      ? []
      : rowsOf(
          await db.query('SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])', [
            [...selection.schemas],
          ]),
        );
  const schemas = new Set(schemaRows.map((r) => String(r['nspname'])));
  const rows = rowsOf(
    await db.query(
      `SELECT c.oid::int8 AS relid, n.nspname AS schema, c.relname AS name, c.relkind, c.relreplident,
              c.relrowsecurity, c.reltuples::float8 AS reltuples
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE (n.nspname, c.relname) IN (SELECT * FROM unnest($1::text[], $2::text[]))
           OR (n.nspname = ANY($3::text[]) AND c.relkind IN ('r', 'p') AND NOT c.relispartition)
        ORDER BY n.nspname, c.relname`,
      [selection.tables.map((t) => t.schema), selection.tables.map((t) => t.table), [...selection.schemas]],
    ),
  );
  const relations = rows.map(
    (r): PgRelation => ({
      relid: Number(r['relid']),
      id: { schema: String(r['schema']), table: String(r['name']) },
      relkind: String(r['relkind']),
      replicaIdentity: replicaIdentityOf(r['relreplident']),
      rowSecurity: isTrue(r['relrowsecurity']),
      estimatedRows: Number(r['reltuples']),
    }),
  );
  const found = new Set(relations.map((r) => tableKey(r.id)));
  return {
    relations,
    missingSchemas: selection.schemas.filter((s) => !schemas.has(s)),
    missingTables: selection.tables.filter((t) => !found.has(tableKey(t))),
  };
}

/** The unique indexes of each table, by relid, in index-name order. */
export async function readUniqueIndexes(
  db: PgQueryable,
  relids: readonly number[],
): Promise<Map<number, PgUniqueIndex[]>> {
  if (relids.length === 0) return new Map();
  const rows = rowsOf(
    await db.query(
      `SELECT i.indrelid::int8 AS relid, ic.relname AS index_name, i.indisprimary, i.indisreplident,
              (i.indimmediate AND i.indisvalid AND i.indpred IS NULL) AS eligible,
              k.ord::int4 AS ord, a.attname, a.attnotnull
         FROM pg_index i
         JOIN pg_class ic ON ic.oid = i.indexrelid
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
         LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum AND k.attnum > 0
        WHERE i.indrelid = ANY($1::oid[]) AND i.indisunique AND k.ord <= i.indnkeyatts
        ORDER BY i.indrelid, ic.relname, k.ord`,
      [relids.map(String)],
    ),
  );
  const byTable = new Map<number, PgUniqueIndex[]>();
  let current: (PgUniqueIndex & { columns: string[]; usable: boolean }) | undefined;
  let currentRelid = 0;
  for (const r of rows) {
    const relid = Number(r['relid']);
    const name = String(r['index_name']);
    if (current === undefined || currentRelid !== relid || current.name !== name) {
      current = {
        name,
        primary: isTrue(r['indisprimary']),
        replicaIdentity: isTrue(r['indisreplident']),
        columns: [],
        usable: isTrue(r['eligible']),
      };
      currentRelid = relid;
      byTable.set(relid, [...(byTable.get(relid) ?? []), current]);
    }
    const attname = r['attname'];
    if (attname === null || attname === undefined) current.usable = false;
    else current.columns.push(String(attname));
    if (!isTrue(r['attnotnull'])) current.usable = false;
  }
  return byTable;
}

/**
 * The key rows are matched by: the configured one, else the primary key, else the replica identity index,
 * else the first (by name) unique index over NOT NULL columns. Undefined when there is none.
 */
export function chooseKey(
  replicaIdentity: ReplicaIdentity,
  indexes: readonly PgUniqueIndex[],
  configured: readonly string[] | undefined,
): { readonly columns: readonly string[]; readonly keySource?: string } | undefined {
  if (configured) return { columns: configured, keySource: 'configured' };
  const primary = indexes.find((i) => i.primary);
  if (primary) return { columns: primary.columns };
  const usable = indexes.filter((i) => i.usable);
  const chosen =
    (replicaIdentity === 'index' ? usable.find((i) => i.replicaIdentity) : undefined) ?? usable[0];
  return chosen ? { columns: chosen.columns, keySource: `unique:${chosen.name}` } : undefined;
}

/**
 * The columns PostgreSQL logs from the old row of an UPDATE or DELETE: only these can locate the row that
 * changed, so the key must be among them.
 */
export function identityColumns(
  replicaIdentity: ReplicaIdentity,
  indexes: readonly PgUniqueIndex[],
  allColumns: readonly string[],
): readonly string[] {
  switch (replicaIdentity) {
    case 'default':
      return indexes.find((i) => i.primary)?.columns ?? [];
    case 'index':
      return indexes.find((i) => i.replicaIdentity)?.columns ?? [];
    case 'full':
      return allColumns;
    case 'nothing':
      return [];
  }
}

function notFound(message: string, names: readonly string[]): TributaryError {
  // pg_class is visible to every user, so a missing name is a wrong name, never a missing grant.
  const folded = names.some((n) => n !== n.toLowerCase());
  return new TributaryError('SOURCE_TABLE_NOT_FOUND', message, {
    hint: `Check source_schema and source_table in the pipeline${folded ? ': PostgreSQL folds unquoted names to lower case, so a table created as Orders is named orders' : ''}.`,
  });
}

/**
 * Resolves a selection to table schemas, with Delta types, keys and each column's converter. Loads the
 * column types into `catalog` as needed.
 */
export async function readTableSchemas(
  db: PgQueryable,
  selection: TableSelection,
  catalog: PgTypeCatalog,
): Promise<PgTable[]> {
  const found = await findRelations(db, selection);
  const [schema] = found.missingSchemas;
  if (schema !== undefined) {
    throw notFound(`The source schema "${schema}" does not exist.`, [schema]);
  }
  const [missing] = found.missingTables;
  if (missing) {
    throw notFound(`The source table "${tableKey(missing)}" does not exist.`, [
      missing.schema,
      missing.table,
    ]);
  }
  const notTable = found.relations.find((r) => r.relkind !== 'r' && r.relkind !== 'p');
  if (notTable) {
    throw new TributaryError(
      'SOURCE_TABLE_NOT_FOUND',
      `The source relation "${tableKey(notTable.id)}" is not a table (relkind ${notTable.relkind}): logical replication carries only changes to tables.`,
      { hint: 'Capture the tables it reads from instead.' },
    );
  }
  if (found.relations.length === 0) return [];

  const relids = found.relations.map((r) => r.relid);
  const columnRows = rowsOf(
    await db.query(
      `SELECT a.attrelid::int8 AS relid, a.attnum::int4 AS attnum, a.attname AS name, a.atttypid::int8 AS type_oid,
              a.atttypmod AS typmod, a.attnotnull, a.attgenerated <> '' AS generated,
              format_type(a.atttypid, a.atttypmod) AS source_type
         FROM pg_attribute a
        WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY a.attrelid, a.attnum`,
      [relids.map(String)],
    ),
  );
  const indexes = await readUniqueIndexes(db, relids);
  await catalog.ensure(
    db,
    columnRows.map((r) => Number(r['type_oid'])),
  );

  const columnsByTable = new Map<number, Record<string, unknown>[]>();
  for (const r of columnRows) {
    const relid = Number(r['relid']);
    const list = columnsByTable.get(relid) ?? [];
    list.push(r);
    columnsByTable.set(relid, list);
  }

  return found.relations.map((rel): PgTable => {
    const key = tableKey(rel.id);
    const rows = columnsByTable.get(rel.relid) ?? [];
    const chosen = chooseKey(
      rel.replicaIdentity,
      indexes.get(rel.relid) ?? [],
      selection.primaryKeys?.get(key),
    );
    if (!chosen) {
      throw new TributaryError(
        'SOURCE_NO_PRIMARY_KEY',
        `The source table "${key}" has no primary key and no unique index over NOT NULL columns, so changes cannot be matched to rows.`,
        {
          hint: `ALTER TABLE ${qualifiedName(rel.id)} ADD PRIMARY KEY (...); at the source, or name the key columns in table_configuration.primary_keys (and ALTER TABLE ${qualifiedName(rel.id)} REPLICA IDENTITY FULL; so updates and deletes carry them).`,
        },
      );
    }
    const names = rows.map((r) => String(r['name']));
    for (const k of chosen.columns) {
      if (!names.includes(k)) {
        throw new TributaryError('CONFIG_INVALID', `Primary key column "${k}" is not a column of "${key}".`, {
          hint: `Columns are: ${names.join(', ')}.`,
        });
      }
      if (isTrue(rows.find((r) => r['name'] === k)?.['generated'])) {
        throw new TributaryError(
          'SOURCE_NO_PRIMARY_KEY',
          `The key column "${k}" of "${key}" is a generated column, which logical replication does not send.`,
          { hint: 'Name other key columns in table_configuration.primary_keys.' },
        );
      }
    }
    const filter = selection.columnFilters?.get(key);
    const columns: ColumnSchema[] = [];
    const pgColumns = new Map<string, PgColumn>();
    for (const r of rows) {
      const name = String(r['name']);
      if (isTrue(r['generated'])) continue;
      const keep =
        chosen.columns.includes(name) ||
        ((!filter?.include || filter.include.includes(name)) && !filter?.exclude?.includes(name));
      if (!keep) continue;
      const typeOid = Number(r['type_oid']);
      const typmod = Number(r['typmod']);
      const mapped = catalog.mapColumn(typeOid, typmod, `${key}.${name}`);
      columns.push({
        name,
        type: mapped.deltaType,
        nullable: !isTrue(r['attnotnull']),
        sourceType: String(r['source_type']),
      });
      pgColumns.set(name, { ...mapped, name, attnum: Number(r['attnum']), typeOid, typmod });
    }
    return {
      table: {
        id: rel.id,
        columns,
        primaryKey: chosen.columns,
        ...(chosen.keySource ? { keySource: chosen.keySource } : {}),
      },
      relid: rel.relid,
      partitioned: rel.relkind === 'p',
      replicaIdentity: rel.replicaIdentity,
      columns: pgColumns,
    };
  });
}

/**
 * The capturable tables of one schema, as a whole-schema selection would take them: tables and partitioned
 * tables, without partitions.
 */
export async function listTableNames(db: PgQueryable, schema: string): Promise<string[]> {
  const rows = rowsOf(
    await db.query(
      `SELECT n.nspname, c.relname
         FROM pg_namespace n
         LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relkind IN ('r', 'p') AND NOT c.relispartition
        WHERE n.nspname = $1
        ORDER BY c.relname`,
      [schema],
    ),
  );
  if (rows.length === 0) throw notFound(`The source schema "${schema}" does not exist.`, [schema]);
  return rows
    .filter((r) => r['relname'] !== null && r['relname'] !== undefined)
    .map((r) => String(r['relname']));
}
