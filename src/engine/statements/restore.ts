/**
 * `RESTORE [TABLE] <table> [TO] VERSION AS OF n | TIMESTAMP AS OF <expr>` (`src/delta/operations/restore.ts`),
 * returning Databricks' metrics row.
 */
import { restoreTable } from '../../delta/operations/restore.js';
import { type QueryResult, route, type StatementHandler } from './context.js';
import type { Cursor, TableReference, Temporal } from './cursor.js';

export interface Restore {
  readonly table: TableReference;
  readonly temporal: Temporal;
}

export const RESTORE_COLUMNS = [
  'table_size_after_restore',
  'num_of_files_after_restore',
  'num_removed_files',
  'num_restored_files',
  'removed_files_size',
  'restored_files_size',
] as const;

export const restoreStatement: StatementHandler<Restore> = {
  kind: 'RESTORE',
  parse(cursor: Cursor) {
    if (!cursor.acceptKeyword('RESTORE')) return undefined;
    cursor.acceptKeyword('TABLE');
    const table = cursor.tableReference();
    cursor.acceptKeyword('TO');
    const temporal = cursor.temporal();
    if (!temporal) throw cursor.error('expected VERSION AS OF <version> or TIMESTAMP AS OF <timestamp>');
    cursor.expectEnd();
    return { table, temporal };
  },
  async execute(context, statement): Promise<QueryResult> {
    const table = await context.resolveTable(statement.table);
    const target =
      'version' in statement.temporal
        ? { version: statement.temporal.version }
        : { timestamp: await context.evaluateTimestamp(statement.temporal.timestampSql) };
    const result = await restoreTable(table.root, target);
    context.tableChanged(table.root);
    const m = result.metrics;
    return {
      columns: RESTORE_COLUMNS,
      rows: [
        {
          table_size_after_restore: m.tableSizeAfterRestore,
          num_of_files_after_restore: m.numOfFilesAfterRestore,
          num_removed_files: m.numRemovedFiles,
          num_restored_files: m.numRestoredFiles,
          removed_files_size: m.removedFilesSize,
          restored_files_size: m.restoredFilesSize,
        },
      ],
    };
  },
};

export const restoreRoute = route(restoreStatement);
