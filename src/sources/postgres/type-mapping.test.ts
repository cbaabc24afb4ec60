/**
 * The PostgreSQL type mapping, on text observed from a real PostgreSQL 15: every value below is what the
 * server printed (psql, or pg with its type parsers off) in a UTC session, and where a session setting changes
 * the text, also in a +05:30 session with IntervalStyle=postgres and bytea_output=escape. Both must stage the
 * same. The staged forms are then cast by DuckDB exactly as a merge casts them, so a BC date or a zone offset
 * that DuckDB would misread shows up here rather than in a bronze table.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TributaryError } from '../../core/errors.js';
import type { SqlValue } from '../../core/table.js';
import { DuckDb } from '../../engine/duckdb.js';
import { duckDbTypeFor } from '../../engine/duckdb-types.js';
import { toStagedText } from '../../staging/staged-value.js';
import {
  byteaValue,
  intervalIso,
  numericDeltaType,
  type PgFieldRow,
  PgTypeCatalog,
  type PgTypeRow,
  parseArray,
  parseComposite,
  timestamptzText,
} from './type-mapping.js';

const OID = {
  bool: 16,
  bytea: 17,
  char: 18,
  name: 19,
  int8: 20,
  int2: 21,
  int2vector: 22,
  int4: 23,
  regproc: 24,
  text: 25,
  oid: 26,
  xid: 28,
  json: 114,
  xml: 142,
  point: 600,
  lseg: 601,
  path: 602,
  box: 603,
  polygon: 604,
  line: 628,
  cidr: 650,
  float4: 700,
  float8: 701,
  circle: 718,
  macaddr8: 774,
  money: 790,
  macaddr: 829,
  inet: 869,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  time: 1083,
  timestamp: 1114,
  timestamptz: 1184,
  interval: 1186,
  timetz: 1266,
  bit: 1560,
  varbit: 1562,
  numeric: 1700,
  regclass: 2205,
  uuid: 2950,
  pg_lsn: 3220,
  tsvector: 3614,
  tsquery: 3615,
  jsonb: 3802,
  int4range: 3904,
  numrange: 3906,
  tsrange: 3908,
  tstzrange: 3910,
  daterange: 3912,
  int8range: 3926,
  int4multirange: 4451,
  tstzmultirange: 4534,
  nummultirange: 4532,
  xid8: 5069,
  // Arrays
  _bool: 1000,
  _bytea: 1001,
  _int4: 1007,
  _text: 1009,
  _box: 1020,
  _float8: 1022,
  _bpchar: 1014,
  _date: 1182,
  _interval: 1187,
  _numeric: 1231,
  _timestamptz: 1185,
  _jsonb: 3807,
  _point: 1017,
  _varbit: 1563,
} as const;

/** typmods as pg_attribute.atttypmod shows them. */
const TYPMOD = {
  numeric10_2: 655366,
  numeric40_5: 2621449,
  numeric3_neg2: 198658,
  numeric2_5: 131081,
  numeric38_neg1: 2492419,
  numeric1_neg37: 67551,
  numeric1000_0: 65536004,
};

/** The user types of the test database, as PgTypeCatalog.ensure loaded them from pg_type and pg_attribute. */
const USER_TYPES: PgTypeRow[] = [
  row(16532, 'citext', 'b', 'S', { len: -1 }),
  row(16636, '_mood', 'b', 'A', { elem: 16637, len: -1 }),
  row(16637, 'mood', 'e', 'E', { len: 4 }),
  row(16646, 'money2', 'd', 'N', { baseType: 1700, baseTypmod: 655366 }),
  row(16649, 'short_text', 'd', 'S', { baseType: 1043, baseTypmod: 9 }),
  row(16651, 'int_list', 'd', 'A', { baseType: 1007 }),
  row(16653, '_address', 'b', 'A', { elem: 16654, len: -1 }),
  row(16654, 'address', 'c', 'C', { relid: 16652 }),
  row(16658, 'floatrange', 'r', 'R', { rangeOf: 701 }),
  row(16769, 'textrange', 'r', 'R', { rangeOf: 25 }),
];
const ADDRESS_FIELDS: PgFieldRow[] = [
  { relid: 16652, name: 'street', typeOid: 25, typmod: -1 },
  { relid: 16652, name: 'zip', typeOid: 23, typmod: -1 },
  { relid: 16652, name: 'tags', typeOid: 1009, typmod: -1 },
  { relid: 16652, name: 'at', typeOid: 1184, typmod: -1 },
];

