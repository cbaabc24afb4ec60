/**
 * A cursor over the significant tokens of one statement, with the pieces of Databricks syntax the statement
 * recognisers share: table references (`catalog.schema.table`, `` delta.`/path` ``), time travel clauses
 * (`VERSION AS OF n`, `TIMESTAMP AS OF expr`, `@v3`), literals and expressions.
 */
import { TributaryError } from '../../core/errors.js';
import { identifierText, significant, stringValue, type Token, tokenize } from './lexer.js';

/** A table as a statement names it. */
export type TableReference =
  | { readonly kind: 'path'; readonly path: string; readonly text: string }
  | { readonly kind: 'name'; readonly parts: readonly string[]; readonly text: string };

/** A time travel clause: a version, or a timestamp expression still to evaluate (DuckDB SQL). */
export type Temporal = { readonly version: number } | { readonly timestampSql: string };

/** Words that end an expression or a table reference in a FROM clause. */
const CLAUSE_WORDS = new Set(
  (
    'AS WHERE JOIN INNER LEFT RIGHT FULL OUTER CROSS NATURAL POSITIONAL ASOF ANTI SEMI LATERAL ON USING GROUP ' +
    'ORDER LIMIT OFFSET UNION EXCEPT INTERSECT MINUS HAVING WINDOW QUALIFY PIVOT UNPIVOT TABLESAMPLE SAMPLE ' +
    'RETURNING FETCH INTO SET VALUES SELECT FROM WITH ZORDER RETAIN DRY TBLPROPERTIES LOCATION SHALLOW DEEP ' +
    'CLONE TO FOR VERSION TIMESTAMP SYSTEM_VERSION SYSTEM_TIME'
  ).split(' '),
);

/** Words that continue an expression after an operand. */
const OPERATOR_WORDS = new Set(
  'AND OR NOT IS NULL BETWEEN LIKE ILIKE GLOB SIMILAR IN AT TIME ZONE COLLATE ESCAPE'.split(' '),
);

const INTERVAL_UNITS =
  /^(YEAR|MONTH|WEEK|DAY|HOUR|MINUTE|SECOND|MILLISECOND|MICROSECOND|QUARTER|DECADE|CENTURY|MILLENNIUM)S?$/i;

export function sqlError(message: string, hint?: string): TributaryError {
  return new TributaryError('SQL_ERROR', message, hint === undefined ? {} : { hint });
}

export function isIdentifierToken(token: Token | undefined): token is Token {
  return (
    token !== undefined && (token.type === 'word' || token.type === 'quoted' || token.type === 'backtick')
  );
}

export class Cursor {
  readonly tokens: readonly Token[];
  position = 0;

  constructor(
    readonly sql: string,
    tokens?: readonly Token[],
  ) {
    this.tokens = (tokens ?? tokenize(sql)).filter(significant);
  }

  peek(offset = 0): Token | undefined {
    return this.tokens[this.position + offset];
  }

  atEnd(): boolean {
    return this.position >= this.tokens.length;
  }

  /** True when the next tokens are these words (case-insensitive). */
  isKeyword(...words: string[]): boolean {
    return words.every((w, i) => {
      const t = this.peek(i);
      return t?.type === 'word' && t.text.toUpperCase() === w;
    });
  }

  acceptKeyword(...words: string[]): boolean {
    if (!this.isKeyword(...words)) return false;
    this.position += words.length;
    return true;
  }

  expectKeyword(...words: string[]): void {
    if (!this.acceptKeyword(...words)) throw this.error(`expected ${words.join(' ')}`);
  }

  isOp(text: string): boolean {
    const t = this.peek();
    return t?.type === 'op' && t.text === text;
  }

  acceptOp(text: string): boolean {
    if (!this.isOp(text)) return false;
    this.position++;
    return true;
  }

  expectOp(text: string): void {
    if (!this.acceptOp(text)) throw this.error(`expected '${text}'`);
  }

  expectEnd(): void {
    if (!this.atEnd()) throw this.error('unexpected text');
  }

