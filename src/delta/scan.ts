/**
 * Turning a {@link Snapshot} into one DuckDB `SELECT` over its logical columns. This is the single place where
 * Delta's physical layout becomes table rows; every table read (SQL, apply, CDF) goes through it:
 *
 * - **projection**: the table schema, in schema order (or `options.columns`); columns a file lacks (schema
 *   evolution) read as NULL; extra file columns (a stray `_change_type`, materialised partition columns) are
 *   ignored;
 * - **types**: each column is cast to its Delta type, which also performs type widening (int → long, float →
 *   double, decimal widening, date → timestamp_ntz), nested types included; Delta `timestamp` columns written as
 *   zone-less Parquet timestamps (INT96) are read as UTC instants, so no session time zone is involved;
 * - **partition values** come from `add.partitionValues` (the directory layout is not authoritative), typed;
 * - **column mapping** (`name`/`id`): physical names (and, in `id` mode, Parquet field ids for top-level
 *   columns) are resolved and renamed to logical names, in nested structs too;
 * - **deletion vectors**: deleted rows are removed with an anti join on `(file, file_row_number)` against a
 *   temporary table filled from the DV bitmaps, so a DV of millions of rows never becomes SQL text;
 * - **variant** columns read as `STRUCT(metadata BLOB, value BLOB)` (the unshredded binary encoding).
 */
import { createHash } from 'node:crypto';
import {
  type DuckDBConnection,
  type DuckDBListType,
  type DuckDBMapType,
  type DuckDBStructType,
  type DuckDBType,
  DuckDBTypeId,
} from '@duckdb/node-api';
import { messageOf, TributaryError } from '../core/errors.js';
import { type DeletionVectorDescriptor, deletionVectorId } from './actions.js';
import {
  type ColumnMappingMode,
  effectiveColumnMappingMode,
  fieldId,
  partitionValueOf,
  physicalName,
} from './column-mapping.js';
import { readDeletionVector } from './deletion-vectors.js';
import type { RowIndexSet } from './roaring.js';
import type { DataType, StructField, StructType } from './schema.js';
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
  // DuckDB's NULL type cannot be named in a CAST; a void column only ever holds NULL anyway.
  void: 'INTEGER',
  variant: 'STRUCT(metadata BLOB, "value" BLOB)',
};

/** The DuckDB type of a Delta type. Throws `DELTA_PROTOCOL` for a type name it does not know. */
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

/** A timestamp with a time or a zone suffix: `...T12:00:00Z`, `... 12:00:00+02:00`. */
const ZONED = /\d\d:\d\d(:\d\d(\.\d+)?)?\s*([zZ]|[+-]\d\d(:?\d\d)?)$/;

/**
 * SQL literal for a serialised partition value. `null`, and the empty string for non-string types (Spark
 * writes both for NULL), become NULL. Timestamps may be ISO 8601 with a zone or legacy
 * `YYYY-MM-DD HH:MM:SS[.ffffff]`, which Spark writes in the writer's session time zone without recording it:
 * it is read in `timeZone` (default UTC, as delta-kernel does).
 */
export function partitionValueSql(
  value: string | null | undefined,
  type: DataType,
  timeZone = 'UTC',
): string {
  const target = duckdbType(type);
  if (value === null || value === undefined || (value === '' && type !== 'string')) {
    return `CAST(NULL AS ${target})`;
  }
  // Binary partition values are the raw bytes as a string: re-encode, do not parse `\x` escapes.
  if (type === 'binary') return `encode(${sqlString(value)})`;
  if (type === 'timestamp' && !ZONED.test(value)) {
    return `timezone(${sqlString(timeZone)}, CAST(${sqlString(value)} AS TIMESTAMP))`;
  }
  return `CAST(${sqlString(value)} AS ${target})`;
}

// ---------------------------------------------------------------------------------------------------------------
// Projection of one physical column to its logical type

