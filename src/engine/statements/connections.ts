/**
 * The checklist's connection statements (reference 000, section 9):
 *
 *   DESCRIBE CONNECTION <connection>
 *   SHOW TABLES IN <database> USING CONNECTION <connection>
 *
 * Both go through the session's ConnectionDirectory, which the composition root supplies; the engine never
 * opens a source or sees a password.
 */
import { TributaryError } from '../../core/errors.js';
import { type QueryResult, route, type StatementContext, type StatementHandler } from './context.js';
import type { Cursor } from './cursor.js';

function directory(context: StatementContext) {
  if (!context.connections) {
    throw new TributaryError('USAGE', 'Connection statements need a configuration with connections.', {
      hint: 'Run tributary sql where tributary.yaml defines the connection, or pass --config <file>.',
    });
  }
  return context.connections;
}

function known(context: StatementContext, name: string): void {
  const names = directory(context).names();
  if (!names.includes(name)) {
    throw new TributaryError('SQL_ERROR', `Connection '${name}' does not exist.`, {
      hint:
        names.length > 0
          ? `Connections in the config: ${names.join(', ')}.`
          : 'Define one under `connections:`.',
    });
  }
}

export const describeConnection: StatementHandler<{ readonly name: string }> = {
  kind: 'DESCRIBE CONNECTION',
  parse(cursor: Cursor) {
    if (!(cursor.acceptKeyword('DESCRIBE', 'CONNECTION') || cursor.acceptKeyword('DESC', 'CONNECTION')))
      return undefined;
    const name = cursor.identifier();
    cursor.expectEnd();
    return { name };
  },
  async execute(context, { name }): Promise<QueryResult> {
    known(context, name);
    const rows = directory(context)
      .describe(name)
      .map(({ key, value }) => ({ info_name: key, info_value: value }));
    return { columns: ['info_name', 'info_value'], rows };
  },
};

export const showTablesUsingConnection: StatementHandler<{
  readonly database: string;
  readonly name: string;
}> = {
  kind: 'SHOW TABLES USING CONNECTION',
  parse(cursor: Cursor) {
    if (!cursor.acceptKeyword('SHOW', 'TABLES')) return undefined;
    if (!(cursor.acceptKeyword('IN') || cursor.acceptKeyword('FROM'))) return undefined;
    const database = cursor.identifier();
    if (!cursor.acceptKeyword('USING', 'CONNECTION')) return undefined;
    const name = cursor.identifier();
    cursor.expectEnd();
    return { database, name };
  },
  async execute(context, { database, name }): Promise<QueryResult> {
    known(context, name);
    const tables = await directory(context).tableNames(name, database, new AbortController().signal);
    return {
      columns: ['database', 'tableName', 'isTemporary'],
      rows: tables.map((tableName) => ({ database, tableName, isTemporary: false })),
    };
  },
};

export const describeConnectionRoute = route(describeConnection);
export const showTablesUsingConnectionRoute = route(showTablesUsingConnection);