  /** A `SQL_ERROR` pointing at the current token. */
  error(message: string): TributaryError {
    const t = this.peek();
    const where = t ? `at or near "${t.text}" (offset ${t.start})` : 'at the end of the statement';
    return sqlError(`Syntax error ${where}: ${message}\n  ${this.sql}`);
  }

  /** The source text from the current token to the end; the cursor moves to the end. */
  rest(): string {
    const t = this.peek();
    this.position = this.tokens.length;
    return t ? this.sql.slice(t.start).trim() : '';
  }

  /** Source text of tokens [from, to). */
  text(from: number, to: number): string {
    const first = this.tokens[from];
    const last = this.tokens[to - 1];
    if (!first || !last || to <= from) return '';
    return this.sql.slice(first.start, last.start + last.text.length);
  }

  identifier(): string {
    const t = this.peek();
    if (!isIdentifierToken(t)) throw this.error('expected an identifier');
    this.position++;
    return identifierText(t);
  }

  stringLiteral(): string {
    const t = this.peek();
    if (t?.type !== 'string') throw this.error('expected a string literal');
    this.position++;
    return stringValue(t);
  }

  integer(): number {
    const t = this.peek();
    if (t?.type !== 'number' || !/^\d+$/.test(t.text)) throw this.error('expected a whole number');
    this.position++;
    return Number(t.text);
  }

  /** A number (integer or decimal), e.g. `RETAIN 0.5 HOURS`. */
  number(): number {
    const t = this.peek();
    if (t?.type !== 'number') throw this.error('expected a number');
    this.position++;
    return Number(t.text.replaceAll('_', ''));
  }

  /** True when a table reference starts here. */
  atTableReference(): boolean {
    return isIdentifierToken(this.peek());
  }

  /** `` delta.`/path` `` or a name of one to three parts. */
  tableReference(): TableReference {
    const start = this.position;
    const first = this.peek();
    if (
      first?.type === 'word' &&
      first.text.toLowerCase() === 'delta' &&
      this.peek(1)?.text === '.' &&
      this.peek(2)?.type === 'backtick'
    ) {
      this.position += 3;
      return {
        kind: 'path',
        path: identifierText(this.peek(-1) as Token),
        text: this.text(start, this.position),
      };
    }
    const parts = [this.identifier()];
    while (this.isOp('.') && isIdentifierToken(this.peek(1))) {
      this.position++;
      parts.push(this.identifier());
    }
    if (parts.length > 3) {
      this.position = start;
      throw this.error('a table name has at most three parts (catalog.schema.table)');
    }
    return { kind: 'name', parts, text: this.text(start, this.position) };
  }

  /**
   * A time travel clause after a table reference, or undefined: `[FOR] VERSION|SYSTEM_VERSION AS OF n`,
   * `[FOR] TIMESTAMP|SYSTEM_TIME AS OF <expr>`, or `@v<n>` / `@<yyyyMMddHHmmssSSS>` written right after the name.
   */
  temporal(): Temporal | undefined {
    const at = this.peek();
    const previous = this.peek(-1);
    if (
      at?.type === 'op' &&
      at.text === '@' &&
      previous &&
      previous.start + previous.text.length === at.start
    ) {
      const spec = this.peek(1);
      if (spec?.type === 'word' && /^v\d+$/i.test(spec.text) && spec.start === at.start + 1) {
        this.position += 2;
        return { version: Number(spec.text.slice(1)) };
      }
      if (spec?.type === 'number' && /^\d{17}$/.test(spec.text) && spec.start === at.start + 1) {
        this.position += 2;
        const d = spec.text;
        const iso = `${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6, 8)} ${d.slice(8, 10)}:${d.slice(10, 12)}:${d.slice(12, 14)}.${d.slice(14)}`;
        return { timestampSql: `'${iso}'` };
      }
      return undefined;
    }
    const start = this.position;
    this.acceptKeyword('FOR');
    if (this.acceptKeyword('VERSION', 'AS', 'OF') || this.acceptKeyword('SYSTEM_VERSION', 'AS', 'OF')) {
      const t = this.peek();
      if (t?.type === 'string' && /^\d+$/.test(stringValue(t))) {
        this.position++;
        return { version: Number(stringValue(t)) };
      }
      return { version: this.integer() };
    }
    if (this.acceptKeyword('TIMESTAMP', 'AS', 'OF') || this.acceptKeyword('SYSTEM_TIME', 'AS', 'OF')) {
      const from = this.position;
      this.skipExpression();
      if (this.position === from) throw this.error('expected a timestamp expression');
      return { timestampSql: this.text(from, this.position) };
    }
    this.position = start;
    return undefined;
  }

