/** `SHOW TBLPROPERTIES <table> [('key')]`: the table's properties as key/value rows, as Databricks shows them. */
import { type QueryResult, route, type StatementHandler } from './context.js';
import type { Cursor, TableReference } from './cursor.js';

export interface ShowTblProperties {
  readonly table: TableReference;
  readonly key?: string;
}

export const showTblProperties: StatementHandler<ShowTblProperties> = {
  kind: 'SHOW TBLPROPERTIES',
  parse(cursor: Cursor) {
    if (!cursor.acceptKeyword('SHOW', 'TBLPROPERTIES')) return undefined;
    const table = cursor.tableReference();
    const keys = cursor.isOp('(') ? cursor.propertyList(false) : [];
    cursor.expectEnd();
    if (keys.length > 1) throw cursor.error('SHOW TBLPROPERTIES takes at most one key');
    return keys[0] === undefined ? { table } : { table, key: keys[0] };
  },
  async execute(context, statement): Promise<QueryResult> {
    const table = await context.resolveTable(statement.table);
    const snapshot = await context.loadSnapshot(table);
    const properties: Record<string, string> = { ...snapshot.metadata.configuration };
    if (snapshot.metadata.description !== undefined) properties['comment'] = snapshot.metadata.description;
    // Databricks lists the protocol versions among the properties.
    properties['delta.minReaderVersion'] = String(snapshot.protocol.minReaderVersion);
    properties['delta.minWriterVersion'] = String(snapshot.protocol.minWriterVersion);
    let entries = Object.entries(properties).sort(([a], [b]) => a.localeCompare(b));
    if (statement.key !== undefined) {
      const wanted = statement.key.toLowerCase();
      entries = entries.filter(([k]) => k.toLowerCase() === wanted);
      if (entries.length === 0) {
        return {
          columns: ['key', 'value'],
          rows: [
            { key: statement.key, value: `Table ${table.display} does not have property: ${statement.key}` },
          ],
        };
      }
    }
    return { columns: ['key', 'value'], rows: entries.map(([key, value]) => ({ key, value })) };
  },
};

export const showTblPropertiesRoute = route(showTblProperties);
