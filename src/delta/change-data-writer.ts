/**
 * Writing the change data feed (DIGEST §10, PROTOCOL "Add CDC File"): when a table has
 * `delta.enableChangeDataFeed=true`, a commit whose `add`/`remove` actions would misstate its row changes
 * (a copy-on-write rewrite copies unchanged rows; a deletion-vector update re-adds the same file) carries
 * `cdc` actions naming `_change_data/` Parquet files with the changed rows, each with `_change_type`:
 * `insert`, `update_preimage`, `update_postimage` or `delete`. A reader then takes that version's changes
 * from the cdc files only, so they must hold every change of the commit, inserts included, as Spark's MERGE
 * writes them.
 *
 * Commits whose actions already state the change exactly need no cdc files, as in Spark: appends (each added
 * row is an insert), and overwrites that remove whole files and add only new rows.
 *
 * Which tables need them, and the column names the feed reserves, are rules of the commit
 * (table-features.ts: `changeDataFeedEnabled`, `checkChangeFeedColumns`).
 */
import { randomUUID } from 'node:crypto';
import { mkdir, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import type { AddCDCFile } from './actions.js';
import { sqlIdentifier as q } from './scan.js';

/** The column of a cdc file that says what the row is: insert, update_preimage, update_postimage or delete. */
export const CHANGE_TYPE_COLUMN = '_change_type';

/**
 * Writes the rows of `query` (the table's logical columns followed by `_change_type`, in the table's column
 * order) as one cdc file of an unpartitioned table without column mapping, and returns its `cdc` action; null
 * when the query has no rows (no file is left behind). Nothing is committed: a crash leaves an unreferenced
 * file, which VACUUM removes.
 */
export async function writeChangeDataFile(
  connection: DuckDBConnection,
  tableRoot: string,
  query: string,
): Promise<AddCDCFile | null> {
  const relative = `_change_data/cdc-00000-${randomUUID()}.c000.snappy.parquet`;
  const absolute = path.join(tableRoot, ...relative.split('/'));
  await mkdir(path.dirname(absolute), { recursive: true });
  const result = await connection.runAndReadAll(
    `COPY (${query}) TO '${absolute.replaceAll("'", "''")}' (FORMAT parquet, COMPRESSION snappy)`,
  );
  const rows = Number(result.getRowObjects()[0]?.['Count'] ?? 0);
  if (rows === 0) {
    await unlink(absolute).catch(() => {});
    return null;
  }
  const info = await stat(absolute);
  return { path: relative, partitionValues: {}, size: info.size, dataChange: false };
}

/**
 * `SELECT <columns>, <changeType> AS _change_type FROM (<from>)`: change rows in a cdc file's shape.
 * `changeType` is SQL: a literal such as `'insert'` or an expression choosing per row.
 */
export function changeRows(columns: readonly string[], changeType: string, from: string): string {
  return `SELECT ${columns.map(q).join(', ')}, ${changeType} AS ${q(CHANGE_TYPE_COLUMN)} FROM (${from}) AS __changes`;
}
