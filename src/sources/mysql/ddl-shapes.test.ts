import { describe, expect, it } from 'vitest';
import { applyDdl, type SourceShape } from './ddl-shapes.js';

const shape: SourceShape = {
  charset: 'utf8mb4',
  columns: [
    { name: 'id', type: 'int(11)', charset: null },
    { name: 'a', type: 'varchar(10)', charset: 'utf8mb4' },
    { name: 'b', type: 'decimal(10,2)', charset: null },
  ],
};
const shapes = new Map([['shop.t', shape]]);

/** The column names of `shop.t` after the statement (run in database `shop`). */
function namesAfter(sql: string): string[] | null | undefined {
  const next = applyDdl(shapes, sql, 'shop').shapes.get('shop.t');
  return next === null ? null : next?.columns.map((c) => c.name);
}

describe('applyDdl', () => {
  it('ADD COLUMN lands last, FIRST, or AFTER a column; ADD (a, b) adds each', () => {
    expect(namesAfter('ALTER TABLE t ADD COLUMN c INT')).toEqual(['id', 'a', 'b', 'c']);
    expect(namesAfter('ALTER TABLE `shop`.`t` ADD c INT FIRST')).toEqual(['c', 'id', 'a', 'b']);
    expect(namesAfter('alter table t add column `c d` varchar(5) after id')).toEqual(['id', 'c d', 'a', 'b']);
    expect(namesAfter('ALTER TABLE t ADD COLUMN c INT AFTER a, ADD COLUMN d INT FIRST')).toEqual([
      'd',
      'id',
      'a',
      'c',
      'b',
    ]);
    expect(namesAfter('ALTER TABLE t ADD COLUMN (c INT, d TEXT)')).toEqual(['id', 'a', 'b', 'c', 'd']);
    expect(namesAfter('ALTER TABLE t ADD COLUMN IF NOT EXISTS a INT')).toBeUndefined();
    // MySQL 8 logs atomic DDL with a trailing xid comment; comments may sit anywhere.
    expect(namesAfter('ALTER TABLE t DROP COLUMN b /* xid=42 */')).toEqual(['id', 'a']);
    expect(
      namesAfter("ALTER TABLE t /* why */ ADD c VARCHAR(3) DEFAULT '/* not a comment */' -- note\n"),
    ).toEqual(['id', 'a', 'b', 'c']);
    expect(namesAfter('/*!40000 ALTER TABLE t ADD c INT FIRST */')).toEqual(['c', 'id', 'a', 'b']);
  });

  it('the added column gets its type text and charset as information_schema would write them', () => {
    const after = applyDdl(
      shapes,
      "ALTER TABLE t ADD u BIGINT UNSIGNED, ADD e ENUM('x','it''s'), ADD l VARCHAR(3) CHARACTER SET latin1, ADD k TEXT COLLATE utf8mb3_bin, ADD n NUMERIC(65,30), ADD v VARBINARY(4), ADD w TEXT, ADD f BOOLEAN",
      'shop',
    ).shapes.get('shop.t');
    expect(after?.columns.slice(3)).toEqual([
      { name: 'u', type: 'bigint unsigned', charset: null },
      { name: 'e', type: "enum('x','it''s')", charset: 'utf8mb4' },
      { name: 'l', type: 'varchar(3)', charset: 'latin1' },
      { name: 'k', type: 'text', charset: 'utf8mb3' },
      { name: 'n', type: 'decimal(65,30)', charset: null },
      { name: 'v', type: 'varbinary(4)', charset: null },
      { name: 'w', type: 'text', charset: 'utf8mb4' },
      { name: 'f', type: 'tinyint(1)', charset: null },
    ]);
  });

  it('DROP, MODIFY (with a move), CHANGE and RENAME COLUMN', () => {
    expect(namesAfter('ALTER TABLE t DROP COLUMN a')).toEqual(['id', 'b']);
    expect(namesAfter('ALTER TABLE t DROP a, DROP COLUMN b')).toEqual(['id']);
    expect(namesAfter('ALTER TABLE t DROP COLUMN IF EXISTS zz')).toBeUndefined();
    expect(namesAfter('ALTER TABLE t MODIFY b DECIMAL(12,2) FIRST')).toEqual(['b', 'id', 'a']);
    expect(namesAfter('ALTER TABLE t CHANGE COLUMN a z VARCHAR(20) AFTER b')).toEqual(['id', 'b', 'z']);
    expect(namesAfter('ALTER TABLE t RENAME COLUMN a TO z')).toEqual(['id', 'z', 'b']);
    const modified = applyDdl(shapes, 'ALTER TABLE t MODIFY id BIGINT UNSIGNED NOT NULL', 'shop').shapes.get(
      'shop.t',
    );
    expect(modified?.columns[0]).toEqual({ name: 'id', type: 'bigint unsigned', charset: null });
  });

  it('clauses that cannot change the columns leave the shape as it is', () => {
    for (const sql of [
      'ALTER TABLE t ADD PRIMARY KEY (id)',
      'ALTER TABLE t ADD CONSTRAINT u UNIQUE (a), ADD INDEX i (b), ALGORITHM=INPLACE, LOCK=NONE',
      'ALTER TABLE t DROP PRIMARY KEY, DROP INDEX i, DROP FOREIGN KEY fk',
      'ALTER TABLE t ALTER COLUMN a SET DEFAULT 5',
      'ALTER TABLE t ENGINE=InnoDB',
      "ALTER TABLE t COMMENT 'x'",
      'ALTER TABLE t FORCE',
      'ALTER TABLE t RENAME INDEX i TO j',
      'ALTER TABLE other ADD COLUMN c INT',
      'ALTER TABLE elsewhere.t ADD COLUMN c INT',
      'CREATE TABLE IF NOT EXISTS t (id INT)',
      'DROP TEMPORARY TABLE t',
    ])
      expect(applyDdl(shapes, sql, 'shop').shapes.size, sql).toBe(0);
  });

  it('character set changes: CONVERT TO changes text columns, a table default changes later ADDs', () => {
    const converted = applyDdl(shapes, 'ALTER TABLE t CONVERT TO CHARACTER SET latin1', 'shop').shapes.get(
      'shop.t',
    );
    expect(converted?.columns.map((c) => c.charset)).toEqual([null, 'latin1', null]);
    const defaulted = applyDdl(
      shapes,
      'ALTER TABLE t DEFAULT CHARSET=latin1, ADD c CHAR(2)',
      'shop',
    ).shapes.get('shop.t');
    expect(defaulted?.columns.map((c) => c.charset)).toEqual([null, 'utf8mb4', null, 'latin1']);
  });

  it('RENAME TABLE and ALTER ... RENAME TO move the shape; DROP TABLE and CREATE OR REPLACE forget it', () => {
    const renamed = applyDdl(shapes, 'RENAME TABLE t TO t2, other TO t3', 'shop').shapes;
    expect(renamed.get('shop.t')).toBeNull();
    expect(renamed.get('shop.t2')).toEqual(shape);
    expect(renamed.has('shop.t3')).toBe(false);
    const altered = applyDdl(shapes, 'ALTER TABLE t ADD c INT, RENAME TO shop.t4', 'shop').shapes;
    expect(altered.get('shop.t')).toBeNull();
    expect(altered.get('shop.t4')?.columns.map((c) => c.name)).toEqual(['id', 'a', 'b', 'c']);
    // The online schema change tools' swap: t's new shape is the ghost table's, which was never followed.
    const swapped = applyDdl(shapes, 'RENAME TABLE t TO _t_del, _t_gho TO t', 'shop').shapes;
    expect(swapped.get('shop.t')).toBeNull();
    expect(swapped.get('shop._t_del')).toEqual(shape);
    expect(namesAfter('DROP TABLE IF EXISTS x, shop.t')).toBeNull();
    expect(namesAfter('/* generated by server */ DROP TABLE `t`')).toBeNull();
    expect(namesAfter('CREATE OR REPLACE TABLE t (x INT)')).toBeNull();
  });

  it('a clause that is not understood makes the shape unknown, and says which', () => {
    for (const [sql, clause] of [
      ['ALTER TABLE t ADD COLUMN c DOUBLE PRECISION', 'ADD COLUMN c DOUBLE PRECISION'],
      ['ALTER TABLE t ADD INDEX i (a), MODIFY zz INT', 'MODIFY zz INT'],
      ['ALTER TABLE t DROP COLUMN zz', 'DROP COLUMN zz'],
      ['ALTER TABLE t ADD COLUMN c INT AFTER zz', 'ADD COLUMN c INT AFTER zz'],
      ['ALTER TABLE t ADD COLUMN a INT', 'ADD COLUMN a INT'],
      ['ALTER TABLE t FROBNICATE', 'FROBNICATE'],
    ] as const) {
      const effect = applyDdl(shapes, sql, 'shop');
      expect(effect.shapes.get('shop.t'), sql).toBeNull();
      expect(effect.unknown, sql).toEqual([{ table: 'shop.t', clause }]);
    }
  });
});
