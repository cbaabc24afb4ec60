import { describe, expect, it } from 'vitest';
import { rewriteDatabricksSql } from './databricks-dialect.js';

describe('rewriteDatabricksSql', () => {
  it('turns CURRENT_TIMESTAMP() into the keyword form and keeps INTERVAL n DAYS', () => {
    const { sql } = rewriteDatabricksSql('SELECT * FROM t WHERE ts >= CURRENT_TIMESTAMP() - INTERVAL 7 DAYS');
    expect(sql).toBe('SELECT * FROM t WHERE ts >= CURRENT_TIMESTAMP - INTERVAL 7 DAYS');
    expect(rewriteDatabricksSql('SELECT current_date ( ) - 1').sql).toBe('SELECT CURRENT_DATE - 1');
  });

  it('never rewrites inside string literals or comments', () => {
    const input = 'SELECT \'CURRENT_TIMESTAMP()\' AS s, "CURRENT_DATE()" -- CURRENT_DATE()\nFROM t';
    expect(rewriteDatabricksSql(input).sql).toBe(input);
    const tricky = "SELECT 'x VERSION AS OF 3', '`a`' /* delta.`/p` t VERSION AS OF 1 */ FROM t";
    expect(rewriteDatabricksSql(tricky)).toEqual({ sql: tricky, references: new Map() });
  });

  it('replaces delta.`path` with a generated view name and backticks with double quotes', () => {
    const { sql, references } = rewriteDatabricksSql(
      'SELECT `my col` FROM delta.`/tmp/a b/t` JOIN delta.`/x`',
    );
    expect(sql).toBe('SELECT "my col" FROM __delta_1 JOIN __delta_2');
    expect([...references.entries()]).toEqual([
      ['__delta_1', { table: { kind: 'path', path: '/tmp/a b/t', text: 'delta.`/tmp/a b/t`' } }],
      ['__delta_2', { table: { kind: 'path', path: '/x', text: 'delta.`/x`' } }],
    ]);
  });

  it('keeps doubled quotes inside literals intact', () => {
    const input = "SELECT 'it''s CURRENT_DATE()' FROM t WHERE d = CURRENT_DATE()";
    expect(rewriteDatabricksSql(input).sql).toBe(
      "SELECT 'it''s CURRENT_DATE()' FROM t WHERE d = CURRENT_DATE",
    );
  });

  it('rewrites VERSION AS OF on a name into a view aliased with the table name', () => {
    const { sql, references } = rewriteDatabricksSql(
      'SELECT t.id FROM lake.bronze.t VERSION AS OF 3 WHERE t.id > 1',
      { firstId: 7 },
    );
    expect(sql).toBe('SELECT t.id FROM __delta_7 AS "t" WHERE t.id > 1');
    expect(references.get('__delta_7')).toEqual({
      table: { kind: 'name', parts: ['lake', 'bronze', 't'], text: 'lake.bronze.t' },
      temporal: { version: 3 },
    });
  });

  it('keeps an alias the user wrote and reads the FOR SYSTEM_* spellings', () => {
    const a = rewriteDatabricksSql('SELECT x.a FROM bronze.t FOR SYSTEM_VERSION AS OF 2 AS x, u');
    expect(a.sql).toBe('SELECT x.a FROM __delta_1 AS x, u');
    expect(a.references.get('__delta_1')?.temporal).toEqual({ version: 2 });
    const b = rewriteDatabricksSql("SELECT * FROM t FOR SYSTEM_TIME AS OF '2026-01-01' y JOIN z ON true");
    expect(b.sql).toBe('SELECT * FROM __delta_1 y JOIN z ON true');
    expect(b.references.get('__delta_1')?.temporal).toEqual({ timestampSql: "'2026-01-01'" });
  });

  it('takes a whole timestamp expression, rewritten, up to the next clause', () => {
    const { sql, references } = rewriteDatabricksSql(
      'SELECT count(*) FROM delta.`/p` TIMESTAMP AS OF CURRENT_TIMESTAMP() - INTERVAL 12 HOURS WHERE a = 1',
    );
    expect(sql).toBe('SELECT count(*) FROM __delta_1 WHERE a = 1');
    expect(references.get('__delta_1')?.temporal).toEqual({
      timestampSql: 'CURRENT_TIMESTAMP - INTERVAL 12 HOURS',
    });
    const typed = rewriteDatabricksSql("SELECT * FROM t TIMESTAMP AS OF TIMESTAMP '2026-01-01 00:00:00'");
    expect(typed.references.get('__delta_1')?.temporal).toEqual({
      timestampSql: "TIMESTAMP '2026-01-01 00:00:00'",
    });
  });

  it('reads t@v3 and t@yyyyMMddHHmmssSSS but not the @ operator', () => {
    const v = rewriteDatabricksSql('SELECT * FROM bronze.orders@v3');
    expect(v.sql).toBe('SELECT * FROM __delta_1 AS "orders"');
    expect(v.references.get('__delta_1')?.temporal).toEqual({ version: 3 });
    const ts = rewriteDatabricksSql('SELECT * FROM t@20260102030405678');
    expect(ts.references.get('__delta_1')?.temporal).toEqual({ timestampSql: "'2026-01-02 03:04:05.678'" });
    const abs = 'SELECT @ -5, x @ y FROM t';
    expect(rewriteDatabricksSql(abs)).toEqual({ sql: abs, references: new Map() });
  });

  it('refuses a malformed version', () => {
    expect(() => rewriteDatabricksSql('SELECT * FROM t VERSION AS OF x')).toThrow(
      expect.objectContaining({ code: 'SQL_ERROR' }),
    );
  });
});