/** Logical field name to the entry of a physical struct, exact first, then case-insensitive. */
function entryOf(struct: DuckDBStructType, name: string): { name: string; type: DuckDBType } | undefined {
  let i = struct.entryNames.indexOf(name);
  if (i < 0) {
    const lower = name.toLowerCase();
    i = struct.entryNames.findIndex((n) => n.toLowerCase() === lower);
  }
  return i < 0
    ? undefined
    : { name: struct.entryNames[i] as string, type: struct.entryTypes[i] as DuckDBType };
}

function isNaiveTimestamp(type: DuckDBType): boolean {
  const id = type.typeId;
  return (
    id === DuckDBTypeId.TIMESTAMP ||
    id === DuckDBTypeId.TIMESTAMP_S ||
    id === DuckDBTypeId.TIMESTAMP_MS ||
    id === DuckDBTypeId.TIMESTAMP_NS
  );
}

/**
 * Whether a plain CAST cannot turn the physical value into the logical one: a field is renamed (column mapping;
 * DuckDB casts structs by name) or a Delta `timestamp` is stored zone-less (a cast would apply the session's
 * time zone).
 */
function needsRebuild(type: DataType, physical: DuckDBType, mode: ColumnMappingMode): boolean {
  if (typeof type === 'string') return type === 'timestamp' && isNaiveTimestamp(physical);
  switch (type.type) {
    case 'struct': {
      if (physical.typeId !== DuckDBTypeId.STRUCT) return false;
      return type.fields.some((f) => {
        const pn = physicalName(f, mode);
        if (pn !== f.name) return true;
        const entry = entryOf(physical as DuckDBStructType, pn);
        return entry !== undefined && needsRebuild(f.type, entry.type, mode);
      });
    }
    case 'array':
      return (
        physical.typeId === DuckDBTypeId.LIST &&
        needsRebuild(type.elementType, (physical as DuckDBListType).valueType, mode)
      );
    case 'map':
      return (
        physical.typeId === DuckDBTypeId.MAP &&
        (needsRebuild(type.keyType, (physical as DuckDBMapType).keyType, mode) ||
          needsRebuild(type.valueType, (physical as DuckDBMapType).valueType, mode))
      );
  }
}

/** Builds expressions; `lambdas` keeps nested lambda parameter names distinct. */
class Projector {
  private lambdas = 0;

  constructor(private readonly mode: ColumnMappingMode) {}

