/**
 * Every supported MariaDB type reaches bronze with its exact value, whether read by the snapshot or from the
 * binlog: no wrapped BIGINT UNSIGNED, no rounded DECIMAL, no lost microseconds, no mangled UTF-8.
 */

import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSnapshot } from '../../src/delta/snapshot.js';
import { type PipelineFixture, pipelineFixture } from '../harness/pipeline-fixture.js';

const DDL = `CREATE TABLE typed (
  id INT PRIMARY KEY,
  u64 BIGINT UNSIGNED, i64 BIGINT, tiny TINYINT, utiny TINYINT UNSIGNED, u32 INT UNSIGNED,
  dec38 DECIMAL(38,10), dec10 DECIMAL(10,2), f FLOAT, d DOUBLE,
  dt DATETIME(6), ts TIMESTAMP(6) NULL, dd DATE, tm TIME(3), yr YEAR,
  s VARCHAR(50), txt TEXT, e ENUM('a','b'), st SET('x','y'), j JSON,
  bin VARBINARY(10), bits BIT(5)
) CHARACTER SET utf8mb4`;

const INSERT = 'INSERT INTO typed VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';

function row(id: number): unknown[] {
  return [
    id,
    '18446744073709551615',
    '-9223372036854775808',
    -128,
    255,
    '4294967295',
    '1234567890123456789012345678.0123456789',
    '-99999999.99',
    1.5,
    0.1,
    '2024-02-29 23:59:59.999999',
    // A TIMESTAMP is an instant: written in a +05:30 session, this is 18:29:59.999999 UTC.
    '2024-02-29 23:59:59.999999',
    '1999-12-31',
    '-838:59:59.000',
    2024,
    `😀 héllo ${id}`,
    'line1\nline2 "quoted" \\ backslash',
    'b',
    'x,y',
    '{"a": [1, 2.5, "z"]}',
    Buffer.from([0x00, 0xff, 0x10]),
    Buffer.from([0b10101]),
  ];
}

/** Bronze values as text, so the comparison is exact. */
const SELECT = `SELECT id, CAST(u64 AS VARCHAR) AS u64, CAST(i64 AS VARCHAR) AS i64, tiny, utiny, CAST(u32 AS VARCHAR) AS u32,
  CAST(dec38 AS VARCHAR) AS dec38, CAST(dec10 AS VARCHAR) AS dec10, f, d,
  strftime(dt, '%Y-%m-%d %H:%M:%S.%f') AS dt, strftime(ts, '%Y-%m-%d %H:%M:%S.%f') AS ts, CAST(dd AS VARCHAR) AS dd, tm, yr,
  s, txt, e, st, j, hex(bin) AS bin, hex(bits) AS bits
  FROM bronze.typed ORDER BY id`;

function expected(id: number): Record<string, unknown> {
  return {
    id,
    u64: '18446744073709551615',
    i64: '-9223372036854775808',
    tiny: -128,
    utiny: 255,
    u32: '4294967295',
    dec38: '1234567890123456789012345678.0123456789',
    dec10: '-99999999.99',
    f: 1.5,
    d: 0.1,
    dt: '2024-02-29 23:59:59.999999',
    ts: '2024-02-29 18:29:59.999999',
    dd: '1999-12-31',
    tm: '-838:59:59.000',
    yr: 2024,
    s: `😀 héllo ${id}`,
    txt: 'line1\nline2 "quoted" \\ backslash',
    e: 'b',
    st: 'x,y',
    j: '{"a": [1, 2.5, "z"]}',
    bin: '00FF10',
    bits: '15',
  };
}

const NULLS = {
  u64: null,
  ts: null,
  i64: null,
  tiny: null,
  utiny: null,
  u32: null,
  dec38: null,
  dec10: null,
  f: null,
  d: null,
  dt: null,
  dd: null,
  tm: null,
  yr: null,
  s: null,
  txt: null,
  e: null,
  st: null,
  j: null,
  bin: null,
  bits: null,
};