function row(
  oid: number,
  name: string,
  typtype: string,
  category: string,
  extra: Partial<PgTypeRow> = {},
): PgTypeRow {
  return {
    oid,
    name,
    namespace: 'public',
    typtype,
    category,
    elem: 0,
    len: -1,
    baseType: 0,
    baseTypmod: -1,
    relid: 0,
    delimiter: ',',
    rangeOf: 0,
    ...extra,
  };
}

function catalog(onLoss?: (message: string) => void): PgTypeCatalog {
  const c = new PgTypeCatalog(onLoss ? { onLoss } : {});
  c.register(USER_TYPES, ADDRESS_FIELDS);
  return c;
}

const convert = (oid: number, text: string, typmod = -1) =>
  catalog().mapColumn(oid, typmod, 't.c').convert(text);
const deltaOf = (oid: number, typmod = -1) => catalog().mapColumn(oid, typmod, 't.c').deltaType;
const hex = (v: SqlValue) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v);

describe('Delta types', () => {
  it('maps every built-in type', () => {
    const expected: [number, string, number?][] = [
      [OID.bool, 'boolean'],
      [OID.int2, 'short'],
      [OID.int4, 'integer'],
      [OID.int8, 'long'],
      [OID.oid, 'long'],
      [OID.xid, 'long'],
      [OID.xid8, 'decimal(20,0)'],
      [OID.float4, 'float'],
      [OID.float8, 'double'],
      [OID.numeric, 'string'],
      [OID.numeric, 'decimal(10,2)', TYPMOD.numeric10_2],
      [OID.money, 'string'],
      [OID.bpchar, 'string', 9],
      [OID.varchar, 'string', 14],
      [OID.text, 'string'],
      [OID.name, 'string'],
      [OID.char, 'string'],
      [OID.bytea, 'binary'],
      [OID.date, 'date'],
      [OID.time, 'string'],
      [OID.timetz, 'string'],
      [OID.timestamp, 'timestamp'],
      [OID.timestamptz, 'timestamp'],
      [OID.timestamptz, 'timestamp', 3],
      [OID.interval, 'string'],
      [OID.uuid, 'string'],
      [OID.json, 'string'],
      [OID.jsonb, 'string'],
      [OID.xml, 'string'],
      [OID.inet, 'string'],
      [OID.cidr, 'string'],
      [OID.macaddr, 'string'],
      [OID.macaddr8, 'string'],
      [OID.bit, 'string', 4],
      [OID.varbit, 'string'],
      [OID.tsvector, 'string'],
      [OID.tsquery, 'string'],
      [OID.point, 'string'],
      [OID.line, 'string'],
      [OID.lseg, 'string'],
      [OID.box, 'string'],
      [OID.path, 'string'],
      [OID.polygon, 'string'],
      [OID.circle, 'string'],
      [OID.pg_lsn, 'string'],
      [OID.regclass, 'string'],
      [OID.regproc, 'string'],
      [OID.int2vector, 'string'],
      [OID.int4range, 'string'],
      [OID.tstzrange, 'string'],
      [OID.int4multirange, 'string'],
      [OID._int4, 'string'],
      [OID._text, 'string'],
      [OID._jsonb, 'string'],
    ];
    for (const [oid, delta, typmod] of expected) {
      expect([oid, typmod, deltaOf(oid, typmod)]).toEqual([oid, typmod, delta]);
    }
  });

  it('maps user types: domains by their base, enums and ranges and composites and arrays as strings', () => {
    expect(deltaOf(16532)).toBe('string'); // citext
    expect(deltaOf(16637)).toBe('string'); // enum
    expect(deltaOf(16636)).toBe('string'); // enum[]
    expect(deltaOf(16646)).toBe('decimal(10,2)'); // domain over numeric(10,2): the domain's typmod applies
    expect(deltaOf(16649)).toBe('string'); // domain over varchar(5)
    expect(deltaOf(16651)).toBe('string'); // domain over int[]
    expect(deltaOf(16654)).toBe('string'); // composite
    expect(deltaOf(16653)).toBe('string'); // composite[]
    expect(deltaOf(16658)).toBe('string'); // range over float8
  });

  it('fits numeric(p,s) into Delta decimals exactly, or keeps the text', () => {
    expect(numericDeltaType(-1)).toBe('string');
    expect(numericDeltaType(TYPMOD.numeric10_2)).toBe('decimal(10,2)');
    expect(numericDeltaType(TYPMOD.numeric40_5)).toBe('string');
    expect(numericDeltaType(TYPMOD.numeric1000_0)).toBe('string');
    // numeric(3,-2) holds 99900 at most; numeric(2,5) holds 0.00099 at most.
    expect(numericDeltaType(TYPMOD.numeric3_neg2)).toBe('decimal(5,0)');
    expect(numericDeltaType(TYPMOD.numeric2_5)).toBe('decimal(5,5)');
    expect(numericDeltaType(TYPMOD.numeric38_neg1)).toBe('string');
    expect(numericDeltaType(TYPMOD.numeric1_neg37)).toBe('decimal(38,0)');
  });

  it('refuses a type it was not told about', () => {
    expect(() => catalog().mapColumn(99999, -1, 'public.t.c')).toThrow(/type OID 99999 was not loaded/);
  });
});

