/**
 * `SET <spark.style.key> = <value>`, `SET <key>`, `SET` and `RESET [<key>]`: session settings with dotted
 * (Spark/Databricks) keys. The ones Tributary acts on are in `SETTINGS` (context.ts); others are kept and shown
 * but change nothing. Keys without a dot (`SET threads = 4`) are DuckDB settings and go to DuckDB.
 */
import { type QueryResult, route, type StatementHandler } from './context.js';
import { type Cursor, isIdentifierToken } from './cursor.js';
import { identifierText, stringValue } from './lexer.js';

export type SetConfig =
  | { readonly action: 'set'; readonly key: string; readonly value: string }
  | { readonly action: 'show'; readonly key?: string }
  | { readonly action: 'reset'; readonly key?: string };

/** `a.b.c` at the cursor, or undefined when the next tokens are not a dotted key. */
function dottedKey(cursor: Cursor): string | undefined {
  const parts: string[] = [];
  const start = cursor.position;
  while (isIdentifierToken(cursor.peek())) {
    parts.push(identifierText(cursor.peek() as NonNullable<ReturnType<Cursor['peek']>>));
    cursor.position++;
    if (!cursor.acceptOp('.')) break;
  }
  if (parts.length < 2) {
    cursor.position = start;
    return undefined;
  }
  return parts.join('.');
}

export const setConfig: StatementHandler<SetConfig> = {
  kind: 'SET',
  parse(cursor: Cursor) {
    if (cursor.acceptKeyword('RESET')) {
      if (cursor.atEnd()) return { action: 'reset' };
      const key = dottedKey(cursor);
      if (key === undefined) return undefined;
      cursor.expectEnd();
      return { action: 'reset', key };
    }
    if (!cursor.acceptKeyword('SET')) return undefined;
    if (cursor.atEnd()) return { action: 'show' };
    const key = dottedKey(cursor);
    if (key === undefined) return undefined;
    if (cursor.atEnd()) return { action: 'show', key };
    cursor.acceptOp('=');
    const rest = cursor.peek();
    let value: string;
    if (rest?.type === 'string' && cursor.tokens.length === cursor.position + 1) value = stringValue(rest);
    else value = cursor.rest();
    if (value === '') throw cursor.error('expected a value');
    cursor.position = cursor.tokens.length;
    return { action: 'set', key, value };
  },
  async execute(context, statement): Promise<QueryResult> {
    const columns = ['key', 'value'];
    switch (statement.action) {
      case 'set':
        context.settings.set(statement.key.toLowerCase(), statement.value);
        return { columns, rows: [{ key: statement.key, value: statement.value }] };
      case 'reset':
        if (statement.key === undefined) context.settings.clear();
        else context.settings.delete(statement.key.toLowerCase());
        return { columns: [], rows: [] };
      case 'show': {
        if (statement.key !== undefined) {
          const value = context.settings.get(statement.key.toLowerCase()) ?? '<undefined>';
          return { columns, rows: [{ key: statement.key, value }] };
        }
        const rows = [...context.settings.entries()].sort().map(([key, value]) => ({ key, value }));
        return { columns, rows };
      }
    }
  },
};

export const setConfigRoute = route(setConfig);
