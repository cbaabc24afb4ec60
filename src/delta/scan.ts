/**
 * Turning a {@link Snapshot} into a DuckDB query over its active files: the table schema projected (columns a
 * file lacks read as NULL, extra columns such as a stray `_change_type` are dropped), primitive columns cast to
 * their Delta types, and partition values injected from the `add` actions (the directory layout is not
 * authoritative). Run the query on a connection whose `TimeZone` is UTC: legacy timestamp partition values
 * carry no zone.
 */
import type { DuckDBConnection } from '@duckdb/node-api';
import { TributaryError } from '../core/errors.js';
import type { DataType, StructType } from './schema.js';
import type { Snapshot } from './snapshot.js';

function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** A double-quoted SQL identifier. */
export function sqlIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

const PRIMITIVES: Record<string, string> = {
  string: 'VARCHAR',
  long: 'BIGINT',
  integer: 'INTEGER',
  short: 'SMALLINT',
  byte: 'TINYINT',
  float: 'FLOAT',
  double: 'DOUBLE',
  boolean: 'BOOLEAN',
  binary: 'BLOB',
  date: 'DATE',
  timestamp: 'TIMESTAMPTZ',
  timestamp_ntz: 'TIMESTAMP',
  void: 'INTEGER',
};

/** The DuckDB type of a Delta type. Throws `DELTA_PROTOCOL` for types DuckDB cannot hold (variant). */
export function duckdbType(type: DataType): string {
  if (typeof type === 'string') {
    const primitive = PRIMITIVES[type];
    if (primitive) return primitive;
    const decimal = /^decimal\(\s*(\d+)\s*,\s*(-?\d+)\s*\)$/.exec(type);
    if (decimal) return `DECIMAL(${decimal[1]}, ${decimal[2]})`;
    if (type === 'decimal') return 'DECIMAL(10, 0)';
    throw new TributaryError('DELTA_PROTOCOL', `Delta type '${type}' is not supported`);
  }
  switch (type.type) {
    case 'struct':
      return `STRUCT(${type.fields.map((f) => `${sqlIdentifier(f.name)} ${duckdbType(f.type)}`).join(', ')})`;
    case 'array':
      return `${duckdbType(type.elementType)}[]`;
    case 'map':
      return `MAP(${duckdbType(type.keyType)}, ${duckdbType(type.valueType)})`;
  }
}

/**
 * SQL literal for a serialised partition value. `null`, and the empty string for non-string types (Spark
 * writes both for NULL), become NULL. Timestamps may be legacy `YYYY-MM-DD HH:MM:SS[.ffffff]` or ISO 8601 UTC.
 */
export function partitionValueSql(value: string | null | undefined, type: DataType): string {
  const target = duckdbType(type);
  if (value === null || value === undefined || value === '') return `CAST(NULL AS ${target})`;
  // Binary partition values are the raw bytes as a string: re-encode, do not parse `\x` escapes.
  if (type === 'binary') return `encode(${sqlString(value)})`;
  return `CAST(${sqlString(value)} AS ${target})`;
}

/**
 * A `SELECT` over the snapshot's active files with the table's columns, in schema order. Asks `connection`
 * which columns the files actually have, because a column added by schema evolution is absent from older files
 * and must read as NULL rather than fail the query.
 */
export async function scanSql(
  snapshot: Snapshot,
  connection: DuckDBConnection,
  options: { schema?: StructType } = {},
): Promise<string> {
  const schema = options.schema ?? snapshot.schema;
  const partitionColumns = new Set(snapshot.metadata.partitionColumns);
  if (snapshot.files.length === 0) {
    const cols = schema.fields.map((f) => `CAST(NULL AS ${duckdbType(f.type)}) AS ${sqlIdentifier(f.name)}`);
    return `SELECT ${cols.join(', ')} WHERE false`;
  }
  const paths = snapshot.files.map((add) => snapshot.dataFilePath(add));
  const source = `read_parquet([${paths.map(sqlString).join(', ')}], union_by_name = true, filename = true)`;
  const described = await connection.runAndReadAll(`DESCRIBE SELECT * FROM ${source}`);
  const present = new Set(described.getRowsJS().map((r) => String(r[0]).toLowerCase()));
  const partitionFields = schema.fields.filter((f) => partitionColumns.has(f.name));
  const pvNames = ['filename', ...partitionFields.map((f) => f.name)].map(sqlIdentifier).join(', ');
  const rows = snapshot.files.map((add, i) => {
    const values = partitionFields.map((f) =>
      partitionValueSql(lookupPartitionValue(add.partitionValues, f.name), f.type),
    );
    return `(${[sqlString(paths[i] as string), ...values].join(', ')})`;
  });
  const cols = schema.fields.map((f) => {
    const name = sqlIdentifier(f.name);
    if (partitionColumns.has(f.name)) return `p.${name} AS ${name}`;
    if (!present.has(f.name.toLowerCase())) return `CAST(NULL AS ${duckdbType(f.type)}) AS ${name}`;
    if (typeof f.type === 'string' && f.type !== 'void')
      return `CAST(d.${name} AS ${duckdbType(f.type)}) AS ${name}`;
    return `d.${name} AS ${name}`;
  });
  return [
    `WITH p(${pvNames}) AS (VALUES ${rows.join(', ')})`,
    `SELECT ${cols.join(', ')} FROM ${source} AS d JOIN p USING (filename)`,
  ].join('\n');
}

/** Partition value keys match column names case-insensitively in practice (Hive lower-cases). */
function lookupPartitionValue(
  values: Record<string, string | null>,
  column: string,
): string | null | undefined {
  if (column in values) return values[column];
  const lower = column.toLowerCase();
  for (const [k, v] of Object.entries(values)) if (k.toLowerCase() === lower) return v;
  return undefined;
}
