/**
 * The SQL entry point: recognises the statement kind and runs its handler (one file per kind in this folder);
 * anything not recognised is a query for DuckDB (`StatementContext.query`), after the Databricks rewrite.
 */
import { alterTablePropertiesRoute } from './alter-table-properties.js';
import { describeConnectionRoute, showTablesUsingConnectionRoute } from './connections.js';
import type { QueryResult, Route, StatementContext } from './context.js';
import { Cursor } from './cursor.js';
import { describeDetailRoute } from './describe-detail.js';
import { describeHistoryRoute } from './describe-history.js';
import { tokenize } from './lexer.js';
import { listVolumeRoute } from './list-volume.js';
import { optimizeRoute } from './optimize.js';
import { restoreRoute } from './restore.js';
import { setConfigRoute } from './set-config.js';
import { shallowCloneRoute } from './shallow-clone.js';
import { showTblPropertiesRoute } from './show-tblproperties.js';
import { useRoute } from './use.js';
import { vacuumRoute } from './vacuum.js';

export const ROUTES: readonly Route[] = [
  listVolumeRoute,
  describeConnectionRoute,
  showTablesUsingConnectionRoute,
  describeHistoryRoute,
  describeDetailRoute,
  optimizeRoute,
  vacuumRoute,
  restoreRoute,
  shallowCloneRoute,
  alterTablePropertiesRoute,
  showTblPropertiesRoute,
  setConfigRoute,
  useRoute,
];

/** The kind of statement `sql` is (`QUERY` for DuckDB passthrough); parse errors propagate. */
export function statementKind(sql: string): string {
  const tokens = tokenize(sql);
  for (const r of ROUTES) if (r.route(new Cursor(sql, tokens))) return r.kind;
  return 'QUERY';
}

/** Runs one statement. */
export async function executeStatement(context: StatementContext, sql: string): Promise<QueryResult> {
  const tokens = tokenize(sql);
  for (const r of ROUTES) {
    const run = r.route(new Cursor(sql, tokens));
    if (run) return run(context);
  }
  return context.query(sql);
}
