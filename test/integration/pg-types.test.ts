/**
 * Every kind of PostgreSQL value in docs/types/postgres.md reaches bronze as the documented mapping says,
 * the same whether the snapshot read it or logical replication (pgoutput) sent it.
 *
 * One table of edge values: rows 1 to 5 exist before the first run (so they arrive by snapshot), and the
 * same rows are inserted again as 101 to 105 after it (so they arrive by replication). Each bronze column
 * is read back through `tributary sql` as DuckDB's text of it, and compared with the text the documented
 * mapping gives for the source value. Values the doc says become NULL (numeric NaN in a decimal column,
 * infinite dates and timestamps, years after 275759) must be NULL in bronze, and each run must print the
 * warning that names the column.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSnapshot } from '../../src/delta/snapshot.js';
import type { CliRun } from '../harness/cli.js';
import { type PgPipelineFixture, pgPipelineFixture } from '../harness/pg-pipeline-fixture.js';

/** Column, PostgreSQL type, the Delta type the doc gives it. */
const COLUMNS: readonly (readonly [string, string, string])[] = [
  ['b', 'boolean', 'boolean'],
  ['i2', 'smallint', 'short'],
  ['i4', 'integer', 'integer'],
  ['i8', 'bigint', 'long'],
  ['o', 'oid', 'long'],
  ['x8', 'xid8', 'decimal(20,0)'],
  ['f4', 'real', 'float'],
  ['f8', 'double precision', 'double'],
  ['n38', 'numeric(38,10)', 'decimal(38,10)'],
  ['n10', 'numeric(10,2)', 'decimal(10,2)'],
  ['nneg', 'numeric(3,-2)', 'decimal(5,0)'],
  ['nsmall', 'numeric(2,5)', 'decimal(5,5)'],
  ['nwide', 'numeric(50,10)', 'string'],
  ['nfree', 'numeric', 'string'],
  ['m', 'money', 'string'],
  ['c', 'char(5)', 'string'],
  ['s', 'text', 'string'],
  ['by', 'bytea', 'binary'],
  ['d', 'date', 'date'],
  ['t', 'time', 'string'],
  ['ttz', 'timetz', 'string'],
  ['ts', 'timestamp', 'timestamp'],
  ['tstz', 'timestamptz', 'timestamp'],
  ['iv', 'interval', 'string'],
  ['u', 'uuid', 'string'],
  ['j', 'json', 'string'],
  ['jb', 'jsonb', 'string'],
  ['ip', 'inet', 'string'],
  ['cn', 'cidr', 'string'],
  ['mac', 'macaddr', 'string'],
  ['bits', 'bit(5)', 'string'],
  ['vb', 'bit varying', 'string'],
  ['r', 'int4range', 'string'],
  ['tr', 'tstzrange', 'string'],
  ['ia', 'integer[]', 'string'],
  ['ta', 'text[]', 'string'],
  ['tsa', 'timestamptz[]', 'string'],
  ['e', 'mood', 'string'],
  ['dm', 'price', 'decimal(10,2)'],
  ['addr', 'address', 'string'],
];

/**
 * Per row: column → [SQL literal of the source value, DuckDB's text of the bronze value (null: NULL)].
 * Columns not named are NULL at the source and in bronze.
 */
type RowSpec = Readonly<Record<string, readonly [string, string | null]>>;

