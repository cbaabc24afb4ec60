/** `DESCRIBE DETAIL <table>`: one row of table-level facts, with Databricks' columns. */
import { tableDetail } from '../../delta/operations/detail.js';
import { formatTimestamp, type QueryResult, route, type StatementHandler } from './context.js';
import type { Cursor, TableReference } from './cursor.js';

export interface DescribeDetail {
  readonly table: TableReference;
}

export const DETAIL_COLUMNS = [
  'format',
  'id',
  'name',
  'description',
  'location',
  'createdAt',
  'lastModified',
  'partitionColumns',
  'clusteringColumns',
  'numFiles',
  'sizeInBytes',
  'properties',
  'minReaderVersion',
  'minWriterVersion',
  'tableFeatures',
  'statistics',
] as const;

export const describeDetail: StatementHandler<DescribeDetail> = {
  kind: 'DESCRIBE DETAIL',
  parse(cursor: Cursor) {
    if (!cursor.acceptKeyword('DESCRIBE', 'DETAIL') && !cursor.acceptKeyword('DESC', 'DETAIL'))
      return undefined;
    const table = cursor.tableReference();
    cursor.expectEnd();
    return { table };
  },
  async execute(context, statement): Promise<QueryResult> {
    const table = await context.resolveTable(statement.table);
    const snapshot = await context.loadSnapshot(table);
    const detail = tableDetail(snapshot, table.name === null ? {} : { name: table.name });
    return {
      columns: DETAIL_COLUMNS,
      rows: [
        {
          ...detail,
          createdAt: detail.createdAt === null ? null : formatTimestamp(detail.createdAt),
          lastModified: formatTimestamp(detail.lastModified),
        },
      ],
    };
  },
};

export const describeDetailRoute = route(describeDetail);
