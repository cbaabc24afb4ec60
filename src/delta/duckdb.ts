/**
 * The DuckDB access the Delta layer needs: reading checkpoint/sidecar Parquet files as log actions.
 * Internal to `src/delta`.
 */
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import type { RawAction } from './actions.js';

let shared: Promise<DuckDBInstance> | undefined;

/** One in-memory DuckDB per process: creating an instance costs milliseconds and memory, a connection little. */
export async function withConnection<T>(fn: (connection: DuckDBConnection) => Promise<T>): Promise<T> {
  shared ??= DuckDBInstance.create(':memory:');
  const connection = await (await shared).connect();
  try {
    return await fn(connection);
  } finally {
    connection.closeSync();
  }
}

/** A SQL string literal. */
export function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** Action columns a checkpoint (classic, multi-part, v2, sidecar) may carry. */
const ACTION_COLUMNS = [
  'txn',
  'add',
  'remove',
  'metaData',
  'protocol',
  'domainMetadata',
  'checkpointMetadata',
  'sidecar',
] as const;

/**
 * Reads Parquet files with one nullable struct column per action and returns one `{<action>: {...}}` object per
 * non-null cell. `to_json` turns MAP columns (partitionValues, configuration) into JSON objects, which is the
 * shape the JSON log uses, so checkpoint and commit actions go through the same replay code.
 */
export async function readParquetActions(
  files: readonly string[],
  options: { readonly skip?: readonly string[] } = {},
): Promise<RawAction[]> {
  if (files.length === 0) return [];
  const skip = new Set(options.skip ?? []);
  const list = `[${files.map(sqlString).join(', ')}]`;
  return withConnection(async (connection) => {
    const described = await connection.runAndReadAll(
      `DESCRIBE SELECT * FROM read_parquet(${list}, union_by_name = true)`,
    );
    const present = new Set(described.getRowsJS().map((row) => String(row[0])));
    const columns = ACTION_COLUMNS.filter((c) => present.has(c) && !skip.has(c));
    if (columns.length === 0) return [];
    const select = columns.map((c) => `to_json("${c}") AS "${c}"`).join(', ');
    // A checkpoint row holds exactly one action, so rows of a skipped kind are dropped before any JSON is built.
    const skipped = [...skip].filter((c) => present.has(c)).map((c) => `"${c}" IS NULL`);
    const result = await connection.runAndReadAll(
      `SELECT ${select} FROM read_parquet(${list}, union_by_name = true)${skipped.length > 0 ? ` WHERE ${skipped.join(' AND ')}` : ''}`,
    );
    const actions: RawAction[] = [];
    for (const row of result.getRowsJS()) {
      for (let i = 0; i < columns.length; i++) {
        const cell = row[i];
        if (typeof cell !== 'string') continue;
        const name = columns[i] as string;
        actions.push({
          [name]: normaliseCheckpointAction(name, JSON.parse(cell) as Record<string, unknown>),
        });
      }
    }
    return actions;
  });
}

/**
 * Parquet has no "absent": every optional field comes back as null. Dropping top-level nulls makes a checkpoint
 * action look like its JSON-log twin (e.g. `deletionVector` absent rather than null, which matters for keys).
 */
function normaliseCheckpointAction(name: string, value: Record<string, unknown>): Record<string, unknown> {
  const out: {
    stats?: unknown;
    stats_parsed?: unknown;
    partitionValues_parsed?: unknown;
    [k: string]: unknown;
  } = {};
  for (const [key, v] of Object.entries(value)) if (v !== null) out[key] = v;
  if (name === 'add') {
    // `stats_parsed` (writeStatsAsStruct) replaces the JSON string when writeStatsAsJson was off.
    const parsed = out.stats_parsed;
    if (out.stats === undefined && parsed !== undefined) out.stats = JSON.stringify(parsed);
    delete out.stats_parsed;
    delete out.partitionValues_parsed;
  }
  return out;
}
