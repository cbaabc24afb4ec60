/**
 * Databricks SQL forms that the reference documents use and DuckDB spells differently. The statement is
 * otherwise passed to DuckDB unchanged; rewriting happens only outside string literals, quoted identifiers
 * and comments, so data is never altered.
 *
 * - `CURRENT_TIMESTAMP()` / `CURRENT_DATE()` / `CURRENT_TIME()` / `LOCALTIMESTAMP()`: DuckDB has the keyword
 *   forms only.
 * - `` `identifier` ``: becomes `"identifier"`.
 * - `` delta.`/path/to/table` ``: a Delta table by path; replaced by a generated view name that the session
 *   registers.
 * - Time travel after a table name or path: `VERSION AS OF 3`, `TIMESTAMP AS OF '2026-01-01'` (any
 *   expression), their `FOR SYSTEM_VERSION` / `FOR SYSTEM_TIME` spellings, and `t@v3`: the reference is
 *   replaced by a generated view of that version, aliased with the table's name so `t.col` keeps working.
 *
 * - `table_changes('<table>', start [, end])`: the change data feed of a table (`'catalog.schema.table'`, or
 *   ``'delta.`/path`'``) between two versions, or two timestamps given as strings; replaced by a generated
 *   view of the table's columns plus `_change_type`, `_commit_version` and `_commit_timestamp`.
 *
 * `INTERVAL 7 DAYS` needs no rewrite: DuckDB accepts it as written.
 */
import {
  Cursor,
  isIdentifierToken,
  sqlError,
  type TableReference,
  type Temporal,
} from './statements/cursor.js';
import { identifierText, stringValue, type Token, tokenize } from './statements/lexer.js';

/** A table reference the session must register as a view before the statement runs. */
export interface ViewReference {
  readonly table: TableReference;
  readonly temporal?: Temporal;
  /** `table_changes(...)`: the change data feed from `start` to `end` (default: the latest version). */
  readonly changes?: { readonly start: Temporal; readonly end?: Temporal };
}

const TABLE_CHANGES_SYNTAX =
  "table_changes('catalog.schema.table', <start version or 'timestamp'> [, <end version or 'timestamp'>])";

/** One bound of `table_changes`: an integer version or a timestamp string. */
function changeBound(token: Token | undefined): Temporal {
  if (token?.type === 'number' && /^\d+$/.test(token.text)) return { version: Number(token.text) };
  if (token?.type === 'string')
    return { timestampSql: `TIMESTAMPTZ '${stringValue(token).replaceAll("'", "''")}'` };
  throw sqlError(
    `table_changes: expected a version number or a timestamp string${token ? `, not ${token.text}` : ''}`,
    `Write ${TABLE_CHANGES_SYNTAX}.`,
  );
}

/**
 * `table_changes(` at the cursor: reads the call and returns its reference and the index of its last token
 * (`)`), or throws `SQL_ERROR` with the syntax.
 */
function tableChangesCall(cursor: Cursor): { reference: ViewReference; last: number } {
  const at = (i: number) => cursor.peek(i);
  const name = at(2);
  if (name?.type !== 'string' || at(3)?.text !== ',') {
    throw sqlError(
      'table_changes: the first argument must be the table name as a string',
      `Write ${TABLE_CHANGES_SYNTAX}.`,
    );
  }
  const inner = new Cursor(stringValue(name));
  let table: TableReference;
  try {
    table = inner.tableReference();
  } catch {
    throw sqlError(
      `table_changes: '${stringValue(name)}' is not a table name`,
      `Write ${TABLE_CHANGES_SYNTAX}.`,
    );
  }
  if (!inner.atEnd())
    throw sqlError(
      `table_changes: '${stringValue(name)}' is not a table name`,
      `Write ${TABLE_CHANGES_SYNTAX}.`,
    );
  const start = changeBound(at(4));
  let last = 5;
  let end: Temporal | undefined;
  if (at(5)?.text === ',') {
    end = changeBound(at(6));
    last = 7;
  }
  if (at(last)?.text !== ')')
    throw sqlError('table_changes: expected ) after its arguments', `Write ${TABLE_CHANGES_SYNTAX}.`);
  return { reference: { table, changes: end === undefined ? { start } : { start, end } }, last };
}

export interface DialectRewrite {
  readonly sql: string;
  /** Generated view name → what it reads, for each `` delta.`path` `` and time travelled reference. */
  readonly references: ReadonlyMap<string, ViewReference>;
}

const KEYWORD_CALLS = new Set(['CURRENT_TIMESTAMP', 'CURRENT_DATE', 'CURRENT_TIME', 'LOCALTIMESTAMP']);