describe('values: numbers', () => {
  it('keeps integers as exact text, including the int8 extremes', () => {
    expect(convert(OID.int2, '-32768')).toBe('-32768');
    expect(convert(OID.int4, '-2147483648')).toBe('-2147483648');
    expect(convert(OID.int8, '-9223372036854775808')).toBe('-9223372036854775808');
    expect(convert(OID.int8, '9223372036854775807')).toBe('9223372036854775807');
    expect(convert(OID.oid, '4294967295')).toBe('4294967295');
    expect(convert(OID.xid8, '18446744073709551615')).toBe('18446744073709551615');
  });

  it('keeps floats as the shortest exact text, with their special values', () => {
    for (const t of ['3.4028235e+38', 'Infinity', 'NaN', '-0', '1e-45', '0.1']) {
      expect(convert(OID.float4, t)).toBe(t);
    }
    for (const t of ['1.7976931348623157e+308', '-Infinity', 'NaN', '1e-320', '5e-324']) {
      expect(convert(OID.float8, t)).toBe(t);
    }
  });

  it('keeps unconstrained numeric whole: huge precision, NaN and ±Infinity', () => {
    for (const t of [
      'NaN',
      'Infinity',
      '-Infinity',
      '1180591620717411303424.0000000000000000',
      '0.000000000000000000000000000000000000000001',
      '123456789012345678901234567890123.45678',
    ]) {
      expect(convert(OID.numeric, t)).toBe(t);
    }
  });

  it('stages NaN in a decimal column as NULL and reports it once', () => {
    const losses: string[] = [];
    const column = catalog((m) => losses.push(m)).mapColumn(
      OID.numeric,
      TYPMOD.numeric10_2,
      'shop.items.price',
    );
    expect(column.convert('99999999.99')).toBe('99999999.99');
    expect(column.convert('-0.01')).toBe('-0.01');
    expect(column.convert('NaN')).toBeNull();
    expect(column.convert('NaN')).toBeNull();
    expect(losses).toHaveLength(1);
    expect(losses[0]).toMatch(
      /^shop\.items\.price: numeric NaN cannot be stored in a Delta decimal\(10,2\) column/,
    );
    // Through a domain too.
    expect(catalog().mapColumn(16646, -1, 'x').convert('NaN')).toBeNull();
    expect(catalog().mapColumn(16646, -1, 'x').convert('12.50')).toBe('12.50');
  });

  it('keeps money as the server prints it', () => {
    expect(convert(OID.money, '-$92,233,720,368,547,758.08')).toBe('-$92,233,720,368,547,758.08');
  });

  it('turns booleans into booleans', () => {
    expect(convert(OID.bool, 't')).toBe(true);
    expect(convert(OID.bool, 'f')).toBe(false);
    expect(() => convert(OID.bool, 'true')).toThrow(TributaryError);
  });
});

