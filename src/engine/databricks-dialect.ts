/**
 * Databricks SQL forms that the reference documents use and DuckDB spells differently. The statement is
 * otherwise passed to DuckDB unchanged; rewriting happens only outside string literals, quoted identifiers
 * and comments, so data is never altered.
 *
 * - `CURRENT_TIMESTAMP()` / `CURRENT_DATE()` / `NOW()`-style calls with empty parentheses: DuckDB has the
 *   keyword forms only.
 * - `delta.\`/path/to/table\``: a Delta table by path; replaced by a generated view name that the session
 *   registers.
 *
 * `INTERVAL 7 DAYS` needs no rewrite: DuckDB accepts it as written.
 */

export interface DialectRewrite {
  readonly sql: string;
  /** Generated view name → Delta table path, for each `delta.\`path\`` reference. */
  readonly deltaPaths: ReadonlyMap<string, string>;
}

const KEYWORD_CALLS = /\b(CURRENT_TIMESTAMP|CURRENT_DATE|CURRENT_TIME|LOCALTIMESTAMP)\s*\(\s*\)/gi;

/** Splits SQL into code and non-code (literals, quoted identifiers, comments) so only code is rewritten. */
function segments(sql: string): Array<{ code: boolean; text: string }> {
  const out: Array<{ code: boolean; text: string }> = [];
  let i = 0;
  let start = 0;
  const push = (code: boolean, end: number) => {
    if (end > start) out.push({ code, text: sql.slice(start, end) });
    start = end;
  };
  while (i < sql.length) {
    const ch = sql[i];
    const next = sql[i + 1];
    if (ch === "'" || ch === '"') {
      push(true, i);
      let j = i + 1;
      while (j < sql.length) {
        if (sql[j] === ch) {
          if (sql[j + 1] === ch) j += 2;
          else break;
        } else j++;
      }
      i = Math.min(j + 1, sql.length);
      push(false, i);
    } else if (ch === '-' && next === '-') {
      push(true, i);
      const end = sql.indexOf('\n', i);
      i = end === -1 ? sql.length : end;
      push(false, i);
    } else if (ch === '/' && next === '*') {
      push(true, i);
      const end = sql.indexOf('*/', i + 2);
      i = end === -1 ? sql.length : end + 2;
      push(false, i);
    } else if (ch === '`') {
      // Backticks are Databricks identifiers; kept as code so `delta.\`...\`` can be matched below.
      const end = sql.indexOf('`', i + 1);
      i = end === -1 ? sql.length : end + 1;
    } else {
      i++;
    }
  }
  push(true, sql.length);
  return out;
}

export function rewriteDatabricksSql(sql: string): DialectRewrite {
  const deltaPaths = new Map<string, string>();
  const rewritten = segments(sql)
    .map((s) => {
      if (!s.code) return s.text;
      return s.text
        .replace(KEYWORD_CALLS, (_m, kw: string) => kw.toUpperCase())
        .replace(/\bdelta\s*\.\s*`([^`]+)`/gi, (_m, path: string) => {
          const name = `__delta_${deltaPaths.size + 1}`;
          deltaPaths.set(name, path);
          return name;
        })
        .replace(/`([^`]*)`/g, (_m, ident: string) => `"${ident.replaceAll('"', '""')}"`);
    })
    .join('');
  return { sql: rewritten, deltaPaths };
}
