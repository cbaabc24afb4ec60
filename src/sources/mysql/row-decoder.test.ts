/**
 * The row decoder against zongji's own value decoder, which it must equal value for value: random bytes for
 * every type it decodes itself, in every shape (signedness, precision, charset), read by both from the same
 * offset. Random bytes reach corners real rows rarely do (64-bit edges, zero and odd-precision fractions,
 * negative DECIMAL groups, bytes above 0x7f in latin1 text).
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../testing/seeded-random.js';
import {
  type Column,
  type ColumnSchema,
  columnDecoder,
  installRowDecoder,
  type Parser,
  rowReader,
} from './row-decoder.js';

type ReadValue = (p: Parser, c: Column, s: ColumnSchema, t: unknown, z: unknown) => unknown;
let readMysqlValue: ReadValue;
let decodeTextColumn: (b: Buffer, charset: string | null) => unknown;
let ParserClass: new () => Parser & { append(b: Buffer): void };

beforeAll(async () => {
  const index = createRequire(import.meta.url).resolve('@vlasky/zongji');
  const lib = (file: string) => import(pathToFileURL(join(dirname(index), 'lib', file)).href);
  ({ readMysqlValue, decodeTextColumn } = await lib('common.js'));
  ({ Parser: ParserClass } = await lib('reader.js'));
});

const CONFIG = { dateStrings: true, timezone: 'Z', decimalNumbers: false, jsonStrings: true };
const zongji = { connection: { config: CONFIG } };

interface Shape {
  readonly label: string;
  readonly type: number;
  readonly metadata?: Record<string, number>;
  readonly columnType: string;
  readonly charset?: string | null;
  readonly unsigned?: boolean;
  /** Bytes of a length prefix to fill with a length that stays inside the buffer. */
  readonly lengthPrefix?: number;
}

const SHAPES: Shape[] = [
  ...(['tinyint', 'smallint', 'mediumint', 'int', 'bigint'] as const).flatMap((name, i) =>
    [false, true].map((unsigned) => ({
      label: `${name}${unsigned ? ' unsigned' : ''}`,
      type: [1, 2, 9, 3, 8][i] as number,
      columnType: `${name}(11)${unsigned ? ' unsigned' : ''}`,
    })),
  ),
  // Signedness from the binlog metadata wins over the column type text.
  { label: 'bigint, UNSIGNED from metadata', type: 8, columnType: 'bigint(20)', unsigned: true },
  { label: 'float', type: 4, columnType: 'float', metadata: { size: 4 } },
  { label: 'double', type: 5, columnType: 'double', metadata: { size: 8 } },
  ...[
    [12, 2],
    [10, 0],
    [20, 0],
    [9, 9],
    [38, 10],
    [65, 30],
    [1, 0],
    [4, 1],
    [19, 17],
  ].map(([precision, decimals]) => ({
    label: `decimal(${precision},${decimals})`,
    type: 246,
    columnType: `decimal(${precision},${decimals})`,
    metadata: { precision: precision as number, decimals: decimals as number },
  })),
  { label: 'year', type: 13, columnType: 'year(4)' },
  { label: 'date', type: 10, columnType: 'date' },
  ...[0, 1, 2, 3, 4, 5, 6].flatMap((decimals) => [
    { label: `datetime(${decimals})`, type: 18, columnType: `datetime(${decimals})`, metadata: { decimals } },
    {
      label: `timestamp(${decimals})`,
      type: 17,
      columnType: `timestamp(${decimals})`,
      metadata: { decimals },
    },
  ]),
  ...(['utf8mb4', 'utf8mb3', 'latin1', 'ascii'] as const).flatMap((charset) => [
    {
      label: `varchar(40) ${charset}`,
      type: 15,
      columnType: 'varchar(40)',
      charset,
      metadata: { max_length: 160 },
      lengthPrefix: 1,
    },
    {
      label: `varchar(400) ${charset}`,
      type: 15,
      columnType: 'varchar(400)',
      charset,
      metadata: { max_length: 1600 },
      lengthPrefix: 2,
    },
    {
      label: `char(10) ${charset}`,
      type: 254,
      columnType: 'char(10)',
      charset,
      metadata: { max_length: 40 },
      lengthPrefix: 1,
    },
    {
      label: `text ${charset}`,
      type: 252,
      columnType: 'text',
      charset,
      metadata: { length_size: 2 },
      lengthPrefix: 2,
    },
    {
      label: `mediumtext ${charset}`,
      type: 252,
      columnType: 'mediumtext',
      charset,
      metadata: { length_size: 3 },
      lengthPrefix: 3,
    },
  ]),
  {
    label: 'blob',
    type: 252,
    columnType: 'blob',
    charset: null,
    metadata: { length_size: 2 },
    lengthPrefix: 2,
  },
  {
    label: 'tinyblob',
    type: 252,
    columnType: 'tinyblob',
    charset: null,
    metadata: { length_size: 1 },
    lengthPrefix: 1,
  },
];

