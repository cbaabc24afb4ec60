/**
 * `USE CATALOG <c>`, `USE SCHEMA <s>`, `USE [DATABASE] <c>.<s>` and `USE <c>`: where two- and one-part table
 * names resolve for the rest of the session (`--catalog` sets the starting catalog).
 */
import { type QueryResult, route, type StatementHandler } from './context.js';
import type { Cursor } from './cursor.js';

export type Use =
  | { readonly catalog: string; readonly schema?: string }
  | { readonly catalog?: undefined; readonly schema: string };

export const useStatement: StatementHandler<Use> = {
  kind: 'USE',
  parse(cursor: Cursor) {
    if (!cursor.acceptKeyword('USE')) return undefined;
    if (cursor.acceptKeyword('CATALOG')) {
      const catalog = cursor.identifier();
      cursor.expectEnd();
      return { catalog };
    }
    if (cursor.acceptKeyword('SCHEMA') || cursor.acceptKeyword('DATABASE')) {
      const first = cursor.identifier();
      const second = cursor.acceptOp('.') ? cursor.identifier() : undefined;
      cursor.expectEnd();
      return second === undefined ? { schema: first } : { catalog: first, schema: second };
    }
    const first = cursor.identifier();
    const second = cursor.acceptOp('.') ? cursor.identifier() : undefined;
    cursor.expectEnd();
    return second === undefined ? { catalog: first } : { catalog: first, schema: second };
  },
  async execute(context, statement): Promise<QueryResult> {
    if (statement.catalog === undefined) await context.use('', statement.schema);
    else await context.use(statement.catalog, statement.schema);
    return { columns: [], rows: [] };
  },
};

export const useRoute = route(useStatement);