describe('values: text and binary', () => {
  it('passes text types through untouched, padding and escapes included', () => {
    expect(convert(OID.bpchar, 'ab   ', 9)).toBe('ab   ');
    expect(convert(OID.varchar, 'héllo', 14)).toBe('héllo');
    expect(convert(OID.text, 'tab\there "q" \\ back')).toBe('tab\there "q" \\ back');
    expect(convert(16532, 'CaSe')).toBe('CaSe');
    expect(convert(16637, 'happy')).toBe('happy');
    expect(convert(16649, 'abc')).toBe('abc');
  });

  it('passes json and jsonb through, so integers beyond 2^53 stay exact', () => {
    const jsonb = '{"f": 1.000000000000000000001, "big": 1180591620717411303424}';
    expect(convert(OID.jsonb, jsonb)).toBe(jsonb);
    expect(convert(OID.json, '{"a": 1180591620717411303424}')).toBe('{"a": 1180591620717411303424}');
  });

  it('decodes bytea from hex and from escape format alike', () => {
    const cases: [string, string, string][] = [
      ['\\x00ff5c22', '\\000\\377\\\\"', '00ff5c22'],
      ['\\x', '', ''],
      ['\\x00', '\\000', '00'],
      ['\\xdeadbeef', '\\336\\255\\276\\357', 'deadbeef'],
    ];
    for (const [hexText, escaped, bytes] of cases) {
      expect(hex(convert(OID.bytea, hexText))).toBe(bytes);
      expect(hex(convert(OID.bytea, escaped))).toBe(bytes);
    }
    expect(Buffer.from(byteaValue('ab\\\\c')).toString('latin1')).toBe('ab\\c');
    expect(() => byteaValue('\\x0')).toThrow(TributaryError);
    expect(() => byteaValue('\\xzz')).toThrow(TributaryError);
    expect(() => byteaValue('\\9')).toThrow(TributaryError);
  });

  it('keeps the other types in their text form', () => {
    const cases: [number, string, number?][] = [
      [OID.uuid, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
      [OID.xml, '<a>x</a>'],
      [OID.inet, '192.168.1.5/24'],
      [OID.cidr, '10.0.0.0/8'],
      [OID.macaddr, '08:00:2b:01:02:03'],
      [OID.macaddr8, '08:00:2b:01:02:03:04:05'],
      [OID.bit, '1010', 4],
      [OID.varbit, '101'],
      [OID.tsvector, "'a' 'cat' 'fat'"],
      [OID.tsquery, "'fat' & 'rat'"],
      [OID.point, '(1.5,2)'],
      [OID.line, '{1,2,3}'],
      [OID.lseg, '[(1,2),(3,4)]'],
      [OID.box, '(3,4),(1,2)'],
      [OID.path, '[(1,2),(3,4)]'],
      [OID.polygon, '((0,0),(1,1),(1,0))'],
      [OID.circle, '<(1,2),3>'],
      [OID.pg_lsn, '16/B374D848'],
      [OID.regclass, 'every_type'],
      [OID.int2vector, '1 2 3'],
      [OID.time, '24:00:00'],
      [OID.timetz, '12:34:56.789+05:30'],
    ];
    for (const [oid, text, typmod] of cases) expect(convert(oid, text, typmod)).toBe(text);
  });
});

describe('values: dates and times', () => {
  it('keeps AD dates, spells BC the way DuckDB reads it, and loses what Delta cannot hold', () => {
    const losses: string[] = [];
    const column = catalog((m) => losses.push(m)).mapColumn(OID.date, -1, 'public.t.d');
    expect(column.convert('2024-03-01')).toBe('2024-03-01');
    expect(column.convert('0044-03-15 BC')).toBe('0044-03-15 (BC)');
    expect(column.convert('4714-11-24 BC')).toBe('4714-11-24 (BC)');
    expect(column.convert('0001-01-01 BC')).toBe('0001-01-01 (BC)');
    expect(column.convert('275759-12-31')).toBe('275759-12-31');
    expect(column.convert('infinity')).toBeNull();
    expect(column.convert('-infinity')).toBeNull();
    expect(column.convert('275760-01-01')).toBeNull();
    expect(column.convert('5874897-12-31')).toBeNull();
    expect(losses.map((m) => m.split(' cannot')[0])).toEqual([
      'public.t.d: date infinity',
      'public.t.d: date -infinity',
      'public.t.d: a date after the year 275759',
    ]);
  });

  it('keeps timestamp wall time with its microseconds', () => {
    expect(convert(OID.timestamp, '2024-03-01 09:30:00.123456')).toBe('2024-03-01 09:30:00.123456');
    expect(convert(OID.timestamp, '10000-01-01 00:00:00')).toBe('10000-01-01 00:00:00');
    expect(convert(OID.timestamp, '4714-11-24 00:00:00 BC')).toBe('4714-11-24 (BC) 00:00:00');
    expect(convert(OID.timestamp, '0001-12-31 23:59:59.5 BC')).toBe('0001-12-31 (BC) 23:59:59.5');
    expect(convert(OID.timestamp, '275759-12-31 23:59:59.999999')).toBe('275759-12-31 23:59:59.999999');
    expect(convert(OID.timestamp, 'infinity')).toBeNull();
    expect(convert(OID.timestamp, '-infinity')).toBeNull();
    expect(convert(OID.timestamp, '294276-12-31 23:59:59.999999')).toBeNull();
  });

  it('normalises timestamptz to the UTC instant, whatever zone printed it', () => {
    // [printed in a UTC session, printed in an Asia/Kolkata session, staged]
    const cases: [string, string, string][] = [
      ['2024-03-01 04:00:00.123456+00', '2024-03-01 09:30:00.123456+05:30', '2024-03-01 04:00:00.123456+00'],
      ['2024-03-01 09:30:00.124+00', '2024-03-01 15:00:00.124+05:30', '2024-03-01 09:30:00.124+00'],
      ['1900-01-01 00:00:00+00', '1900-01-01 05:21:10+05:21:10', '1900-01-01 00:00:00+00'],
      ['0001-01-01 00:00:00.5+00', '0001-01-01 05:53:28.5+05:53:28', '0001-01-01 00:00:00.5+00'],
      ['0044-03-15 12:00:00+00 BC', '0044-03-15 17:53:28+05:53:28 BC', '0044-03-15 (BC) 12:00:00+00'],
      ['4714-11-24 00:00:00+00 BC', '4714-11-24 05:53:28+05:53:28 BC', '4714-11-24 (BC) 00:00:00+00'],
    ];
    for (const [utc, kolkata, staged] of cases) {
      expect(convert(OID.timestamptz, utc)).toBe(staged);
      expect(convert(OID.timestamptz, kolkata)).toBe(staged);
      expect(timestamptzText(kolkata)).toBe(utc);
    }
    // Crossing a day, a year and the BC/AD boundary backwards.
    expect(timestamptzText('0001-01-01 00:30:00-01')).toBe('0001-01-01 01:30:00+00');
    expect(timestamptzText('0001-01-01 00:30:00+01')).toBe('0001-12-31 23:30:00+00 BC');
    expect(timestamptzText('2024-12-31 23:00:00-02')).toBe('2025-01-01 01:00:00+00');
    expect(timestamptzText('2024-03-01 00:00:00+05:45')).toBe('2024-02-29 18:15:00+00');
    expect(convert(OID.timestamptz, 'infinity')).toBeNull();
    expect(convert(OID.timestamptz, '-infinity')).toBeNull();
    expect(convert(OID.timestamptz, '294276-12-31 23:59:59.999999+00')).toBeNull();
    expect(convert(OID.timestamptz, '294277-01-01 05:29:59.999999+05:30')).toBeNull();
  });

  it('writes intervals as ISO 8601, from either interval style', () => {
    // [IntervalStyle=postgres, IntervalStyle=iso_8601], both printed by the server for the same value.
    const cases: [string, string][] = [
      ['1 year 2 mons -3 days +04:05:06.789', 'P1Y2M-3DT4H5M6.789S'],
      ['-00:00:00.5', 'PT-0.5S'],
      ['00:00:00', 'PT0S'],
      ['-1 years -2 mons +3 days -04:05:06', 'P-1Y-2M3DT-4H-5M-6S'],
      ['178000000 years', 'P178000000Y'],
      ['1 day -00:00:01', 'P1DT-1S'],
      ['2562047788:00:54.775807', 'PT2562047788H54.775807S'],
      ['-2562047788:00:54.775808', 'PT-2562047788H-54.775808S'],
    ];
    for (const [postgres, iso] of cases) {
      expect(convert(OID.interval, postgres)).toBe(iso);
      expect(convert(OID.interval, iso)).toBe(iso);
      expect(intervalIso(postgres)).toBe(iso);
    }
  });

  it('refuses text from another DateStyle or IntervalStyle rather than guess', () => {
    const refused: [number, string][] = [
      [OID.date, '03/01/2024'],
      [OID.date, '01.03.2024'],
      [OID.timestamptz, '03/01/2024 09:30:00.123456 UTC'],
      [OID.timestamptz, 'Fri Mar 01 09:30:00.123456 2024 UTC'],
      [OID.timestamp, 'Fri Mar 01 09:30:00 2024'],
      [OID.timestamp, '2024-03-01 09:30:00+00'],
      [OID.timestamptz, '2024-03-01 09:30:00'],
      [OID.interval, '+1-2 +3 +4:05:06'],
      [OID.interval, '@ 1 year 2 mons 3 days 4 hours 5 mins 6 secs'],
      [OID.interval, ''],
    ];
    for (const [oid, text] of refused) {
      expect(() => convert(oid, text), text).toThrow(
        expect.objectContaining({ code: 'SOURCE_MISCONFIGURED' }) as unknown as Error,
      );
    }
  });
});

describe('values: arrays and composites as JSON', () => {
  it('parses array literals: quoting, NULL versus "NULL", nesting, bounds, delimiters', () => {
    expect(parseArray('{1,NULL,3}')).toEqual(['1', null, '3']);
    expect(parseArray('{}')).toEqual([]);
    expect(parseArray('[0:1]={7,8}')).toEqual(['7', '8']);
    expect(parseArray('[1:1][-2:-1]={{1,2}}')).toEqual([['1', '2']]);
    expect(parseArray('{{a,b},{c,NULL}}')).toEqual([
      ['a', 'b'],
      ['c', null],
    ]);
    expect(parseArray('{"a b","NULL",NULL,"q\\"uote","back\\\\slash","",x}')).toEqual([
      'a b',
      'NULL',
      null,
      'q"uote',
      'back\\slash',
      '',
      'x',
    ]);
    expect(parseArray('{"{}"," lead","null","a,b","x\\\\y"}')).toEqual([
      '{}',
      ' lead',
      'null',
      'a,b',
      'x\\y',
    ]);
    expect(parseArray('{(3,4),(1,2);(7,8),(5,6)}', ';')).toEqual(['(3,4),(1,2)', '(7,8),(5,6)']);
    for (const bad of ['', '{', '{1,2', '{1}x', '[0:1]{1}', '{"a}']) {
      expect(() => parseArray(bad), bad).toThrow(TributaryError);
    }
  });

  it('parses record literals: empty fields are NULL, "" is the empty string', () => {
    expect(parseComposite('(1,"",," ","a""b","c\\\\d","(x)")')).toEqual([
      '1',
      '',
      null,
      ' ',
      'a"b',
      'c\\d',
      '(x)',
    ]);
    expect(parseComposite('(,,,)')).toEqual([null, null, null, null]);
    expect(() => parseComposite('1,2')).toThrow(TributaryError);
  });

  it('stages arrays as JSON with typed elements, big numbers exact', () => {
    const cases: [number, string, string][] = [
      [OID._int4, '{1,NULL,3}', '[1,null,3]'],
      [OID._int4, '{}', '[]'],
      [OID._int4, '[0:1]={7,8}', '[7,8]'],
      [OID._int4, '{{1,2},{3,4}}', '[[1,2],[3,4]]'],
      [
        OID._text,
        '{"a b","NULL",NULL,"q\\"uote","back\\\\slash","",x}',
        '["a b","NULL",null,"q\\"uote","back\\\\slash","","x"]',
      ],
      [
        OID._jsonb,
        '{"{\\"k\\": 1180591620717411303424}","null",NULL}',
        '[{"k": 1180591620717411303424},null,null]',
      ],
      [16636, '{sad,"a \\"quoted\\", label"}', '["sad","a \\"quoted\\", label"]'],
      [OID._timestamptz, '{"2023-12-31 18:30:00+00",infinity}', '["2023-12-31 18:30:00+00","infinity"]'],
      // The same value printed by an Asia/Kolkata session.
      [OID._timestamptz, '{"2024-01-01 00:00:00+05:30",infinity}', '["2023-12-31 18:30:00+00","infinity"]'],
      [OID._bytea, '{"\\\\x0102",NULL}', '["\\\\x0102",null]'],
      [OID._bytea, '{"\\\\001\\\\002",NULL}', '["\\\\x0102",null]'],
      [OID._numeric, '{1.50,NaN,Infinity,0.0}', '[1.50,"NaN","Infinity",0.0]'],
      [OID._float8, '{1.5,NaN,-Infinity,1e+300}', '[1.5,"NaN","-Infinity",1e+300]'],
      [OID._bool, '{t,f}', '[true,false]'],
      [OID._interval, '{"1 day"}', '["P1D"]'],
      [OID._date, '{2024-01-01,infinity,"0044-03-15 BC"}', '["2024-01-01","infinity","0044-03-15 BC"]'],
      [OID._bpchar, '{"a  "}', '["a  "]'],
      [OID._varbit, '{101}', '["101"]'],
      [OID._point, '{"(1,2)"}', '["(1,2)"]'],
      [OID._box, '{(3,4),(1,2);(7,8),(5,6)}', '["(3,4),(1,2)","(7,8),(5,6)"]'],
      [16651, '{1,2}', '[1,2]'],
    ];
    for (const [oid, text, json] of cases) {
      const staged = convert(oid, text);
      expect(staged, text).toBe(json);
      expect(() => JSON.parse(String(staged))).not.toThrow();
    }
  });

  it('stages composites as JSON objects named by their fields, nested arrays included', () => {
    expect(convert(16654, '("Main ""St""",12345,"{a,NULL}","2023-12-31 22:00:00+00")')).toBe(
      '{"street":"Main \\"St\\"","zip":12345,"tags":["a",null],"at":"2023-12-31 22:00:00+00"}',
    );
    const utc =
      '{"(\\"Main St, 1\\",12345,\\"{a,\\"\\"b c\\"\\"}\\",\\"2023-12-31 22:00:00+00\\")","(,,,)",NULL}';
    const kolkata =
      '{"(\\"Main St, 1\\",12345,\\"{a,\\"\\"b c\\"\\"}\\",\\"2024-01-01 03:30:00+05:30\\")","(,,,)",NULL}';
    const json =
      '[{"street":"Main St, 1","zip":12345,"tags":["a","b c"],"at":"2023-12-31 22:00:00+00"},{"street":null,"zip":null,"tags":null,"at":null},null]';
    expect(convert(16653, utc)).toBe(json);
    expect(convert(16653, kolkata)).toBe(json);
    expect(() => convert(16654, '(1,2)')).toThrow(/with 4 fields/);
  });
});

describe('values: ranges', () => {
  it('keeps range text, with timestamptz bounds normalised to UTC', () => {
    const cases: [number, string, string?][] = [
      [OID.int4range, '[1,10)'],
      [OID.int4range, '(,)'],
      [OID.numrange, '(1.5,2.25]'],
      [OID.numrange, '(1,)'],
      [OID.tsrange, '["2024-01-01 00:00:00","2024-02-01 00:00:00")'],
      [OID.tstzrange, '["2023-12-31 19:00:00+00",infinity)'],
      [OID.tstzrange, '["2024-01-01 00:30:00+05:30",infinity)', '["2023-12-31 19:00:00+00",infinity)'],
      [OID.daterange, '[2024-01-01,)'],
      [OID.int8range, 'empty'],
      [16658, '[1.5,2.5]'],
      [16769, '["a b","c,d")'],
      [16769, '("","q""\\\\z"]'],
      [16769, '(,x)'],
      [OID.int4multirange, '{[1,3),[5,7)}'],
      [OID.int4multirange, '{}'],
      [OID.nummultirange, '{[1,2),[3,)}'],
      [
        OID.tstzmultirange,
        '{["2024-01-01 05:30:00+05:30","2024-01-02 05:30:00+05:30"),["2024-02-01 05:30:00+05:30",)}',
        '{["2024-01-01 00:00:00+00","2024-01-02 00:00:00+00"),["2024-02-01 00:00:00+00",)}',
      ],
    ];
    for (const [oid, text, staged] of cases) expect(convert(oid, text), text).toBe(staged ?? text);
    for (const bad of ['[1,2', '1,2)', '[1)', '{[1,2)', '{[1,2);[3,4)}']) {
      expect(() => convert(bad.startsWith('{') ? OID.int4multirange : OID.int4range, bad), bad).toThrow(
        TributaryError,
      );
    }
  });
});

describe('staged values, cast on apply', () => {
  let db: DuckDb;
  beforeAll(async () => {
    db = await DuckDb.open();
  });
  afterAll(async () => {
    await db[Symbol.asyncDispose]();
  });

  /** What bronze would hold: staged as text, then cast the way planMerge casts it. */
  async function applied(oid: number, text: string, typmod = -1): Promise<unknown> {
    const column = catalog().mapColumn(oid, typmod, 't.c');
    const staged = toStagedText(column.convert(text), column.deltaType);
    if (staged === null) return null;
    const literal = `'${staged.replaceAll("'", "''")}'`;
    const sql =
      column.deltaType === 'binary'
        ? `hex(unhex(${literal}))`
        : column.deltaType === 'string'
          ? literal
          : `CAST(${literal} AS ${duckDbTypeFor(column.deltaType)})`;
    const [row] = await db.rows(`SELECT (${sql})::VARCHAR AS v`);
    return row?.['v'];
  }

  it('casts every staged form to the value the source holds', async () => {
    const cases: [number, string, string, number?][] = [
      [OID.bool, 't', 'true'],
      [OID.bool, 'f', 'false'],
      [OID.int8, '-9223372036854775808', '-9223372036854775808'],
      [OID.oid, '4294967295', '4294967295'],
      [OID.xid8, '18446744073709551615', '18446744073709551615'],
      [OID.float8, '1.7976931348623157e+308', '1.7976931348623157e+308'],
      [OID.float8, '-Infinity', '-inf'],
      [OID.float8, 'NaN', 'nan'],
      [OID.float4, '1e-45', '1e-45'],
      [OID.numeric, '99999999.99', '99999999.99', TYPMOD.numeric10_2],
      [OID.numeric, '12300', '12300', TYPMOD.numeric3_neg2],
      [OID.numeric, '0.00099', '.00099', TYPMOD.numeric2_5],
      [OID.bytea, '\\x00ff5c22', '00FF5C22'],
      [OID.date, '0044-03-15 BC', '0044-03-15 (BC)'],
      [OID.date, '0001-01-01 BC', '0001-01-01 (BC)'],
      [OID.date, '275759-12-31', '275759-12-31'],
      [OID.timestamp, '2024-03-01 09:30:00.123456', '2024-03-01 09:30:00.123456+00'],
      [OID.timestamp, '0001-12-31 23:59:59.5 BC', '0001-12-31 (BC) 23:59:59.5+00'],
      [OID.timestamp, '10000-01-01 00:00:00', '10000-01-01 00:00:00+00'],
      [OID.timestamp, '4714-11-24 00:00:00 BC', '4714-11-24 (BC) 00:00:00+00'],
      [OID.timestamptz, '2024-03-01 09:30:00.123456+05:30', '2024-03-01 04:00:00.123456+00'],
      [OID.timestamptz, '0044-03-15 17:53:28+05:53:28 BC', '0044-03-15 (BC) 12:00:00+00'],
      [OID.timestamptz, '275759-12-31 23:59:59.999999+00', '275759-12-31 23:59:59.999999+00'],
    ];
    for (const [oid, text, expected, typmod] of cases) {
      expect([text, await applied(oid, text, typmod)]).toEqual([text, expected]);
    }
  });
});
