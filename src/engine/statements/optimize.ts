/**
 * `OPTIMIZE <table> [WHERE <partition predicate>] [ZORDER BY (c1, c2, ...)]`: compaction and Z-ordering
 * (`src/delta/operations/optimize.ts`). The target file size is the table's `delta.targetFileSize`, else the
 * session's `spark.databricks.delta.optimize.maxFileSize`, else 128 MiB.
 */
import { optimize } from '../../delta/operations/optimize.js';
import { parseByteSize, targetFileSizeOf } from '../../delta/operations/table-config.js';
import { rewriteDatabricksSql } from '../databricks-dialect.js';
import { type QueryResult, route, SETTINGS, type StatementHandler } from './context.js';
import { type Cursor, sqlError, type TableReference } from './cursor.js';

export interface Optimize {
  readonly table: TableReference;
  /** The predicate as written (Databricks dialect). */
  readonly where?: string;
  readonly zOrderBy: readonly string[];
}

export const optimizeStatement: StatementHandler<Optimize> = {
  kind: 'OPTIMIZE',
  parse(cursor: Cursor) {
    if (!cursor.acceptKeyword('OPTIMIZE')) return undefined;
    const table = cursor.tableReference();
    let where: string | undefined;
    if (cursor.acceptKeyword('WHERE')) {
      const from = cursor.position;
      let depth = 0;
      while (!cursor.atEnd()) {
        const t = cursor.peek();
        if (t?.type === 'op' && t.text === '(') depth++;
        if (t?.type === 'op' && t.text === ')') depth--;
        if (depth === 0 && cursor.isKeyword('ZORDER', 'BY')) break;
        cursor.position++;
      }
      where = cursor.text(from, cursor.position);
      if (where === '') throw cursor.error('expected a predicate after WHERE');
    }
    const zOrderBy = cursor.acceptKeyword('ZORDER', 'BY') ? cursor.identifierList() : [];
    cursor.expectEnd();
    return where === undefined ? { table, zOrderBy } : { table, where, zOrderBy };
  },
  async execute(context, statement): Promise<QueryResult> {
    const table = await context.resolveTable(statement.table);
    const snapshot = await context.loadSnapshot(table);
    const session = context.settings.get(SETTINGS.optimizeMaxFileSize.toLowerCase());
    let targetFileSize: number | undefined;
    if (targetFileSizeOf(snapshot.metadata) === undefined && session !== undefined) {
      targetFileSize = parseByteSize(session);
      if (targetFileSize === undefined) {
        throw sqlError(`${SETTINGS.optimizeMaxFileSize} = '${session}' is not a byte size such as 128mb`);
      }
    }
    const result = await optimize(table.root, {
      connection: context.db.connection,
      zOrderBy: statement.zOrderBy,
      ...(statement.where === undefined ? {} : { where: rewriteDatabricksSql(statement.where).sql }),
      ...(targetFileSize === undefined ? {} : { targetFileSize }),
    });
    if (result.version !== null) context.tableChanged(table.root);
    return { columns: ['path', 'metrics'], rows: [{ path: table.root, metrics: result.metrics }] };
  },
};

export const optimizeRoute = route(optimizeStatement);