  /** SQL turning `expr` (physical type `physical`, or absent from every file) into logical type `type`. */
  project(type: DataType, physical: DuckDBType | undefined, expr: string): string {
    const target = duckdbType(type);
    if (physical === undefined) return `CAST(NULL AS ${target})`;
    if (!needsRebuild(type, physical, this.mode)) {
      return physical.toString() === target ? expr : `CAST(${expr} AS ${target})`;
    }
    if (typeof type === 'string') return `timezone('UTC', CAST(${expr} AS TIMESTAMP))`;
    switch (type.type) {
      case 'struct': {
        const struct = physical as DuckDBStructType;
        const fields = type.fields.map((f) => {
          const entry = entryOf(struct, physicalName(f, this.mode));
          const child = entry ? `struct_extract(${expr}, ${sqlString(entry.name)})` : 'NULL';
          return `${sqlIdentifier(f.name)} := ${this.project(f.type, entry?.type, child)}`;
        });
        return `CASE WHEN ${expr} IS NULL THEN NULL ELSE struct_pack(${fields.join(', ')}) END`;
      }
      case 'array': {
        const x = `__x${++this.lambdas}`;
        const element = this.project(type.elementType, (physical as DuckDBListType).valueType, x);
        return `list_transform(${expr}, lambda ${x}: ${element})`;
      }
      case 'map': {
        const map = physical as DuckDBMapType;
        const x = `__x${++this.lambdas}`;
        const key = this.project(type.keyType, map.keyType, `struct_extract(${x}, 'key')`);
        const value = this.project(type.valueType, map.valueType, `struct_extract(${x}, 'value')`);
        return `map_from_entries(list_transform(map_entries(${expr}), lambda ${x}: struct_pack("key" := ${key}, "value" := ${value})))`;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Scan plans (shared with change-data-feed.ts)

/** What a scan needs to know about the table. */
export interface TableLayout {
  /** Absolute table root, for deletion vector paths and messages. */
  readonly tableRoot: string;
  /** Logical schema. */
  readonly schema: StructType;
  /** Logical names of the partition columns. */
  readonly partitionColumns: readonly string[];
  readonly mode: ColumnMappingMode;
}

/** One file to scan. */
export interface ScanFile {
  /** Absolute local path. */
  readonly path: string;
  /** As in the log (keys are physical names under column mapping). */
  readonly partitionValues: Readonly<Record<string, string | null>>;
  /** Rows to drop, as a descriptor loaded on demand (scans in `exclude` mode). */
  readonly deletionVector?: DeletionVectorDescriptor | undefined;
  /** Rows to drop (`exclude` mode) or to keep (`keep` mode), already loaded. Wins over `deletionVector`. */
  readonly rows?: RowIndexSet | undefined;
  /** Per-file SQL expressions for {@link ScanPlan.constantColumns}, in the same order. */
  readonly constants?: readonly string[];
  /** The log file the file's action came from, for error messages. */
  readonly source?: string;
}

export interface ScanPlan {
  readonly layout: TableLayout;
  readonly files: readonly ScanFile[];
  /** Logical columns to return, in this order; default: the whole schema in schema order. */
  readonly columns?: readonly string[] | undefined;
  /** Columns read from the files as they are (e.g. `_change_type` of CDC files), NULL where absent. */
  readonly fileColumns?: readonly { name: string; type: string }[];
  /** Columns whose value is constant per file, given by {@link ScanFile.constants}. */
  readonly constantColumns?: readonly { name: string; type: string }[];
  /** Zone of zone-less (legacy) timestamp partition values; default UTC. */
  readonly partitionTimeZone?: string | undefined;
  /** `exclude` (default): drop each file's `rows`/DV rows. `keep`: return only each file's `rows`. */
  readonly rowMode?: 'exclude' | 'keep';
  /**
   * When set, one more output column (last) of this name holds each row's 0-based position in its data file
   * (BIGINT), the index deletion vectors use: a writer that deletes rows by DV needs it.
   */
  readonly rowIndexColumn?: string | undefined;
  readonly signal?: AbortSignal | undefined;
}

const FILE_COLUMN = '__tributary_file';
const DV_LOAD_CONCURRENCY = 16;

async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

/**
 * Fills (once per connection and content) a temporary table `(file_id INTEGER, row_index BIGINT)` with the row
 * sets of the plan's files and returns its qualified name, or undefined when no file has a row set.
 *
 * The name is a hash of the files and their DV ids (DV files are immutable) or row sets, so scanning the same
 * snapshot again on the same connection reuses the table and the SQL of a view over it stays valid for the life
 * of the connection. The ranges go in through an appender and are expanded by DuckDB, so a run of a million
 * deleted rows costs one appended row.
 */
async function rowSetTable(
  connection: DuckDBConnection,
  files: readonly ScanFile[],
  mode: 'exclude' | 'keep',
  root: string,
  signal: AbortSignal | undefined,
): Promise<string | undefined> {
  const hash = createHash('sha256').update(`${mode}\u0000${root}`);
  let any = false;
  files.forEach((f, i) => {
    if (f.rows) {
      any = true;
      hash.update(`\u0000${i}\u0000${f.path}\u0000r`);
      hash.update(new Uint8Array(f.rows.starts.buffer));
      hash.update(new Uint8Array(f.rows.ends.buffer));
    } else if (f.deletionVector && mode === 'exclude') {
      any = true;
      hash.update(`\u0000${i}\u0000${f.path}\u0000${deletionVectorId(f.deletionVector)}`);
    }
  });
  if (!any) return undefined;
  const name = `__tributary_rows_${hash.digest('hex').slice(0, 32)}`;
  const qualified = `temp.main.${sqlIdentifier(name)}`;
  const exists = await connection.runAndReadAll(
    `SELECT 1 FROM duckdb_tables() WHERE temporary AND schema_name = 'main' AND table_name = ${sqlString(name)}`,
  );
  if (exists.currentRowCount > 0) return qualified;

  const sets = await mapLimit(files, DV_LOAD_CONCURRENCY, async (f) => {
    signal?.throwIfAborted();
    if (f.rows) return f.rows;
    if (f.deletionVector && mode === 'exclude') {
      return readDeletionVector(root, f.deletionVector, f.source ?? root);
    }
    return undefined;
  });
  const staging = `__tributary_ranges_${process.pid}_${Math.random().toString(36).slice(2)}`;
  await connection.run(`CREATE TEMP TABLE ${sqlIdentifier(staging)} (file_id INTEGER, lo DOUBLE, hi DOUBLE)`);
  try {
    const appender = await connection.createAppender(staging, 'main', 'temp');
    try {
      sets.forEach((set, fileId) => {
        if (!set) return;
        for (let r = 0; r < set.starts.length; r++) {
          appender.appendInteger(fileId);
          appender.appendDouble(set.starts[r] as number);
          appender.appendDouble(set.ends[r] as number);
          appender.endRow();
        }
      });
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
    // One statement, so a concurrent scan of the same snapshot sees either no table or a complete one.
    await connection.run(
      `CREATE TEMP TABLE IF NOT EXISTS ${sqlIdentifier(name)} AS ` +
        `SELECT file_id, unnest(range(CAST(lo AS BIGINT), CAST(hi AS BIGINT))) AS row_index FROM temp.main.${sqlIdentifier(staging)}`,
    );
  } finally {
    await connection.run(`DROP TABLE IF EXISTS temp.main.${sqlIdentifier(staging)}`);
  }
  return qualified;
}

/** A group of files whose top-level columns have the same physical names (always one group outside `id` mode). */
interface Segment {
  readonly files: readonly { file: ScanFile; id: number }[];
  /** Top-level logical field → column name in these files (undefined: absent). */
  readonly names: ReadonlyMap<StructField, string | undefined>;
}

interface SchemaNode {
  name: string;
  fieldId: number | null;
  children: number;
  duckdbType: string | null;
}

/** Walks the flattened `parquet_schema` rows of one file and returns field id → top-level column name. */
function topLevelIds(rows: readonly SchemaNode[]): Map<number, string> {
  const ids = new Map<number, string>();
  const root = rows[0];
  if (!root) return ids;
  let i = 1;
  const skipSubtree = (): void => {
    const node = rows[i++];
    for (let c = 0; c < (node?.children ?? 0); c++) skipSubtree();
  };
  for (let c = 0; c < root.children && i < rows.length; c++) {
    const node = rows[i] as SchemaNode;
    if (node.fieldId !== null) ids.set(node.fieldId, node.name);
    skipSubtree();
  }
  return ids;
}

function hasTimestamp(type: DataType): boolean {
  if (typeof type === 'string') return type === 'timestamp';
  switch (type.type) {
    case 'struct':
      return type.fields.some((f) => hasTimestamp(f.type));
    case 'array':
      return hasTimestamp(type.elementType);
    case 'map':
      return hasTimestamp(type.keyType) || hasTimestamp(type.valueType);
  }
}

/**
 * Splits the files into groups that can share one `read_parquet`. Two things force a split, and both need the
 * files' own schemas (`parquet_schema`, one footer read per file):
 * - `id` mode: a file's top-level columns are matched by field id, so files that name an id differently are
 *   read separately;
 * - zone-less timestamps: with `union_by_name`, DuckDB would unify an INT96 (naive) column of an old Spark file
 *   with a UTC-adjusted column of a newer file by casting in the *session* time zone; each kind is read on its
 *   own so the naive one can be read as UTC.
 */
async function segmentsOf(
  connection: DuckDBConnection,
  plan: ScanPlan,
  fields: readonly StructField[],
  files: readonly { file: ScanFile; id: number }[],
): Promise<Segment[]> {
  const { mode } = plan.layout;
  const byPhysicalName = new Map(fields.map((f) => [f, physicalName(f, mode)] as const));
  const byId = mode === 'id' && fields.some((f) => fieldId(f, mode) !== undefined);
  const timestamps = fields.some((f) => hasTimestamp(f.type));
  if (files.length === 0 || (!byId && (!timestamps || files.length === 1))) {
    return [{ files, names: byPhysicalName }];
  }
  const list = `[${files.map((f) => sqlString(f.file.path)).join(', ')}]`;
  const result = await connection.runAndReadAll(
    `SELECT file_name, name, field_id, num_children, duckdb_type FROM parquet_schema(${list})`,
  );
  const perFile = new Map<string, SchemaNode[]>();
  for (const [file, name, id, children, duckdbType] of result.getRowsJS()) {
    let rows = perFile.get(String(file));
    if (!rows) {
      rows = [];
      perFile.set(String(file), rows);
    }
    rows.push({
      name: String(name),
      fieldId: id === null ? null : Number(id),
      children: children === null ? 0 : Number(children),
      duckdbType: duckdbType === null ? null : String(duckdbType),
    });
  }
  const groups = new Map<
    string,
    { files: { file: ScanFile; id: number }[]; names: Map<StructField, string | undefined> }
  >();
  for (const entry of files) {
    const nodes = perFile.get(entry.file.path) ?? [];
    const names = new Map<StructField, string | undefined>();
    if (byId) {
      const ids = topLevelIds(nodes);
      for (const f of fields) {
        const id = fieldId(f, mode);
        // Files without any field ids (written before the table had them) are matched by physical name.
        names.set(f, id === undefined || ids.size === 0 ? byPhysicalName.get(f) : ids.get(id));
      }
    } else {
      for (const [f, n] of byPhysicalName) names.set(f, n);
    }
    const timestampKinds = timestamps
      ? nodes
          .filter((n) => n.duckdbType?.startsWith('TIMESTAMP'))
          .map((n) => `${n.name}:${n.duckdbType}`)
          .sort()
      : [];
    const key = JSON.stringify([[...names.values()], timestampKinds]);
    let group = groups.get(key);
    if (!group) {
      group = { files: [], names };
      groups.set(key, group);
    }
    group.files.push(entry);
  }
  return [...groups.values()];
}

function readParquet(paths: readonly string[], withRowNumbers: boolean): string {
  return (
    `read_parquet([${paths.map(sqlString).join(', ')}], union_by_name = true, ` +
    `filename = ${sqlString(FILE_COLUMN)}${withRowNumbers ? ', file_row_number = true' : ''})`
  );
}

/**
 * The SELECT of a {@link ScanPlan}. Asks `connection` for the files' physical schema (one footer read per file,
 * as DuckDB does for any multi-file read) and may create a temporary table on it; the SQL is only valid on that
 * connection. Errors: `DELTA_CORRUPT` naming the file for unreadable data or DV files.
 */
export async function buildScanSql(connection: DuckDBConnection, plan: ScanPlan): Promise<string> {
  const { layout, signal } = plan;
  const rowMode = plan.rowMode ?? 'exclude';
  const partitionColumns = new Set(layout.partitionColumns);
  const wanted = plan.columns ?? layout.schema.fields.map((f) => f.name);
  const fields = wanted.map((name) => {
    const field =
      layout.schema.fields.find((f) => f.name === name) ??
      layout.schema.fields.find((f) => f.name.toLowerCase() === name.toLowerCase());
    if (!field) {
      throw new TributaryError(
        'SQL_ERROR',
        `Delta table ${layout.tableRoot} has no column ${JSON.stringify(name)}`,
      );
    }
    return field;
  });
  const fileColumns = plan.fileColumns ?? [];
  const constantColumns = plan.constantColumns ?? [];
  const outputNames = [
    ...fields.map((f) => f.name),
    ...fileColumns.map((c) => c.name),
    ...constantColumns.map((c) => c.name),
    ...(plan.rowIndexColumn === undefined ? [] : [plan.rowIndexColumn]),
  ];
  if (outputNames.length === 0) {
    // DuckDB has no zero-column relations (Databricks creates schema-less tables, e.g. DLT setup).
    throw new TributaryError('SQL_ERROR', `Delta table ${layout.tableRoot} has no columns to select`, {
      hint: 'The table schema is empty; write data with a schema first.',
    });
  }
  // In keep mode a file without a row set contributes nothing.
  const files = plan.files.filter(
    (f) => rowMode === 'exclude' || (f.rows !== undefined && f.rows.cardinality > 0),
  );
  if (files.length === 0) {
    const cols = [
      ...fields.map((f) => `CAST(NULL AS ${duckdbType(f.type)})`),
      ...fileColumns.map((c) => `CAST(NULL AS ${c.type})`),
      ...constantColumns.map((c) => `CAST(NULL AS ${c.type})`),
      ...(plan.rowIndexColumn === undefined ? [] : ['CAST(NULL AS BIGINT)']),
    ].map((expr, i) => `${expr} AS ${sqlIdentifier(outputNames[i] as string)}`);
    return `SELECT ${cols.join(', ')} WHERE false`;
  }
  signal?.throwIfAborted();

  const rowTable = await rowSetTable(connection, files, rowMode, layout.tableRoot, signal);
  const dataFields = fields.filter((f) => !partitionColumns.has(f.name));
  const partitionFields = fields.filter((f) => partitionColumns.has(f.name));
  // A path listed twice in one read_parquet would be read twice and match both per-file rows (a change feed
  // can insert a file at one version and delete it at another): each repetition goes to its own layer.
  const occurrences = new Map<string, number>();
  const layers: { file: ScanFile; id: number }[][] = [];
  const layerOf = files.map((file, id) => {
    const layer = occurrences.get(file.path) ?? 0;
    occurrences.set(file.path, layer + 1);
    if (layers[layer] === undefined) layers[layer] = [];
    layers[layer]?.push({ file, id });
    return layer;
  });
  const segments: (Segment & { layer: number })[] = [];
  for (const [layer, entries] of layers.entries()) {
    const found = await describeErrors(layout, files, () =>
      segmentsOf(connection, plan, dataFields, entries),
    );
    segments.push(...found.map((segment) => ({ ...segment, layer })));
  }

  // Per-file values: the file's path and layer (join key), its id (row-set key), partition values, constants.
  const pColumns = [
    'file',
    'layer',
    'file_id',
    ...partitionFields.map((_, i) => `p${i}`),
    ...constantColumns.map((_, i) => `c${i}`),
  ];
  const pRows = files.map((file, id) => {
    const values = [
      sqlString(file.path),
      String(layerOf[id]),
      String(id),
      ...partitionFields.map((f) =>
        partitionValueSql(
          partitionValueOf(file.partitionValues, f, layout.mode),
          f.type,
          plan.partitionTimeZone,
        ),
      ),
      ...constantColumns.map((c, i) => `CAST(${file.constants?.[i] ?? 'NULL'} AS ${c.type})`),
    ];
    return `(${values.join(', ')})`;
  });

  const selects: string[] = [];
  for (const segment of segments) {
    const source = readParquet(
      segment.files.map((f) => f.file.path),
      rowTable !== undefined || plan.rowIndexColumn !== undefined,
    );
    const described = await describeErrors(
      layout,
      segment.files.map((f) => f.file),
      async () => {
        const reader = await connection.runAndReadAll(`SELECT * FROM ${source} LIMIT 0`);
        return { names: reader.columnNames(), types: reader.columnTypes() };
      },
    );
    const physical = new Map<string, { name: string; type: DuckDBType }>();
    described.names.forEach((name, i) => {
      const entry = { name, type: described.types[i] as DuckDBType };
      physical.set(name, entry);
      if (!physical.has(name.toLowerCase())) physical.set(name.toLowerCase(), entry);
    });
    const lookup = (name: string | undefined) =>
      name === undefined ? undefined : (physical.get(name) ?? physical.get(name.toLowerCase()));
    const projector = new Projector(layout.mode);
    const cols = [
      ...fields.map((f) => {
        if (partitionColumns.has(f.name)) return `p.p${partitionFields.indexOf(f)}`;
        const column = lookup(segment.names.get(f));
        return projector.project(f.type, column?.type, column ? `d.${sqlIdentifier(column.name)}` : 'NULL');
      }),
      ...fileColumns.map((c) => {
        const column = lookup(c.name);
        return column ? `CAST(d.${sqlIdentifier(column.name)} AS ${c.type})` : `CAST(NULL AS ${c.type})`;
      }),
      ...constantColumns.map((_, i) => `p.c${i}`),
      ...(plan.rowIndexColumn === undefined ? [] : ['d.file_row_number']),
    ].map((expr, i) => `${expr} AS ${sqlIdentifier(outputNames[i] as string)}`);
    let from = `${source} AS d JOIN p ON p.file = d.${FILE_COLUMN} AND p.layer = ${segment.layer}`;
    if (rowTable !== undefined) {
      const join = rowMode === 'exclude' ? 'ANTI JOIN' : 'SEMI JOIN';
      from += ` ${join} ${rowTable} AS r ON r.file_id = p.file_id AND r.row_index = d.file_row_number`;
    }
    selects.push(`SELECT ${cols.join(', ')} FROM ${from}`);
  }
  return [
    `WITH p(${pColumns.join(', ')}) AS (VALUES ${pRows.join(', ')})`,
    selects.join('\nUNION ALL\n'),
  ].join('\n');
}

/** DuckDB's own messages name the offending file (missing, truncated, not Parquet); keep them, typed. */
async function describeErrors<T>(
  layout: TableLayout,
  files: readonly ScanFile[],
  fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if (error instanceof TributaryError) throw error;
    throw new TributaryError(
      'DELTA_CORRUPT',
      `Cannot read the data files of Delta table ${layout.tableRoot} (${files.length} files): ${messageOf(error)}`,
      {
        cause: error,
        hint: 'A data file is missing or damaged; restore it from a backup (or RESTORE the table).',
      },
    );
  }
}

export interface ScanOptions {
  /** Logical columns to return, in this order (default: every column in schema order). */
  columns?: readonly string[] | undefined;
  /**
   * Time zone for legacy timestamp partition values (`2021-09-08 11:11:11`, written by Spark in its session
   * zone, which the log does not record). Default UTC. ISO 8601 values with a zone are unaffected.
   */
  partitionTimeZone?: string | undefined;
  signal?: AbortSignal | undefined;
}

/** The {@link TableLayout} of a snapshot. */
export function layoutOf(snapshot: Snapshot): TableLayout {
  return {
    tableRoot: snapshot.tableRoot,
    schema: snapshot.schema,
    partitionColumns: snapshot.metadata.partitionColumns,
    mode: effectiveColumnMappingMode(snapshot.protocol, snapshot.metadata, snapshot.tableRoot),
  };
}

/**
 * A DuckDB `SELECT` returning the rows of `snapshot` with its logical columns (see the module comment for
 * everything it resolves). `connection` is used to read the files' Parquet schemas and, when the snapshot has
 * deletion vectors, to hold a temporary table of deleted rows: **run the SQL on the same connection**, and do
 * not close it while a view built on the SQL is in use. Repeated calls for the same snapshot reuse the table.
 *
 * Errors (`TributaryError`): `DELTA_CORRUPT` naming the file for a missing or unreadable data file or DV;
 * `SQL_ERROR` for an unknown column in `options.columns` or a table without columns.
 */
export async function scanSql(
  snapshot: Snapshot,
  connection: DuckDBConnection,
  options: ScanOptions = {},
): Promise<string> {
  return buildScanSql(connection, {
    layout: layoutOf(snapshot),
    files: snapshot.files.map((add) => ({
      path: snapshot.dataFilePath(add),
      partitionValues: add.partitionValues,
      deletionVector: add.deletionVector ?? undefined,
      source: `the log of ${snapshot.tableRoot} at version ${snapshot.version}`,
    })),
    columns: options.columns,
    partitionTimeZone: options.partitionTimeZone,
    signal: options.signal,
  });
}
