import type mysql from 'mysql2/promise';
import { describe, expect, it } from 'vitest';
import { isTributaryError } from '../../core/errors.js';
import { readTableSchemas } from './schema-reader.js';
import { isSpatialType, spatialRowsToWkb, spatialTypeCast, wkbOf } from './spatial.js';
import { deltaTypeFor } from './type-mapping.js';

describe('deltaTypeFor', () => {
  it('maps every spatial type, as MariaDB and MySQL 8 name them, to binary', () => {
    for (const t of [
      'geometry',
      'point',
      'linestring',
      'polygon',
      'multipoint',
      'multilinestring',
      'multipolygon',
      'geometrycollection',
      'geomcollection',
      'POINT',
    ]) {
      expect(deltaTypeFor(t, 'db.t.c')).toBe('binary');
      expect(isSpatialType(t)).toBe(true);
    }
    expect(isSpatialType('blob')).toBe(false);
    expect(isSpatialType('pointless(3)')).toBe(false);
  });

  it('refuses a type without a mapping, naming the column and the way out', () => {
    let error: unknown;
    try {
      deltaTypeFor('vector(3)', 'db.t.embedding');
    } catch (e) {
      error = e;
    }
    expect(isTributaryError(error) && error.code).toBe('SOURCE_UNSUPPORTED_TYPE');
    expect(String((error as Error).message)).toContain('db.t.embedding');
    expect(String((error as { hint?: string }).hint)).toContain('exclude_columns');
  });
});

describe('readTableSchemas', () => {
  /** information_schema as a server holding db.t (id INT PRIMARY KEY, name VARCHAR(20), embedding VECTOR(3)). */
  const conn = {
    async query(sql: string) {
      if (sql.includes('information_schema.COLUMNS') && !sql.includes('STATISTICS')) {
        return [
          [
            ['id', 'int(11)', 'NO'],
            ['name', 'varchar(20)', 'YES'],
            ['embedding', 'vector(3)', 'YES'],
          ].map(([COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE]) => ({
            TABLE_SCHEMA: 'db',
            TABLE_NAME: 't',
            COLUMN_NAME,
            COLUMN_TYPE,
            IS_NULLABLE,
            COLUMN_KEY: '',
          })),
        ];
      }
      if (sql.includes('KEY_COLUMN_USAGE'))
        return [[{ TABLE_SCHEMA: 'db', TABLE_NAME: 't', COLUMN_NAME: 'id' }]];
      return [[]];
    },
  } as unknown as mysql.Connection;
  const t = { schema: 'db', table: 't' };

  it('refuses a table with an unmappable column, and reads it once the column is excluded', async () => {
    await expect(readTableSchemas(conn, { tables: [t], schemas: [] })).rejects.toMatchObject({
      code: 'SOURCE_UNSUPPORTED_TYPE',
    });
    const [excluded] = await readTableSchemas(conn, {
      tables: [t],
      schemas: [],
      columnFilters: new Map([['db.t', { exclude: ['embedding'] }]]),
    });
    expect(excluded?.columns.map((c) => c.name)).toEqual(['id', 'name']);
    const [included] = await readTableSchemas(conn, {
      tables: [t],
      schemas: [],
      columnFilters: new Map([['db.t', { include: ['name'] }]]),
    });
    expect(included?.columns.map((c) => c.name)).toEqual(['id', 'name']);
  });
});

describe('spatial values', () => {
  // POINT(1 2) with SRID 4326 as MariaDB stores it: SRID (little-endian), then the WKB.
  const stored = Buffer.from('E61000000101000000000000000000F03F0000000000000040', 'hex');
  const wkb = '0101000000000000000000f03f0000000000000040';

  it('drops the SRID prefix, leaving the WKB ST_AsWKB returns', () => {
    expect(Buffer.from(wkbOf(stored) ?? []).toString('hex')).toBe(wkb);
    expect(wkbOf(null)).toBeNull();
    // The snapshot's typeCast: spatial fields as WKB, every other field as the driver reads it.
    expect(
      Buffer.from(spatialTypeCast({ type: 'GEOMETRY', buffer: () => stored }, () => 'x') as Buffer).toString(
        'hex',
      ),
    ).toBe(wkb);
    expect(spatialTypeCast({ type: 'GEOMETRY', buffer: () => null }, () => 'x')).toBeNull();
    expect(spatialTypeCast({ type: 'VAR_STRING', buffer: () => stored }, () => 'x')).toBe('x');
  });

  it('unwraps the spatial columns of binlog rows, updates included, and leaves the rest alone', () => {
    // Columns named before/after do not confuse the update pairs.
    const tableMap = {
      7: {
        columns: [
          { name: 'before', type: 252, tributarySpatial: true },
          { name: 'after', type: 252 },
        ],
      },
    };
    const blob = Buffer.from([1, 2, 3, 4, 5]);
    const insert = { tableId: 7, tableMap, rows: [{ before: stored, after: blob }] };
    spatialRowsToWkb(insert, false);
    expect(Buffer.from(insert.rows[0]?.before as Buffer).toString('hex')).toBe(wkb);
    expect(insert.rows[0]?.after).toBe(blob);
    const update = {
      tableId: 7,
      tableMap,
      rows: [{ before: { before: stored, after: blob }, after: { before: null, after: blob } }],
    };
    spatialRowsToWkb(update, true);
    expect(Buffer.from(update.rows[0]?.before.before as Buffer).toString('hex')).toBe(wkb);
    expect(update.rows[0]?.after.before).toBeNull();
  });
});
