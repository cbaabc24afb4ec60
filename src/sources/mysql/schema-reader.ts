/**
 * Reads table shapes from information_schema. A selection naming a table or schema that does not exist is
 * an error, never an empty capture: a typo in the config must not look like a quiet source.
 */
import type mysql from 'mysql2/promise';
import { TributaryError } from '../../core/errors.js';
import type { TableSelection } from '../../core/ports.js';
import { type ColumnSchema, type TableId, type TableSchema, tableKey } from '../../core/table.js';
import { charsetOfCollation, type SourceColumn, type SourceShape, textCharset } from './ddl-shapes.js';
import { deltaTypeFor } from './type-mapping.js';

interface ColumnRow {
  TABLE_SCHEMA: string;
  TABLE_NAME: string;
  COLUMN_NAME: string;
  COLUMN_TYPE: string;
  IS_NULLABLE: string;
  COLUMN_KEY: string;
}

export async function readTableSchemas(
  conn: mysql.Connection,
  selection: TableSelection,
): Promise<TableSchema[]> {
  const wanted = new Map<string, TableId>();
  for (const id of selection.tables) wanted.set(tableKey(id), id);

  if (selection.schemas.length > 0) {
    const [found] = await conn.query<mysql.RowDataPacket[]>(
      'SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN (?)',
      [selection.schemas],
    );
    const names = new Set(found.map((r) => String(r['SCHEMA_NAME'])));
    for (const schema of selection.schemas) {
      if (!names.has(schema)) {
        throw new TributaryError(
          'SOURCE_TABLE_NOT_FOUND',
          `The source schema "${schema}" does not exist or is not visible to the CDC user.`,
          {
            hint: `Check the name, and GRANT SELECT ON ${schema}.* to the CDC user.`,
          },
        );
      }
    }
    const [tables] = await conn.query<mysql.RowDataPacket[]>(
      "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA IN (?) ORDER BY TABLE_SCHEMA, TABLE_NAME",
      [selection.schemas],
    );
    for (const r of tables) {
      const id = { schema: String(r['TABLE_SCHEMA']), table: String(r['TABLE_NAME']) };
      wanted.set(tableKey(id), id);
    }
  }
  if (wanted.size === 0) return [];

  const pairs = [...wanted.values()].map((id) => [id.schema, id.table]);
  const [rows] = await conn.query<(mysql.RowDataPacket & ColumnRow)[]>(
    `SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, COLUMN_KEY
       FROM information_schema.COLUMNS
      WHERE (TABLE_SCHEMA, TABLE_NAME) IN (?)
      ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION`,
    [pairs],
  );
  const [keys] = await conn.query<mysql.RowDataPacket[]>(
    `SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME
       FROM information_schema.KEY_COLUMN_USAGE
      WHERE CONSTRAINT_NAME = 'PRIMARY' AND (TABLE_SCHEMA, TABLE_NAME) IN (?)
      ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION`,
    [pairs],
  );

  // The fallback key of a table without a primary key: its first unique index whose columns are all NOT NULL
  // (such an index identifies a row exactly as a primary key would).
  const [uniques] = await conn.query<mysql.RowDataPacket[]>(
    `SELECT s.TABLE_SCHEMA, s.TABLE_NAME, s.INDEX_NAME, s.COLUMN_NAME, c.IS_NULLABLE
       FROM information_schema.STATISTICS s
       JOIN information_schema.COLUMNS c
         ON c.TABLE_SCHEMA = s.TABLE_SCHEMA AND c.TABLE_NAME = s.TABLE_NAME AND c.COLUMN_NAME = s.COLUMN_NAME
      WHERE s.NON_UNIQUE = 0 AND s.INDEX_NAME <> 'PRIMARY' AND (s.TABLE_SCHEMA, s.TABLE_NAME) IN (?)
      ORDER BY s.TABLE_SCHEMA, s.TABLE_NAME, s.INDEX_NAME, s.SEQ_IN_INDEX`,
    [pairs],
  );
  const uniqueByTable = new Map<string, Map<string, { columns: string[]; nullable: boolean }>>();
  for (const r of uniques) {
    const key = `${r['TABLE_SCHEMA']}.${r['TABLE_NAME']}`;
    const indexes = uniqueByTable.get(key) ?? new Map<string, { columns: string[]; nullable: boolean }>();
    const index = indexes.get(String(r['INDEX_NAME'])) ?? { columns: [], nullable: false };
    index.columns.push(String(r['COLUMN_NAME']));
    index.nullable ||= r['IS_NULLABLE'] === 'YES';
    indexes.set(String(r['INDEX_NAME']), index);
    uniqueByTable.set(key, indexes);
  }
  const fallbackKey = (key: string): { columns: string[]; index: string } | undefined => {
    for (const [index, u] of uniqueByTable.get(key) ?? [])
      if (!u.nullable) return { columns: u.columns, index };
    return undefined;
  };

  const pkByTable = new Map<string, string[]>();
  for (const r of keys) {
    const key = `${r['TABLE_SCHEMA']}.${r['TABLE_NAME']}`;
    const list = pkByTable.get(key) ?? [];
    list.push(String(r['COLUMN_NAME']));
    pkByTable.set(key, list);
  }
  const keyOf = (key: string) =>
    selection.primaryKeys?.get(key) ?? pkByTable.get(key) ?? fallbackKey(key)?.columns ?? [];
  const keySourceOf = (key: string): string | undefined => {
    if (selection.primaryKeys?.has(key)) return 'configured';
    if (pkByTable.has(key)) return undefined;
    const fallback = fallbackKey(key);
    return fallback ? `unique:${fallback.index}` : undefined;
  };

  const columnsByTable = new Map<string, ColumnSchema[]>();
  for (const r of rows) {
    const key = `${r.TABLE_SCHEMA}.${r.TABLE_NAME}`;
    if (!columnsByTable.has(key)) columnsByTable.set(key, []);
    const filter = selection.columnFilters?.get(key);
    const keep =
      keyOf(key).includes(r.COLUMN_NAME) ||
      ((!filter?.include || filter.include.includes(r.COLUMN_NAME)) &&
        !filter?.exclude?.includes(r.COLUMN_NAME));
    if (!keep) continue;
    const list = columnsByTable.get(key) ?? [];
    list.push({
      name: r.COLUMN_NAME,
      type: deltaTypeFor(r.COLUMN_TYPE, `${key}.${r.COLUMN_NAME}`),
      nullable: r.IS_NULLABLE === 'YES',
      sourceType: r.COLUMN_TYPE,
    });
    columnsByTable.set(key, list);
  }
  const result: TableSchema[] = [];
  for (const [key, id] of wanted) {
    const columns = columnsByTable.get(key);
    if (!columns) {
      throw new TributaryError(
        'SOURCE_TABLE_NOT_FOUND',
        `The source table "${key}" does not exist or is not visible to the CDC user.`,
        {
          hint: `Check source_schema and source_table in the pipeline, and GRANT SELECT ON ${id.schema}.* to the CDC user. If the table was dropped or renamed at the source, remove it from the pipeline or name its new name (a new name is captured as a new table, with a snapshot); its bronze table keeps the rows captured so far.`,
        },
      );
    }
    const primaryKey = keyOf(key);
    if (primaryKey.length === 0) {
      throw new TributaryError(
        'SOURCE_NO_PRIMARY_KEY',
        `The source table "${key}" has no primary key and no unique index over NOT NULL columns, so changes cannot be matched to rows.`,
        {
          hint: 'Add a primary key at the source, or name the key columns in table_configuration.primary_keys.',
        },
      );
    }
    for (const k of primaryKey) {
      if (!columns.some((c) => c.name === k)) {
        throw new TributaryError('CONFIG_INVALID', `Primary key column "${k}" is not a column of "${key}".`, {
          hint: `Columns are: ${columns.map((c) => c.name).join(', ')}.`,
        });
      }
    }
    const keySource = keySourceOf(key);
    result.push({ id, columns, primaryKey, ...(keySource ? { keySource } : {}) });
  }
  return result;
}

