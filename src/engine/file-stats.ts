/**
 * Per-file statistics for `add.stats`, computed by DuckDB over the file just written. One aggregate query per
 * file: the rows are already on disk, and DuckDB reads only the columns it needs.
 */
import type { DuckDBValue } from '@duckdb/node-api';
import type { StructField } from '../delta/schema.js';
import { type FileStats, formatStats } from '../delta/stats.js';
import { type DuckDb, quoteDuckIdent, quoteDuckString } from './duckdb.js';

/** Types whose min/max data skipping can use. */
const ORDERED =
  /^(byte|short|integer|long|float|double|date|timestamp|timestamp_ntz|string|decimal\(\d+,\d+\))$/;

export async function computeFileStats(
  db: DuckDb,
  path: string,
  fields: readonly StructField[],
): Promise<string> {
  const selects = ['count(*) AS "n"'];
  fields.forEach((f, i) => {
    const c = quoteDuckIdent(f.name);
    selects.push(`count(*) - count(${c}) AS "nulls_${i}"`);
    if (typeof f.type === 'string' && ORDERED.test(f.type)) {
      selects.push(`min(${c}) AS "min_${i}"`, `max(${c}) AS "max_${i}"`);
    }
  });
  const reader = await db.connection.runAndReadAll(
    `SELECT ${selects.join(', ')} FROM read_parquet(${quoteDuckString(path)})`,
  );
  const row = reader.getRowObjects()[0] as Record<string, DuckDBValue>;
  const stats: FileStats = { numRecords: Number(row['n']), minValues: {}, maxValues: {}, nullCount: {} };
  fields.forEach((f, i) => {
    stats.nullCount[f.name] = Number(row[`nulls_${i}`]);
    const min = row[`min_${i}`];
    const max = row[`max_${i}`];
    if (min !== undefined && min !== null) stats.minValues[f.name] = min;
    if (max !== undefined && max !== null) stats.maxValues[f.name] = max;
  });
  return formatStats(stats);
}
