/**
 * A small SQL tokenizer: enough to split a script into statements, recognise the statement kinds Tributary
 * handles itself, and rewrite Databricks forms outside string literals, quoted identifiers and comments.
 * It never rejects input: whatever it does not know becomes an `op` token, and DuckDB reports the error.
 */

export type TokenType =
  | 'ws'
  | 'comment'
  /** `'...'` (with `''` escapes) or a `$tag$...$tag$` string. */
  | 'string'
  /** `"..."`: an identifier in DuckDB. */
  | 'quoted'
  /** `` `...` ``: a Databricks identifier. */
  | 'backtick'
  | 'word'
  | 'number'
  | 'op';

export interface Token {
  readonly type: TokenType;
  readonly text: string;
  /** Offset in the source. */
  readonly start: number;
}

const WORD_START = /[A-Za-z_\u0080-\uffff]/;
const WORD_PART = /[A-Za-z0-9_$\u0080-\uffff]/;
const TWO_CHAR_OPS = new Set([
  '<=',
  '>=',
  '<>',
  '!=',
  '==',
  '||',
  '::',
  '->',
  '=>',
  '<<',
  '>>',
  '**',
  '//',
  ':=',
]);

function closing(sql: string, from: number, quote: string): number {
  let j = from;
  while (j < sql.length) {
    if (sql[j] === quote) {
      if (sql[j + 1] === quote) j += 2;
      else return j + 1;
    } else j++;
  }
  return sql.length;
}

export function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < sql.length) {
    const start = i;
    const ch = sql[i] as string;
    const next = sql[i + 1];
    let type: TokenType;
    if (/\s/.test(ch)) {
      while (i < sql.length && /\s/.test(sql[i] as string)) i++;
      type = 'ws';
    } else if (ch === '-' && next === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? sql.length : end;
      type = 'comment';
    } else if (ch === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end === -1 ? sql.length : end + 2;
      type = 'comment';
    } else if (ch === "'") {
      i = closing(sql, i + 1, "'");
      type = 'string';
    } else if (ch === '"') {
      i = closing(sql, i + 1, '"');
      type = 'quoted';
    } else if (ch === '`') {
      i = closing(sql, i + 1, '`');
      type = 'backtick';
    } else if (ch === '$' && /^\$[A-Za-z_]*\$/.test(sql.slice(i))) {
      const tag = (/^\$[A-Za-z_]*\$/.exec(sql.slice(i)) as RegExpExecArray)[0];
      const end = sql.indexOf(tag, i + tag.length);
      i = end === -1 ? sql.length : end + tag.length;
      type = 'string';
    } else if (/[0-9]/.test(ch) || (ch === '.' && next !== undefined && /[0-9]/.test(next))) {
      const m = /^(?:\d[\d_]*(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?/.exec(sql.slice(i)) as RegExpExecArray;
      i += m[0].length;
      type = 'number';
    } else if (WORD_START.test(ch)) {
      while (i < sql.length && WORD_PART.test(sql[i] as string)) i++;
      type = 'word';
    } else {
      i += next !== undefined && TWO_CHAR_OPS.has(ch + next) ? 2 : 1;
      type = 'op';
    }
    tokens.push({ type, text: sql.slice(start, i), start });
  }
  return tokens;
}

/** True for tokens that carry meaning (not whitespace or comments). */
export function significant(token: Token): boolean {
  return token.type !== 'ws' && token.type !== 'comment';
}

/** The statements of a script, split at top-level `;`; empty ones (only whitespace and comments) dropped. */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let current: Token[] = [];
  const flush = () => {
    if (current.some(significant))
      out.push(
        current
          .map((t) => t.text)
          .join('')
          .trim(),
      );
    current = [];
  };
  for (const token of tokenize(sql)) {
    if (token.type === 'op' && token.text === ';') flush();
    else current.push(token);
  }
  flush();
  return out;
}

/** The name an identifier token stands for: backticks and double quotes removed and unescaped. */
export function identifierText(token: Token): string {
  switch (token.type) {
    case 'backtick':
      return token.text
        .slice(1, token.text.endsWith('`') && token.text.length > 1 ? -1 : undefined)
        .replaceAll('``', '`');
    case 'quoted':
      return token.text
        .slice(1, token.text.endsWith('"') && token.text.length > 1 ? -1 : undefined)
        .replaceAll('""', '"');
    default:
      return token.text;
  }
}

/** The value of a `'...'` string token. */
export function stringValue(token: Token): string {
  if (token.text.startsWith('$')) {
    const tag = (/^\$[A-Za-z_]*\$/.exec(token.text) as RegExpExecArray)[0];
    return token.text.slice(tag.length, -tag.length);
  }
  return token.text
    .slice(1, token.text.endsWith("'") && token.text.length > 1 ? -1 : undefined)
    .replaceAll("''", "'");
}