/**
 * The tables' full column lists (no column filter: the binlog logs every column) with the fields zongji decodes
 * by, and each table's default charset, by `schema.table`. Read inside a snapshot's transaction, whose
 * metadata locks keep the tables from changing, they are the columns at the snapshot's position.
 */
export async function readSourceShapes(
  conn: mysql.Connection,
  tables: readonly TableId[],
): Promise<Map<string, SourceShape>> {
  const shapes = new Map<string, SourceShape>();
  if (tables.length === 0) return shapes;
  const pairs = tables.map((id) => [id.schema, id.table]);
  const [rows] = await conn.query<mysql.RowDataPacket[]>(
    `SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.COLUMN_NAME, c.COLUMN_TYPE, c.CHARACTER_SET_NAME, t.TABLE_COLLATION
       FROM information_schema.COLUMNS c
       JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME
      WHERE (c.TABLE_SCHEMA, c.TABLE_NAME) IN (?)
      ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME, c.ORDINAL_POSITION`,
    [pairs],
  );
  const columns = new Map<string, SourceColumn[]>();
  const charsets = new Map<string, string | null>();
  for (const r of rows) {
    const key = `${String(r['TABLE_SCHEMA'])}.${String(r['TABLE_NAME'])}`;
    const list = columns.get(key) ?? [];
    const charset = r['CHARACTER_SET_NAME'];
    list.push({
      name: String(r['COLUMN_NAME']),
      type: String(r['COLUMN_TYPE']),
      charset: charset === null || charset === undefined ? null : String(charset),
    });
    columns.set(key, list);
    const collation = r['TABLE_COLLATION'];
    charsets.set(key, collation ? textCharset(charsetOfCollation(String(collation))) : null);
  }
  for (const [key, list] of columns) shapes.set(key, { columns: list, charset: charsets.get(key) ?? null });
  return shapes;
}
