/** `DESCRIBE HISTORY <table> [LIMIT n]`: the commits of a table, newest first, with Databricks' columns. */
import { tableHistory } from '../../delta/operations/history.js';
import { formatTimestamp, type QueryResult, route, type StatementHandler } from './context.js';
import type { Cursor, TableReference } from './cursor.js';

export interface DescribeHistory {
  readonly table: TableReference;
  readonly limit?: number;
}

export const HISTORY_COLUMNS = [
  'version',
  'timestamp',
  'userId',
  'userName',
  'operation',
  'operationParameters',
  'job',
  'notebook',
  'clusterId',
  'readVersion',
  'isolationLevel',
  'isBlindAppend',
  'operationMetrics',
  'userMetadata',
  'engineInfo',
] as const;

export const describeHistory: StatementHandler<DescribeHistory> = {
  kind: 'DESCRIBE HISTORY',
  parse(cursor: Cursor) {
    if (!cursor.acceptKeyword('DESCRIBE', 'HISTORY') && !cursor.acceptKeyword('DESC', 'HISTORY'))
      return undefined;
    const table = cursor.tableReference();
    const limit = cursor.acceptKeyword('LIMIT') ? cursor.integer() : undefined;
    cursor.expectEnd();
    return limit === undefined ? { table } : { table, limit };
  },
  async execute(context, statement): Promise<QueryResult> {
    const table = await context.resolveTable(statement.table);
    const entries = await tableHistory(
      table.root,
      statement.limit === undefined ? {} : { limit: statement.limit },
    );
    return {
      columns: HISTORY_COLUMNS,
      rows: entries.map((e) => ({ ...e, timestamp: formatTimestamp(e.timestamp) })),
    };
  },
};

export const describeHistoryRoute = route(describeHistory);
