/**
 * `ALTER TABLE <table> SET TBLPROPERTIES ('k' = 'v', ...)` and
 * `ALTER TABLE <table> UNSET TBLPROPERTIES [IF EXISTS] ('k', ...)` (`src/delta/operations/properties.ts`).
 * Other ALTER TABLE forms are not recognised here (DuckDB reports them).
 */
import { setTableProperties, unsetTableProperties } from '../../delta/operations/properties.js';
import { type QueryResult, route, type StatementHandler } from './context.js';
import type { Cursor, TableReference } from './cursor.js';

export type AlterTableProperties =
  | {
      readonly table: TableReference;
      readonly action: 'set';
      readonly properties: ReadonlyArray<[string, string]>;
    }
  | {
      readonly table: TableReference;
      readonly action: 'unset';
      readonly keys: readonly string[];
      readonly ifExists: boolean;
    };

export const alterTableProperties: StatementHandler<AlterTableProperties> = {
  kind: 'ALTER TABLE ... TBLPROPERTIES',
  parse(cursor: Cursor) {
    if (!cursor.acceptKeyword('ALTER', 'TABLE')) return undefined;
    if (!cursor.atTableReference()) return undefined;
    const table = cursor.tableReference();
    if (cursor.acceptKeyword('SET', 'TBLPROPERTIES')) {
      const properties = cursor.propertyList(true);
      cursor.expectEnd();
      return { table, action: 'set', properties };
    }
    if (cursor.acceptKeyword('UNSET', 'TBLPROPERTIES')) {
      const ifExists = cursor.acceptKeyword('IF', 'EXISTS');
      const keys = cursor.propertyList(false);
      cursor.expectEnd();
      return { table, action: 'unset', keys, ifExists };
    }
    return undefined;
  },
  async execute(context, statement): Promise<QueryResult> {
    const table = await context.resolveTable(statement.table);
    const result =
      statement.action === 'set'
        ? await setTableProperties(table.root, Object.fromEntries(statement.properties))
        : await unsetTableProperties(table.root, statement.keys, { ifExists: statement.ifExists });
    if (result.version !== null) context.tableChanged(table.root);
    return { columns: [], rows: [] };
  },
};

export const alterTablePropertiesRoute = route(alterTableProperties);
