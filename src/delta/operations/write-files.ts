/**
 * Writing a data file of a table from a DuckDB query over its logical columns (a {@link scanSql} or something
 * built on one): partition columns left out of the file, columns renamed to their physical names (and given
 * Parquet field ids) under column mapping, snappy Parquet as every Delta engine writes it, and `add.stats`
 * computed from the written file.
 */
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection, DuckDBValue } from '@duckdb/node-api';
import { TributaryError } from '../../core/errors.js';
import type { AddFile, Metadata } from '../actions.js';
import {
  type ColumnMappingMode,
  effectiveColumnMappingMode,
  fieldId,
  physicalName,
} from '../column-mapping.js';
import { newDataFileName } from '../commit.js';
import { sqlIdentifier as q } from '../scan.js';
import type { DataType, StructField, StructType } from '../schema.js';
import type { Snapshot } from '../snapshot.js';
import { type FileStats, formatStats } from '../stats.js';

function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** Characters Hive (and Spark) escape in partition directory names. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what must be escaped
const HIVE_ESCAPED = /[\u0001-\u001f"#%'*/:=?\\\u007f{[\]^]/g;

/** `col=value` directory name of one partition value (`__HIVE_DEFAULT_PARTITION__` for null). */
export function hivePartitionSegment(column: string, value: string | null | undefined): string {
  const hiveEscape = (s: string) =>
    s.replace(HIVE_ESCAPED, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
  const v =
    value === null || value === undefined || value === '' ? '__HIVE_DEFAULT_PARTITION__' : hiveEscape(value);
  return `${hiveEscape(column)}=${v}`;
}

function hasStruct(type: DataType): boolean {
  if (typeof type === 'string') return false;
  switch (type.type) {
    case 'struct':
      return true;
    case 'array':
      return hasStruct(type.elementType);
    case 'map':
      return hasStruct(type.keyType) || hasStruct(type.valueType);
  }
}

/** DuckDB expression turning a logical value of `type` into its physical shape (nested field names mapped). */
function physicalExpr(expr: string, type: DataType, mode: ColumnMappingMode, depth: number): string {
  if (mode === 'none' || !hasStruct(type) || typeof type === 'string') return expr;
  const v = `__v${depth}`;
  switch (type.type) {
    case 'struct': {
      const fields = type.fields.map(
        (f) =>
          `${q(physicalName(f, mode))} := ${physicalExpr(`(${expr}).${q(f.name)}`, f.type, mode, depth + 1)}`,
      );
      return `CASE WHEN (${expr}) IS NULL THEN NULL ELSE struct_pack(${fields.join(', ')}) END`;
    }
    case 'array':
      return `list_transform(${expr}, lambda ${v}: ${physicalExpr(v, type.elementType, mode, depth + 1)})`;
    case 'map': {
      const key = physicalExpr(`${v}.key`, type.keyType, mode, depth + 1);
      const value = physicalExpr(`${v}.value`, type.valueType, mode, depth + 1);
      return `map_from_entries(list_transform(map_entries(${expr}), lambda ${v}: struct_pack(key := ${key}, value := ${value})))`;
    }
  }
}

/**
 * The `FIELD_IDS` entry of one column under column mapping mode id: its `delta.columnMapping.id`, and the ids of
 * nested struct fields (inside arrays too). Map keys and values get no ids, as DuckDB cannot set them.
 */
function fieldIdSpec(type: DataType, id: number | undefined): string | undefined {
  const own = id === undefined ? [] : [`__duckdb_field_id: ${id}`];
  if (typeof type === 'string') return id === undefined ? undefined : String(id);
  switch (type.type) {
    case 'struct': {
      const children = type.fields.flatMap((f) => {
        const spec = fieldIdSpec(f.type, fieldId(f, 'id'));
        return spec === undefined ? [] : [`${q(physicalName(f, 'id'))}: ${spec}`];
      });
      return own.length + children.length === 0 ? undefined : `{${[...own, ...children].join(', ')}}`;
    }
    case 'array': {
      const element = fieldIdSpec(type.elementType, undefined);
      const parts = element === undefined ? own : [...own, `element: ${element}`];
      return parts.length === 0 ? undefined : `{${parts.join(', ')}}`;
    }
    case 'map':
      return own.length === 0 ? undefined : `{${own.join(', ')}}`;
  }
}

/** `FIELD_IDS {...}` for column mapping mode id: every field carries `delta.columnMapping.id`. */
function fieldIds(fields: readonly StructField[]): string {
  const entries = fields.map((f) => {
    const id = fieldId(f, 'id');
    if (id === undefined) {
      throw new TributaryError(
        'DELTA_CORRUPT',
        `Column '${f.name}' has no delta.columnMapping.id in column mapping mode id`,
      );
    }
    return `${q(physicalName(f, 'id'))}: ${fieldIdSpec(f.type, id)}`;
  });
  return `{${entries.join(', ')}}`;
}

/** Types whose min/max Delta uses for data skipping. */
const ORDERED =
  /^(byte|short|integer|long|float|double|date|timestamp|timestamp_ntz|string|decimal\(\s*\d+\s*,\s*\d+\s*\))$/;

/** The data columns (not partition columns) that get statistics, per `delta.dataSkipping*` properties. */
function statsFields(metadata: Metadata, dataFields: readonly StructField[]): StructField[] {
  const explicit = metadata.configuration['delta.dataSkippingStatsColumns'];
  if (explicit !== undefined) {
    const wanted = new Set(explicit.split(',').map((s) => s.trim().replaceAll('`', '').toLowerCase()));
    return dataFields.filter((f) => wanted.has(f.name.toLowerCase()));
  }
  const n = Number(metadata.configuration['delta.dataSkippingNumIndexedCols'] ?? '32');
  return n < 0 ? [...dataFields] : dataFields.slice(0, n);
}

async function computeStats(
  connection: DuckDBConnection,
  file: string,
  fields: readonly { physical: string; type: DataType }[],
): Promise<string> {
  const selects = ['count(*) AS "n"'];
  fields.forEach((f, i) => {
    if (typeof f.type !== 'string') return;
    const c = q(f.physical);
    selects.push(`count(*) - count(${c}) AS "nulls_${i}"`);
    if (ORDERED.test(f.type)) selects.push(`min(${c}) AS "min_${i}"`, `max(${c}) AS "max_${i}"`);
  });
  const reader = await connection.runAndReadAll(
    `SELECT ${selects.join(', ')} FROM read_parquet(${sqlString(file)})`,
  );
  const row = reader.getRowObjects()[0] as Record<string, DuckDBValue>;
  const stats: FileStats = { numRecords: Number(row['n']), minValues: {}, maxValues: {}, nullCount: {} };
  fields.forEach((f, i) => {
    const nulls = row[`nulls_${i}`];
    if (nulls === undefined) return;
    stats.nullCount[f.physical] = Number(nulls);
    const min = row[`min_${i}`];
    const max = row[`max_${i}`];
    if (min !== undefined && min !== null) stats.minValues[f.physical] = min;
    if (max !== undefined && max !== null) stats.maxValues[f.physical] = max;
  });
  return formatStats(stats);
}

export interface WriteDataFileRequest {
  readonly snapshot: Snapshot;
  /** A query producing the table's logical columns (partition columns may be present; they are left out). */
  readonly query: string;
  /** The partition values of every row of `query`, as serialised in `add.partitionValues`. */
  readonly partitionValues: Record<string, string | null>;
  readonly dataChange: boolean;
  /** Appended to the query (e.g. `ORDER BY ...`), applied before the columns are projected. */
  readonly orderBy?: string;
}

/**
 * Writes one new data file under the table root (in its Hive-style partition directory) and returns its `add`.
 * Nothing is committed: a crash leaves an unreferenced file, which VACUUM removes.
 */
export async function writeDataFile(
  connection: DuckDBConnection,
  request: WriteDataFileRequest,
): Promise<AddFile> {
  const { snapshot } = request;
  const { metadata } = snapshot;
  const schema: StructType = snapshot.schema;
  const mode = effectiveColumnMappingMode(snapshot.protocol, metadata, snapshot.tableRoot);
  const partitionColumns = new Set(metadata.partitionColumns.map((c) => c.toLowerCase()));
  const dataFields = schema.fields.filter((f) => !partitionColumns.has(f.name.toLowerCase()));
  const partitionFields = schema.fields.filter((f) => partitionColumns.has(f.name.toLowerCase()));
  const dirs = partitionFields.map((f) => {
    const key = physicalName(f, mode);
    return hivePartitionSegment(key, request.partitionValues[key] ?? request.partitionValues[f.name]);
  });
  const relative = [...dirs, newDataFileName()].join('/');
  const absolute = path.join(snapshot.tableRoot, ...relative.split('/'));
  await mkdir(path.dirname(absolute), { recursive: true });

  const columns = dataFields.map(
    (f) => `${physicalExpr(q(f.name), f.type, mode, 0)} AS ${q(physicalName(f, mode))}`,
  );
  const select = columns.length > 0 ? columns.join(', ') : '1 AS "_tributary_empty"';
  const options = ['FORMAT parquet', 'COMPRESSION snappy'];
  if (mode === 'id' && dataFields.length > 0) options.push(`FIELD_IDS ${fieldIds(dataFields)}`);
  await connection.run(
    `COPY (SELECT ${select} FROM (${request.query}) AS __src${request.orderBy ? ` ORDER BY ${request.orderBy}` : ''}) TO ${sqlString(absolute)} (${options.join(', ')})`,
  );
  const info = await stat(absolute);
  const stats = await computeStats(
    connection,
    absolute,
    statsFields(metadata, dataFields).map((f) => ({ physical: physicalName(f, mode), type: f.type })),
  );
  return {
    path: encodeURI(relative),
    partitionValues: { ...request.partitionValues },
    size: info.size,
    modificationTime: Math.floor(info.mtimeMs),
    dataChange: request.dataChange,
    stats,
  };
}