  /** Moves past one expression, stopping before a clause keyword, `,`, `)`, `;` or an alias. */
  skipExpression(): void {
    let expectOperand = true;
    let afterInterval = false;
    while (!this.atEnd()) {
      const t = this.peek() as Token;
      const upper = t.text.toUpperCase();
      if (t.type === 'op' && (t.text === ',' || t.text === ')' || t.text === ';')) return;
      if (t.type === 'op' && t.text === '(') {
        if (!expectOperand) return;
        this.skipGroup();
        expectOperand = false;
        continue;
      }
      if (expectOperand && t.type === 'word' && /^(TIMESTAMP|TIMESTAMPTZ|DATE|TIME)$/.test(upper)) {
        if (this.peek(1)?.type === 'string') {
          // A typed literal: TIMESTAMP '2026-01-01 00:00:00'.
          this.position += 2;
          expectOperand = false;
          continue;
        }
      }
      if (t.type === 'word' && CLAUSE_WORDS.has(upper)) return;
      if (expectOperand) {
        this.position++;
        if (t.type === 'word' && upper === 'INTERVAL') {
          afterInterval = true;
          continue;
        }
        if (t.type === 'op') continue; // unary minus, plus, NOT-like operators
        if (t.type === 'word' && this.isOp('(')) {
          this.skipGroup();
        }
        expectOperand = false;
        continue;
      }
      if (t.type === 'op') {
        this.position++;
        expectOperand = true;
        continue;
      }
      if (t.type === 'word' && (OPERATOR_WORDS.has(upper) || (afterInterval && INTERVAL_UNITS.test(upper)))) {
        this.position++;
        if (OPERATOR_WORDS.has(upper) && upper !== 'NULL') expectOperand = true;
        afterInterval = false;
        continue;
      }
      return; // an operand after an operand: an alias
    }
  }

  /** Moves past a parenthesised group starting at the current `(`. */
  skipGroup(): void {
    let depth = 0;
    while (!this.atEnd()) {
      const t = this.peek() as Token;
      this.position++;
      if (t.type === 'op' && t.text === '(') depth++;
      else if (t.type === 'op' && t.text === ')') {
        depth--;
        if (depth === 0) return;
      }
    }
  }

  /** `(a, b, c)` or, without parentheses, `a, b, c`: identifiers. */
  identifierList(): string[] {
    const parenthesised = this.acceptOp('(');
    const names = [this.dottedIdentifier()];
    while (this.acceptOp(',')) names.push(this.dottedIdentifier());
    if (parenthesised) this.expectOp(')');
    return names;
  }

  private dottedIdentifier(): string {
    const parts = [this.identifier()];
    while (this.acceptOp('.')) parts.push(this.identifier());
    return parts.join('.');
  }

  /** `('k' = 'v', ...)`: keys and values as string literals (keys may also be dotted identifiers). */
  propertyList(withValues: true): Array<[string, string]>;
  propertyList(withValues: false): string[];
  propertyList(withValues: boolean): Array<[string, string]> | string[] {
    this.expectOp('(');
    const pairs: Array<[string, string]> = [];
    const keys: string[] = [];
    do {
      const key = this.peek()?.type === 'string' ? this.stringLiteral() : this.dottedIdentifier();
      if (withValues) {
        this.acceptOp('=');
        const t = this.peek();
        let value: string;
        if (t?.type === 'string') value = this.stringLiteral();
        else if (t?.type === 'number' || (t?.type === 'word' && /^(true|false)$/i.test(t.text))) {
          this.position++;
          value = t.text;
        } else throw this.error('expected a property value (a string literal)');
        pairs.push([key, value]);
      } else keys.push(key);
    } while (this.acceptOp(','));
    this.expectOp(')');
    return withValues ? pairs : keys;
  }
}
