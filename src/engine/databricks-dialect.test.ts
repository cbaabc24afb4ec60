import { describe, expect, it } from 'vitest';
import { rewriteDatabricksSql } from './databricks-dialect.js';

describe('rewriteDatabricksSql', () => {
  it('turns CURRENT_TIMESTAMP() into the keyword form and keeps INTERVAL n DAYS', () => {
    const { sql } = rewriteDatabricksSql('SELECT * FROM t WHERE ts >= CURRENT_TIMESTAMP() - INTERVAL 7 DAYS');
    expect(sql).toBe('SELECT * FROM t WHERE ts >= CURRENT_TIMESTAMP - INTERVAL 7 DAYS');
  });

  it('never rewrites inside string literals or comments', () => {
    const input = 'SELECT \'CURRENT_TIMESTAMP()\' AS s, "CURRENT_DATE()" -- CURRENT_DATE()\nFROM t';
    expect(rewriteDatabricksSql(input).sql).toBe(input);
  });

  it('replaces delta.`path` with a generated view name and backticks with double quotes', () => {
    const { sql, deltaPaths } = rewriteDatabricksSql(
      'SELECT `my col` FROM delta.`/tmp/a b/t` JOIN delta.`/x`',
    );
    expect(sql).toBe('SELECT "my col" FROM __delta_1 JOIN __delta_2');
    expect([...deltaPaths.entries()]).toEqual([
      ['__delta_1', '/tmp/a b/t'],
      ['__delta_2', '/x'],
    ]);
  });

  it('keeps doubled quotes inside literals intact', () => {
    const input = "SELECT 'it''s CURRENT_DATE()' FROM t WHERE d = CURRENT_DATE()";
    expect(rewriteDatabricksSql(input).sql).toBe(
      "SELECT 'it''s CURRENT_DATE()' FROM t WHERE d = CURRENT_DATE",
    );
  });
});
