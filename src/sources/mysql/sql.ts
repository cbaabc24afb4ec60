/** Text-level helpers for MySQL SQL: quoting identifiers, and reading names out of DDL statements. */
import type { TableId } from '../../core/table.js';

/** Backtick-quotes a MySQL identifier; backticks inside are doubled, so any name is safe to splice. */
export function quoteIdent(name: string): string {
  return `\`${name.replaceAll('`', '``')}\``;
}

/** A MySQL identifier, backquoted or bare. */
export const IDENT = '(?:`(?:[^`]|``)+`|[A-Za-z0-9_$]+)';
/** `name` or `db.name`. */
export const QUALIFIED = `${IDENT}(?:\\s*\\.\\s*${IDENT})?`;

export function unquoteIdent(name: string): string {
  return name.startsWith('`') ? name.slice(1, -1).replaceAll('``', '`') : name;
}

/** `db.t`, `` `db`.`t` `` or `t` (in the session's database `schema`) as a TableId. */
export function qualifiedName(text: string, schema: string): TableId {
  const parts = new RegExp(`^(${IDENT})(?:\\s*\\.\\s*(${IDENT}))?$`).exec(text.trim());
  if (!parts?.[1]) return { schema, table: text.trim() };
  return parts[2]
    ? { schema: unquoteIdent(parts[1]), table: unquoteIdent(parts[2]) }
    : { schema, table: unquoteIdent(parts[1]) };
}

/** The qualified names of a comma-separated list, up to the first thing that is not one. */
export function nameList(text: string, schema: string): TableId[] {
  const names: TableId[] = [];
  const re = new RegExp(`^\\s*(${QUALIFIED})\\s*(,)?`);
  let rest = text;
  for (;;) {
    const m = re.exec(rest);
    if (!m?.[1]) break;
    names.push(qualifiedName(m[1], schema));
    if (!m[2]) break;
    rest = rest.slice(m[0].length);
  }
  return names;
}

/** The `a TO b` pairs of `RENAME TABLE a TO b, c TO d`. */
export function renamePairs(text: string, schema: string): Array<[TableId, TableId]> {
  const pairs: Array<[TableId, TableId]> = [];
  const pair = new RegExp(`^\\s*(${QUALIFIED})\\s+TO\\s+(${QUALIFIED})\\s*(,)?`, 'i');
  let rest = text;
  for (;;) {
    const p = pair.exec(rest);
    if (!p?.[1] || !p[2]) break;
    pairs.push([qualifiedName(p[1], schema), qualifiedName(p[2], schema)]);
    if (!p[3]) break;
    rest = rest.slice(p[0].length);
  }
  return pairs;
}

/** `ALTER TABLE <name> <specifications>`, split. */
export const ALTER_TABLE = new RegExp(
  `^ALTER\\s+(?:ONLINE\\s+)?(?:IGNORE\\s+)?TABLE\\s+(?:IF\\s+EXISTS\\s+)?(${QUALIFIED})\\s*([\\s\\S]*)$`,
  'i',
);

/**
 * The top-level comma-separated parts of `text`: commas inside parentheses, quotes and backticks do not split.
 * A trailing `;` is dropped.
 */
export function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let quote: string | undefined;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote) {
      if (c === '\\' && quote !== '`') i++;
      else if (c === quote) {
        if (text[i + 1] === quote) i++;
        else quote = undefined;
      }
    } else if (c === "'" || c === '"' || c === '`') quote = c;
    else if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === ',' && depth === 0) {
      parts.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(text.slice(start).trim().replace(/;\s*$/, ''));
  return parts.filter((p) => p.length > 0);
}

/**
 * The statement without comments: `/* ... *\/`, `-- ...` and `# ...` are dropped, and the body of an executable
 * comment (`/*!50100 ... *\/`) is kept, as the server runs it. MySQL 8 logs DDL with a trailing `/* xid=... *\/`.
 * Quoted text and identifiers are left as they are.
 */
export function withoutComments(sql: string): string {
  let out = '';
  let quote: string | undefined;
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i] as string;
    if (quote) {
      out += c;
      if (c === '\\' && quote !== '`' && i + 1 < sql.length) out += sql[++i];
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === "'" || c === '"' || c === '`') {
      quote = c;
      out += c;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      const body = sql.slice(i + 2, end < 0 ? sql.length : end);
      const executable = /^!\d*/.exec(body);
      out += executable ? ` ${withoutComments(body.slice(executable[0].length))} ` : ' ';
      i = end < 0 ? sql.length : end + 1;
    } else if ((c === '-' && sql[i + 1] === '-' && /\s/.test(sql[i + 2] ?? ' ')) || c === '#') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end - 1;
    } else out += c;
  }
  return out.trim();
}