function column(shape: Shape): { column: Column; schema: ColumnSchema } {
  return {
    column: { name: 'c', charset: shape.charset ?? null, type: shape.type, metadata: shape.metadata },
    schema: {
      COLUMN_TYPE: shape.columnType,
      ...(shape.unsigned === undefined ? {} : { UNSIGNED: shape.unsigned }),
    },
  };
}

function parserOver(bytes: Buffer): Parser {
  const parser = new ParserClass();
  parser.append(bytes);
  return parser;
}

describe('the row decoder', () => {
  it('decodes every fast type exactly as zongji does, from random bytes', () => {
    const random = seededRandom(20261123);
    for (const shape of SHAPES) {
      const { column: c, schema } = column(shape);
      const decoder = columnDecoder(c, schema, CONFIG, decodeTextColumn);
      expect(decoder, shape.label).toBeDefined();
      for (let n = 0; n < 3000; n++) {
        const bytes = Buffer.from(Array.from({ length: 96 }, () => Math.floor(random() * 256)));
        if (shape.lengthPrefix) bytes.writeUIntLE(Math.floor(random() * 80), 0, shape.lengthPrefix);
        // A zero-ish first value now and then: zero dates, zero timestamps, zero fractions.
        if (n % 50 === 0) bytes.fill(0, 0, 12);
        const theirs = parserOver(bytes);
        const ours = parserOver(bytes);
        let expected: unknown;
        try {
          expected = readMysqlValue(theirs, c, schema, { columns: [c] }, zongji);
        } catch (error) {
          expect(() => decoder?.(ours), shape.label).toThrow();
          void error;
          continue;
        }
        const actual = decoder?.(ours);
        const where = `${shape.label}: bytes ${bytes.subarray(0, 12).toString('hex')}`;
        expect(actual, where).toEqual(expected);
        expect(typeof actual, where).toBe(typeof expected);
        expect(ours._offset, where).toBe(theirs._offset);
      }
    }
  });

  it('decodes the 64-bit edges exactly as zongji does', () => {
    const edges = [
      0n,
      1n,
      2n ** 53n - 1n,
      2n ** 53n,
      2n ** 53n + 1n,
      2n ** 63n - 1n,
      2n ** 63n,
      2n ** 64n - 1n,
    ];
    const values = [
      ...edges,
      ...edges.map((v) => 2n ** 64n - v),
      2n ** 64n - 2n ** 53n - 1n,
      0xffe00000n << 32n,
    ];
    for (const shape of SHAPES.filter((s) => s.type === 8)) {
      const { column: c, schema } = column(shape);
      const decoder = columnDecoder(c, schema, CONFIG, decodeTextColumn);
      for (const value of values) {
        const bytes = Buffer.alloc(8);
        bytes.writeBigUInt64LE(BigInt.asUintN(64, value));
        const expected = readMysqlValue(parserOver(bytes), c, schema, { columns: [c] }, zongji);
        expect(decoder?.(parserOver(bytes)), `${shape.label} ${value}`).toStrictEqual(expected);
      }
    }
  });

  it('leaves other types and other connection options to zongji', () => {
    const other = (type: number, columnType: string, metadata?: Record<string, number>) =>
      columnDecoder(
        { name: 'c', charset: null, type, metadata },
        { COLUMN_TYPE: columnType },
        CONFIG,
        decodeTextColumn,
      );
    expect(other(245, 'json', { length_size: 4 })).toBeUndefined();
    expect(other(247, "enum('a')", { size: 1 })).toBeUndefined();
    expect(other(19, 'time(6)', { decimals: 6 })).toBeUndefined();
    expect(other(16, 'bit(8)', { bits: 8 })).toBeUndefined();
    expect(other(254, 'binary(16)', { max_length: 16 })).toBeUndefined();
    const text = { name: 'c', charset: 'sjis', type: 15, metadata: { max_length: 80 } };
    expect(columnDecoder(text, { COLUMN_TYPE: 'varchar(40)' }, CONFIG, decodeTextColumn)).toBeUndefined();
    const datetime = { name: 'c', charset: null, type: 18, metadata: { decimals: 0 } };
    expect(
      columnDecoder(
        datetime,
        { COLUMN_TYPE: 'datetime' },
        { ...CONFIG, dateStrings: false },
        decodeTextColumn,
      ),
    ).toBeUndefined();
  });

  it('decodes each TABLE_MAP with its own columns: a table changed by DDL gets new decoders, not the old ones', () => {
    const reader = rowReader(readMysqlValue, decodeTextColumn);
    // Every TABLE_MAP brings new arrays, as zongji makes them; the table and its name stay the same.
    const tableMap = (type: number, columnType: string, metadata?: Record<string, number>) => ({
      parentSchema: 'shop',
      tableName: 'orders',
      columns: [{ name: 'n', charset: null, type, metadata }],
      columnSchemas: [{ COLUMN_TYPE: columnType }],
    });
    const present = Buffer.from([1]);
    const read = (map: ReturnType<typeof tableMap>, value: Buffer) =>
      reader.readRow(parserOver(Buffer.concat([Buffer.from([0]), value])), map, present, zongji)['n'];
    const int32 = (n: number) => {
      const b = Buffer.alloc(4);
      b.writeInt32LE(n);
      return b;
    };
    const int64 = (n: bigint) => {
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(n);
      return b;
    };
    expect(read(tableMap(3, 'int(11)'), int32(-5))).toBe(-5);
    expect(read(tableMap(3, 'int(11)'), int32(-6))).toBe(-6);
    // MODIFY n BIGINT: eight bytes a value from here on.
    expect(read(tableMap(8, 'bigint(20)'), int64(-7_000_000_000n))).toBe(-7_000_000_000);
    // MODIFY n INT UNSIGNED: the same binlog type, another declared type.
    expect(read(tableMap(3, 'int(10) unsigned'), int32(-1))).toBe(4_294_967_295);
    // DECIMAL(4,1) → DECIMAL(10,2): the same type code, other metadata.
    expect(
      read(tableMap(246, 'decimal(4,1)', { precision: 4, decimals: 1 }), Buffer.from([0x80, 0x0c, 0x03])),
    ).toBe('12.3');
    const wider = readMysqlValue(
      parserOver(Buffer.from([0x80, 0x00, 0x00, 0x0c, 0x03])),
      { name: 'n', charset: null, type: 246, metadata: { precision: 10, decimals: 2 } },
      { COLUMN_TYPE: 'decimal(10,2)' },
      { columns: [] },
      zongji,
    );
    expect(
      read(
        tableMap(246, 'decimal(10,2)', { precision: 10, decimals: 2 }),
        Buffer.from([0x80, 0x00, 0x00, 0x0c, 0x03]),
      ),
    ).toBe(wider);
    // Back to INT: decoded as INT again.
    expect(read(tableMap(3, 'int(11)'), int32(-8))).toBe(-8);
  });

  it('installs into zongji once', async () => {
    expect(await installRowDecoder()).toBe(true);
    expect(await installRowDecoder()).toBe(true);
  });
});