const ROWS: readonly RowSpec[] = [
  // 1: exact values at full precision.
  {
    b: ['true', 'true'],
    i2: ['-32768', '-32768'],
    i4: ['-2147483648', '-2147483648'],
    i8: ['-9223372036854775808', '-9223372036854775808'],
    o: ['4294967295', '4294967295'],
    x8: ["'18446744073709551615'", '18446744073709551615'],
    f4: ["'3.4028235e+38'", '3.4028235e+38'],
    f8: ["'5e-324'", '5e-324'],
    n38: ["'1234567890123456789012345678.0123456789'", '1234567890123456789012345678.0123456789'],
    n10: ["'-99999999.99'", '-99999999.99'],
    nneg: ['12345', '12300'],
    // DuckDB prints a decimal(5,5) without the leading zero.
    nsmall: ['0.00099', '.00099'],
    nwide: [
      "'1234567890123456789012345678901234567890.0123456789'",
      '1234567890123456789012345678901234567890.0123456789',
    ],
    nfree: ["'1180591620717411303424.000000000000000000001'", '1180591620717411303424.000000000000000000001'],
    m: ["'-1234.5'", '-$1,234.50'],
    c: ["'ab'", 'ab   '],
    s: ['E\'\\U0001F600 h\\u00e9llo "quoted" \\\\ back\\nslash\'', '😀 héllo "quoted" \\ back\nslash'],
    by: ["'\\x00ff5c22'", '00ff5c22'],
    d: ["'2024-02-29'", '2024-02-29'],
    t: ["'24:00:00'", '24:00:00'],
    ttz: ["'12:34:56.789+05:30'", '12:34:56.789+05:30'],
    ts: ["'2024-03-01 09:30:00.123456'", '2024-03-01 09:30:00.123456+00'],
    tstz: ["'2024-03-01 09:30:00.123456+05:30'", '2024-03-01 04:00:00.123456+00'],
    iv: ["'1 year 2 mons -3 days 04:05:06.789'", 'P1Y2M-3DT4H5M6.789S'],
    u: ["'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
    // json keeps the text as written; jsonb prints its own normal form, with 2^70 exact.
    j: [`'{"b": 1,   "a": [1180591620717411303424]}'`, '{"b": 1,   "a": [1180591620717411303424]}'],
    jb: [
      `'{"nested": {"s": "é", "a": [1, {"b": null}]}, "big": 1180591620717411303424}'`,
      '{"big": 1180591620717411303424, "nested": {"a": [1, {"b": null}], "s": "é"}}',
    ],
    ip: ["'192.168.1.5/24'", '192.168.1.5/24'],
    cn: ["'10.0.0.0/8'", '10.0.0.0/8'],
    mac: ["'08-00-2B-01-02-03'", '08:00:2b:01:02:03'],
    bits: ["B'10101'", '10101'],
    vb: ["B'1'", '1'],
    r: ["'[1,10]'", '[1,11)'],
    tr: ["'[2024-01-01 00:00+05,infinity)'", '["2023-12-31 19:00:00+00",infinity)'],
    ia: ["'{1,NULL,3}'", '[1,null,3]'],
    ta: [
      `'{"a b","NULL",NULL,"q\\"uote","",",comma","back\\\\slash"}'`,
      JSON.stringify(['a b', 'NULL', null, 'q"uote', '', ',comma', 'back\\slash']),
    ],
    tsa: [`'{"2024-01-01 00:00:00+05:30",infinity}'`, '["2023-12-31 18:30:00+00","infinity"]'],
    e: ["'happy'", 'happy'],
    dm: ['12.5', '12.50'],
    addr: [
      `ROW('Main "St"', 12345, '{a,NULL}')`,
      JSON.stringify({ street: 'Main "St"', zip: 12345, tags: ['a', null] }),
    ],
  },
  // 2: the other extremes, specials, and empty values.
  {
    b: ['false', 'false'],
    i2: ['32767', '32767'],
    i4: ['2147483647', '2147483647'],
    i8: ['9223372036854775807', '9223372036854775807'],
    o: ['0', '0'],
    x8: ["'0'", '0'],
    f4: ["'NaN'", 'nan'],
    f8: ["'Infinity'", 'inf'],
    n38: ['0', '0.0000000000'],
    // The doc: NaN in numeric(p,s) → NULL, with a warning.
    n10: ["'NaN'", null],
    nneg: ['99900', '99900'],
    nsmall: ['-0.00001', '-.00001'],
    nwide: ["'NaN'", 'NaN'],
    nfree: ["'NaN'", 'NaN'],
    m: ['0', '$0.00'],
    c: ["''", '     '],
    s: ["''", ''],
    by: ["''", ''],
    d: ["'infinity'", null],
    t: ["'00:00:00'", '00:00:00'],
    ttz: ["'00:00:00-12'", '00:00:00-12'],
    ts: ["'infinity'", null],
    tstz: ["'-infinity'", null],
    iv: ["'-0.5 sec'", 'PT-0.5S'],
    u: ["'00000000-0000-0000-0000-000000000000'", '00000000-0000-0000-0000-000000000000'],
    j: ["'[]'", '[]'],
    jb: [`'"a \\"quoted\\" string"'`, '"a \\"quoted\\" string"'],
    ip: ["'::1'", '::1'],
    cn: ["'2001:db8::/32'", '2001:db8::/32'],
    mac: ["'ff:ff:ff:ff:ff:ff'", 'ff:ff:ff:ff:ff:ff'],
    bits: ["B'00000'", '00000'],
    vb: ["B''", ''],
    r: ["'empty'", 'empty'],
    tr: ["'empty'", 'empty'],
    ia: ["'{}'", '[]'],
    ta: ["'{}'", '[]'],
    tsa: ["'{NULL}'", '[null]'],
    e: [`'a "quoted", label'`, 'a "quoted", label'],
    dm: ['0', '0.00'],
    addr: ['ROW(NULL, NULL, NULL)', JSON.stringify({ street: null, zip: null, tags: null })],
  },
  // 3: negative specials, BC dates and times, a single zero byte, nested arrays.
  {
    f4: ["'-Infinity'", '-inf'],
    f8: ["'NaN'", 'nan'],
    n38: ["'-0.0000000001'", '-0.0000000001'],
    nwide: ["'-1e-10'", '-0.0000000001'],
    nfree: ["'-Infinity'", '-Infinity'],
    by: ["'\\x00'", '00'],
    d: ["'0044-03-15 BC'", '0044-03-15 (BC)'],
    t: ["'23:59:59.999999'", '23:59:59.999999'],
    ttz: ["'23:59:59.999999+14'", '23:59:59.999999+14'],
    // DuckDB prints a BC timestamp with the era after the date.
    ts: ["'0001-12-31 23:59:59.5 BC'", '0001-12-31 (BC) 23:59:59.5+00'],
    tstz: ["'0044-03-15 12:00:00+01 BC'", '0044-03-15 (BC) 11:00:00+00'],
    iv: ["'-2562047788 hours -54.775808 sec'", 'PT-2562047788H-54.775808S'],
    ip: ["'10.1.2.3'", '10.1.2.3'],
    ia: ["'{{1,2},{3,4}}'", '[[1,2],[3,4]]'],
    ta: [`'{"{braces}","x,y"}'`, '["{braces}","x,y"]'],
    e: ["'sad'", 'sad'],
  },
  // 4: NULL everywhere.
  {},
  // 5: years Delta's writer cannot hold (NULL, with a warning), and a negative zero.
  {
    f8: ["'-0'", '-0.0'],
    d: ["'275760-01-01'", null],
    ts: ["'294276-12-31 23:59:59.999999'", null],
    tstz: ["'275760-09-13 00:00:00+00'", null],
    m: ["'92233720368547758.07'", '$92,233,720,368,547,758.07'],
  },
];

/** The warnings the doc promises for the rows above: one per column and kind of value. */
const WARNINGS = [
  'public.edge.n10: numeric NaN cannot be stored',
  'public.edge.d: date infinity cannot be stored',
  'public.edge.ts: timestamp infinity cannot be stored',
  'public.edge.tstz: timestamp with time zone -infinity cannot be stored',
  'public.edge.d: a date after the year 275759 cannot be stored',
  'public.edge.ts: a timestamp after the year 275759 cannot be stored',
  'public.edge.tstz: a timestamp after the year 275759 cannot be stored',
];

function insertSql(id: number, spec: RowSpec): string {
  const names = Object.keys(spec);
  const values = names.map((n) => (spec[n] as readonly [string, string | null])[0]);
  return `INSERT INTO edge (id${names.map((n) => `, ${n}`).join('')}) VALUES (${[id, ...values].join(', ')})`;
}

function expectedRow(spec: RowSpec): Record<string, string | null> {
  return Object.fromEntries(COLUMNS.map(([name]) => [name, spec[name]?.[1] ?? null]));
}

/** Every column as DuckDB's text of the bronze value; bytes as lower-case hex. */
const BRONZE_SELECT = `SELECT id, ${COLUMNS.map(([n, , delta]) =>
  delta === 'binary' ? `lower(hex("${n}")) AS "${n}"` : `CAST("${n}" AS VARCHAR) AS "${n}"`,
).join(', ')} FROM bronze.edge ORDER BY id`;

async function bronzeRows(f: PgPipelineFixture): Promise<Map<number, Record<string, unknown>>> {
  const rows = await f.sql(BRONZE_SELECT);
  return new Map(
    rows.map((r) => {
      const { id, ...rest } = r;
      return [Number(id), rest];
    }),
  );
}

describe('PostgreSQL types into Delta, by snapshot and by replication', () => {
  let f: PgPipelineFixture;
  let snapshotRun: CliRun;
  let streamRun: CliRun;

  beforeAll(async () => {
    f = await pgPipelineFixture({
      prefix: 'pg_types',
      setup: async (client) => {
        await client.query(`CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'a "quoted", label')`);
        await client.query('CREATE DOMAIN price AS numeric(10,2) CHECK (VALUE >= 0)');
        await client.query('CREATE TYPE address AS (street text, zip int, tags text[])');
        await client.query(
          `CREATE TABLE edge (id int PRIMARY KEY, ${COLUMNS.map(([n, t]) => `${n} ${t}`).join(', ')})`,
        );
        for (const [i, spec] of ROWS.entries()) await client.query(insertSql(i + 1, spec));
      },
    });
    // Neither Tributary nor the application session runs in UTC: the values must not depend on either.
    await f.client.query("SET TimeZone = 'Asia/Kolkata'");
    snapshotRun = await f.cli(['run', 'p', '--once'], { env: { TZ: 'America/New_York' } });
    expect(snapshotRun.code, snapshotRun.stderr).toBe(0);
    for (const [i, spec] of ROWS.entries()) await f.client.query(insertSql(101 + i, spec));
    streamRun = await f.cli(['run', 'p', '--once'], { env: { TZ: 'Pacific/Chatham' } });
    expect(streamRun.code, streamRun.stderr).toBe(0);
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('gives each column the Delta type the doc maps it to, nullable', async () => {
    const snapshot = await loadSnapshot(join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', 'edge'));
    const types = Object.fromEntries(snapshot.schema.fields.map((c) => [c.name, c.type]));
    expect(types).toEqual({
      id: 'integer',
      ...Object.fromEntries(COLUMNS.map(([n, , delta]) => [n, delta])),
      _commit_timestamp: 'timestamp',
    });
    expect(snapshot.schema.fields.every((c) => c.nullable)).toBe(true);
  });

  it('stages snapshot rows as the documented mapping of the source value', async () => {
    const bronze = await bronzeRows(f);
    for (const [i, spec] of ROWS.entries()) {
      expect(bronze.get(i + 1), `row ${i + 1} (snapshot)`).toEqual(expectedRow(spec));
    }
  });

  it('stages replicated rows exactly as the snapshot staged the same values', async () => {
    const bronze = await bronzeRows(f);
    expect([...bronze.keys()]).toEqual([1, 2, 3, 4, 5, 101, 102, 103, 104, 105]);
    for (const [i, spec] of ROWS.entries()) {
      expect(bronze.get(101 + i), `row ${101 + i} (replication)`).toEqual(bronze.get(i + 1));
      expect(bronze.get(101 + i), `row ${101 + i} (replication)`).toEqual(expectedRow(spec));
    }
  });

  it('keeps the source text of every pass-through column', async () => {
    // The source's own text, printed in the settings Tributary's sessions pin (UTC, ISO), for the columns the
    // doc says are staged "as is": bronze must hold exactly that.
    await f.client.query("SET TimeZone = 'UTC'");
    // format('%s') prints with the type's output function, as pgoutput and the snapshot read it (a cast to text
    // differs for char(n), whose padding it drops, and inet, which it gives a /128 mask).
    const passThrough = ['nwide', 'nfree', 'm', 'c', 's', 't', 'ttz', 'u', 'j', 'jb', 'ip', 'cn', 'mac'];
    passThrough.push('bits', 'vb', 'r', 'tr', 'e');
    const source = await f.client.query(
      `SELECT id, ${passThrough.map((n) => `CASE WHEN ${n} IS NOT NULL THEN format('%s', ${n}) END AS ${n}`).join(', ')} FROM edge ORDER BY id`,
    );
    const bronze = await bronzeRows(f);
    for (const row of source.rows as Record<string, string | null>[]) {
      const { id, ...values } = row;
      const staged = bronze.get(Number(id)) ?? {};
      expect(Object.fromEntries(passThrough.map((n) => [n, staged[n]])), `row ${id}`).toEqual(values);
    }
  });

  it('warns, naming the column, wherever a value became NULL, in the snapshot run and in the stream run', () => {
    for (const [run, r] of [
      ['snapshot', snapshotRun],
      ['stream', streamRun],
    ] as const) {
      for (const w of WARNINGS) expect(r.stderr, `${run} run: ${w}`).toContain(w);
      // Once per column and kind, not once per row.
      expect(r.stderr.split('numeric NaN cannot be stored').length - 1, run).toBe(1);
    }
  });
});
