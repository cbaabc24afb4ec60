/**
 * A Delta table's rows as the reader returns them, one `a | b | c` line per row (NULL as `-`), sorted, for
 * tests that compare a table with what they staged.
 */
import { scanSql } from '../../src/delta/scan.js';
import { loadSnapshot } from '../../src/delta/snapshot.js';
import type { DuckDb } from '../../src/engine/duckdb.js';

export async function deltaRows(
  db: DuckDb,
  root: string,
  options: { readonly select?: string; readonly version?: number } = {},
): Promise<string[]> {
  const connection = await db.instance.connect();
  try {
    const snapshot = await loadSnapshot(
      root,
      options.version === undefined ? {} : { version: options.version },
    );
    const sql = await scanSql(snapshot, connection);
    const reader = await connection.runAndReadAll(
      `SELECT ${options.select ?? '*'} FROM (${sql}) ORDER BY ALL`,
    );
    return (reader.getRowObjectsJson() as Record<string, unknown>[]).map((r) =>
      Object.values(r)
        .map((v) => (v === null ? '-' : String(v)))
        .join(' | '),
    );
  } finally {
    connection.closeSync();
  }
}
