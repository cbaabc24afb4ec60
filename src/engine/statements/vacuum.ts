/**
 * `VACUUM <table> [RETAIN n HOURS] [DRY RUN]` (`src/delta/operations/vacuum.ts`). A retention below the
 * table's `delta.deletedFileRetentionDuration` is refused unless the session ran
 * `SET spark.databricks.delta.retentionDurationCheck.enabled = false`.
 */
import { vacuum } from '../../delta/operations/vacuum.js';
import { booleanSetting, type QueryResult, route, SETTINGS, type StatementHandler } from './context.js';
import type { Cursor, TableReference } from './cursor.js';

export interface Vacuum {
  readonly table: TableReference;
  readonly retainHours?: number;
  readonly dryRun: boolean;
}

export const vacuumStatement: StatementHandler<Vacuum> = {
  kind: 'VACUUM',
  parse(cursor: Cursor) {
    if (!cursor.acceptKeyword('VACUUM')) return undefined;
    const table = cursor.tableReference();
    let retainHours: number | undefined;
    let dryRun = false;
    for (;;) {
      if (retainHours === undefined && cursor.acceptKeyword('RETAIN')) {
        retainHours = cursor.number();
        if (!cursor.acceptKeyword('HOURS') && !cursor.acceptKeyword('HOUR'))
          throw cursor.error('expected HOURS');
      } else if (!dryRun && cursor.acceptKeyword('DRY', 'RUN')) {
        dryRun = true;
      } else break;
    }
    cursor.expectEnd();
    return retainHours === undefined ? { table, dryRun } : { table, retainHours, dryRun };
  },
  async execute(context, statement): Promise<QueryResult> {
    const table = await context.resolveTable(statement.table);
    const result = await vacuum(table.root, {
      dryRun: statement.dryRun,
      retentionCheck: booleanSetting(context, SETTINGS.retentionDurationCheck, true),
      logToHistory: booleanSetting(context, SETTINGS.vacuumLogging, true),
      ...(statement.retainHours === undefined ? {} : { retentionHours: statement.retainHours }),
    });
    if (statement.dryRun) {
      return { columns: ['path'], rows: result.files.map((path) => ({ path })) };
    }
    context.tableChanged(table.root);
    return {
      columns: ['path', 'numDeletedFiles', 'numDeletedBytes'],
      rows: [{ path: table.root, numDeletedFiles: result.files.length, numDeletedBytes: result.bytes }],
    };
  },
};

export const vacuumRoute = route(vacuumStatement);