describe('MariaDB types into Delta', () => {
  let f: PipelineFixture;

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'types',
      setup: async (conn) => {
        // The source session is not in UTC, and neither is Tributary's process (see run below).
        await conn.query("SET time_zone = '+05:30'");
        await conn.query(DDL);
        await conn.query(INSERT, row(1));
        await conn.query('INSERT INTO typed (id) VALUES (2)');
        await conn.query("INSERT INTO typed (id, dt, dd) VALUES (3, '0000-00-00 00:00:00', '0000-00-00')");
      },
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('maps each column to the Delta type that holds it exactly', async () => {
    const r = await f.cli(['run', 'p', '--once'], { env: { TZ: 'America/New_York' } });
    expect(r.code, r.stderr).toBe(0);
    const snapshot = await loadSnapshot(join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', 'typed'));
    const types = Object.fromEntries(snapshot.schema.fields.map((c) => [c.name, c.type]));
    expect(types).toEqual({
      id: 'integer',
      u64: 'decimal(20,0)',
      i64: 'long',
      tiny: 'byte',
      utiny: 'short',
      u32: 'long',
      dec38: 'decimal(38,10)',
      dec10: 'decimal(10,2)',
      f: 'float',
      d: 'double',
      dt: 'timestamp',
      ts: 'timestamp',
      dd: 'date',
      tm: 'string',
      yr: 'integer',
      s: 'string',
      txt: 'string',
      e: 'string',
      st: 'string',
      j: 'string',
      bin: 'binary',
      bits: 'binary',
      _commit_timestamp: 'timestamp',
    });
  });

  it('keeps every value exact through the snapshot, and turns zero dates into NULL', async () => {
    expect(await f.sql(SELECT)).toEqual([expected(1), { id: 2, ...NULLS }, { id: 3, ...NULLS }]);
  });

  it('keeps every value exact through the binlog, for inserts, updates and deletes', async () => {
    await f.conn.query(INSERT, row(10));
    await f.conn.query(INSERT, row(11));
    await f.conn.query('UPDATE typed SET s = ?, dt = ? WHERE id = 11', [
      'ünïcødé ✓',
      '2000-01-01 00:00:00.000001',
    ]);
    await f.conn.query('UPDATE typed SET u64 = 0, dec38 = -0.0000000001 WHERE id = 1');
    await f.conn.query('DELETE FROM typed WHERE id = 2');
    const r = await f.cli(['run', 'p', '--once'], { env: { TZ: 'Asia/Tokyo' } });
    expect(r.code, r.stderr).toBe(0);
    expect(await f.sql(SELECT)).toEqual([
      { ...expected(1), u64: '0', dec38: '-0.0000000001' },
      { id: 3, ...NULLS },
      expected(10),
      { ...expected(11), s: 'ünïcødé ✓', dt: '2000-01-01 00:00:00.000001' },
    ]);
  });
});

describe('column selection', () => {
  // A column type without a Delta mapping (none is left on MariaDB 10.11; MariaDB 11.7's VECTOR is one) is
  // refused unless excluded: src/sources/mysql/type-mapping.test.ts.
  it('captures only the selected columns, and always the key', async () => {
    const setup = async (conn: import('mysql2/promise').Connection) => {
      await conn.query(
        'CREATE TABLE places (id INT PRIMARY KEY, name VARCHAR(20), loc POINT, secret VARCHAR(20))',
      );
      await conn.query("INSERT INTO places VALUES (1, 'home', POINT(1, 2), 's1')");
    };
    const table = (db: string, config: string) => `      - table:
          source_schema: ${db}
          source_table: places
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration: ${config}`;

    await using excluded = await pipelineFixture({
      prefix: 'geo',
      setup,
      objects: (db) => table(db, '{ exclude_columns: [loc, secret] }'),
    });
    await excluded.run();
    expect(await excluded.sql('SELECT * EXCLUDE (_commit_timestamp) FROM bronze.places')).toEqual([
      { id: 1, name: 'home' },
    ]);

    await using included = await pipelineFixture({
      prefix: 'geo',
      setup,
      objects: (db) => table(db, '{ include_columns: [name] }'),
    });
    await included.run();
    // The key is always kept, so rows can still be matched.
    expect(await included.sql('SELECT * EXCLUDE (_commit_timestamp) FROM bronze.places')).toEqual([
      { id: 1, name: 'home' },
    ]);
  });
});