/** Words after a table reference that are not an alias. */
const NOT_ALIAS = new Set(
  (
    'WHERE JOIN INNER LEFT RIGHT FULL OUTER CROSS NATURAL POSITIONAL ASOF ANTI SEMI LATERAL ON USING GROUP ORDER ' +
    'LIMIT OFFSET UNION EXCEPT INTERSECT MINUS HAVING WINDOW QUALIFY PIVOT UNPIVOT TABLESAMPLE SAMPLE RETURNING ' +
    'FETCH INTO SET VALUES SELECT FROM WITH'
  ).split(' '),
);

function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

interface Replacement {
  readonly start: number;
  readonly end: number;
  readonly text: string;
}

function aliasFollows(cursor: Cursor): boolean {
  const t = cursor.peek();
  if (!t) return false;
  if (t.type === 'quoted' || t.type === 'backtick') return true;
  return t.type === 'word' && (t.text.toUpperCase() === 'AS' || !NOT_ALIAS.has(t.text.toUpperCase()));
}

function endOf(token: Token): number {
  return token.start + token.text.length;
}

/**
 * Rewrites one statement. Generated view names are `__delta_<n>`, numbered from `firstId` (default 1), so a
 * session can keep them unique across statements.
 */
export function rewriteDatabricksSql(sql: string, options: { firstId?: number } = {}): DialectRewrite {
  const all = tokenize(sql);
  const cursor = new Cursor(sql, all);
  const replacements: Replacement[] = [];
  const references = new Map<string, ViewReference>();
  let nextId = options.firstId ?? 1;
  while (!cursor.atEnd()) {
    const t = cursor.peek() as Token;
    if (
      t.type === 'word' &&
      KEYWORD_CALLS.has(t.text.toUpperCase()) &&
      cursor.peek(1)?.text === '(' &&
      cursor.peek(2)?.text === ')'
    ) {
      replacements.push({ start: t.start, end: endOf(cursor.peek(2) as Token), text: t.text.toUpperCase() });
      cursor.position += 3;
      continue;
    }
    const previous = cursor.peek(-1);
    if (
      t.type === 'word' &&
      t.text.toLowerCase() === 'table_changes' &&
      cursor.peek(1)?.text === '(' &&
      !(previous?.type === 'op' && previous.text === '.')
    ) {
      const { reference, last } = tableChangesCall(cursor);
      const view = `__delta_${nextId++}`;
      replacements.push({ start: t.start, end: endOf(cursor.peek(last) as Token), text: view });
      references.set(view, reference);
      cursor.position += last + 1;
      continue;
    }
    if (isIdentifierToken(t) && !(previous?.type === 'op' && previous.text === '.')) {
      const start = cursor.position;
      let table: TableReference | undefined;
      try {
        table = cursor.tableReference();
      } catch {
        table = undefined;
      }
      const temporal = table ? cursor.temporal() : undefined;
      // `system.<schema>.<table>` (system.lakeflow.pipeline_events) is no DuckDB catalog: a view like a path.
      const system =
        table?.kind === 'name' && table.parts.length === 3 && table.parts[0]?.toLowerCase() === 'system';
      if (table && (table.kind === 'path' || temporal || system)) {
        const view = `__delta_${nextId++}`;
        const alias =
          table.kind === 'name' && !aliasFollows(cursor)
            ? ` AS ${quoteIdentifier(table.parts.at(-1) as string)}`
            : '';
        replacements.push({
          start: t.start,
          end: endOf(cursor.peek(-1) as Token),
          text: `${view}${alias}`,
        });
        references.set(view, temporal ? { table, temporal: rewriteTemporal(temporal) } : { table });
        continue;
      }
      cursor.position = start + 1;
      continue;
    }
    cursor.position++;
  }
  return { sql: render(sql, all, replacements), references };
}

function rewriteTemporal(temporal: Temporal): Temporal {
  return 'timestampSql' in temporal
    ? { timestampSql: rewriteDatabricksSql(temporal.timestampSql).sql }
    : temporal;
}

function render(sql: string, tokens: readonly Token[], replacements: readonly Replacement[]): string {
  const byStart = new Map(replacements.map((r) => [r.start, r]));
  let out = '';
  let skipUntil = 0;
  for (const token of tokens) {
    if (token.start < skipUntil) continue;
    const replacement = byStart.get(token.start);
    if (replacement) {
      out += replacement.text;
      skipUntil = replacement.end;
      continue;
    }
    out += token.type === 'backtick' ? quoteIdentifier(identifierText(token)) : token.text;
  }
  return out.length > 0 || sql.length === 0 ? out : sql;
}
