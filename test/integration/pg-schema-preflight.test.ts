/**
 * The PostgreSQL schema reader, type mapping and preflight on real servers: the shared PostgreSQL of the
 * integration run (wal_level=logical; a database and roles of this file's own), and a second one started
 * misconfigured on purpose (wal_level=replica, no free slot or WAL sender, TLS on).
 *
 * Where preflight prints a fix that is plain SQL, the test runs it and checks that the finding then passes:
 * the fix is exact, not merely plausible. Verdicts on server settings that cannot be changed here
 * (max_slot_wal_keep_size against a known WAL rate, a lost slot) are checked on the pure evaluation.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { TributaryError } from '../../src/core/errors.js';
import type { Finding, TableSelection } from '../../src/core/ports.js';
import {
  evaluatePreflight,
  gatherPreflightFacts,
  type PgPreflightContext,
  type PgPreflightFacts,
  runPostgresPreflight,
} from '../../src/sources/postgres/preflight.js';
import { listTableNames, readTableSchemas } from '../../src/sources/postgres/schema-reader.js';
import { intervalIso, PgTypeCatalog, timestamptzText } from '../../src/sources/postgres/type-mapping.js';
import { ensureProgram } from '../../src/testing/ensure-program.js';
import { type PostgresServer, startPostgres } from '../../src/testing/postgres-server.js';

const tag = randomBytes(4).toString('hex');
const DB = `psp_${tag}`;
const CDC = `psp_cdc_${tag}`;
const PLAIN = `psp_plain_${tag}`;
const SLOT = `psp_gw_${tag}`;
const STALE = `psp_stale_${tag}`;
const PUB = `psp_pub_${tag}`;
const rolePassword = randomBytes(12).toString('base64url');

const textTypes = { getTypeParser: () => (value: string) => value };
/** The settings Tributary's sessions use (connect.ts), and a session that differs in every one that matters. */
const PINNED =
  '-c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c TimeZone=UTC -c bytea_output=hex -c extra_float_digits=3';
const OTHER = '-c TimeZone=Asia/Kolkata -c IntervalStyle=postgres -c bytea_output=escape';

const SCHEMA = [
  'CREATE EXTENSION citext',
  `CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'a "quoted", label')`,
  'CREATE DOMAIN money2 AS numeric(10,2) CHECK (VALUE >= 0)',
  'CREATE DOMAIN int_list AS int[]',
  'CREATE TYPE address AS (street text, zip int, tags text[], at timestamptz)',
  `CREATE TABLE every_type (
     id int PRIMARY KEY, b bool, i8 int8, f8 float8, n numeric, n10_2 numeric(10,2), nneg numeric(3,-2),
     m money, c char(5), ci citext, by bytea, d date, ts timestamp, tstz timestamptz, iv interval, ttz timetz,
     jb jsonb, u uuid, ip inet, i4r int4range, tstzr tstzrange, ia int[], ta text[], tsa timestamptz[],
     e mood, dm money2, dl int_list, addr address, aa address[])`,
  `INSERT INTO every_type VALUES
     (1, true, -9223372036854775808, 'NaN', 'NaN', 'NaN', 12345, -92233720368547758.08, 'ab', 'CaSe',
      '\\x00ff5c22', '0044-03-15 BC', '2024-03-01 09:30:00.123456', '2024-03-01 09:30:00.123456+05:30',
      '1 year 2 mons -3 days 04:05:06.789', '12:34:56.789+05:30',
      '{"big": 1180591620717411303424, "f": 1.000000000000000000001}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      '192.168.1.5/24', '[1,10)', '[2024-01-01 00:00+05,infinity)', '{1,NULL,3}',
      '{"a b","NULL",NULL,"q\\"uote",""}', '{"2024-01-01 00:00:00+05:30",infinity}', 'happy', 12.5, '{1,2}',
      ROW('Main "St"', 12345, '{a,NULL}', '2024-01-01 00:00+02'),
      ARRAY[ROW('Main St, 1', 1, '{x}', NULL)::address, NULL]),
     (2, false, 9223372036854775807, '-Infinity', 2^70::numeric, 99999999.99, 0, 0, NULL, NULL, '\\x', 'infinity',
      'infinity', '-infinity', '-0.5 sec', NULL, NULL, NULL, NULL, 'empty', NULL, '{}', NULL, NULL, NULL, NULL,
      NULL, NULL, NULL),
     (3, NULL, 0, '5e-324', '-Infinity', -0.01, NULL, NULL, NULL, NULL, NULL, '4714-11-24 BC',
      '0001-12-31 23:59:59.5 BC', '0044-03-15 12:00:00+00 BC', '-2562047788 hours -54.775808 sec', NULL, NULL,
      NULL, NULL, NULL, NULL, '[0:1]={7,8}', NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
  'CREATE TABLE nopk (a int, b text)',
  'CREATE TABLE uq (a int NOT NULL, b int, c int NOT NULL, UNIQUE (b), CONSTRAINT zz UNIQUE (a), CONSTRAINT aa UNIQUE (c) DEFERRABLE)',
  'CREATE TABLE ident (a int NOT NULL, b int NOT NULL, UNIQUE (a), CONSTRAINT b_key UNIQUE (b))',
  'ALTER TABLE ident REPLICA IDENTITY USING INDEX b_key',
  'CREATE TABLE full_t (a int, b text)',
  'ALTER TABLE full_t REPLICA IDENTITY FULL',
  'CREATE TABLE nothing_t (id int PRIMARY KEY)',
  'ALTER TABLE nothing_t REPLICA IDENTITY NOTHING',
  'CREATE TABLE gen (id int PRIMARY KEY, x int, y int GENERATED ALWAYS AS (x * 2) STORED)',
  'CREATE TABLE part (id int, k date, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)',
  `CREATE TABLE part_2024 PARTITION OF part FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`,
  `CREATE TABLE part_2025 PARTITION OF part FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`,
  'CREATE VIEW v AS SELECT 1 AS one',
  'CREATE TABLE secret (id int PRIMARY KEY, owner text)',
  'ALTER TABLE secret ENABLE ROW LEVEL SECURITY',
  'CREATE SCHEMA "Mixed"',
  'CREATE TABLE "Mixed"."Orders" ("Id" int PRIMARY KEY, "Note" text)',
  // Something in the WAL for the slots to hold.
  'CREATE TABLE churn (id int, pad text)',
];

const RETENTION = { maxDowntimeHours: 4, maxPipelineHours: 2, bufferHours: 2 };

function selection(partial: Partial<TableSelection>): TableSelection {
  return { tables: [], schemas: [], ...partial };
}

function context(sel: TableSelection, extra: Partial<PgPreflightContext> = {}): PgPreflightContext {
  return { selection: sel, retention: RETENTION, signal: new AbortController().signal, slot: SLOT, ...extra };
}

function find(findings: readonly Finding[], check: string): Finding {
  const f = findings.find((x) => x.check === check);
  if (!f) throw new Error(`no finding ${check} in ${findings.map((x) => x.check).join(', ')}`);
  return f;
}

describe('PostgreSQL schema reading and preflight', () => {
  const server = inject('postgres');
  let admin: pg.Client;
  let clients: pg.Client[] = [];

  async function connect(
    user = server.user,
    password = server.password,
    options = PINNED,
    database = DB,
    parsers = false,
  ): Promise<pg.Client> {
    const client = new pg.Client({
      host: server.host,
      port: server.port,
      user,
      password,
      database,
      options,
      ...(parsers ? {} : { types: textTypes }),
    });
    // A connection the server drops (a stopped server, DROP DATABASE ... WITH (FORCE)) must not crash the run.
    client.on('error', () => undefined);
    await client.connect();
    clients.push(client);
    return client;
  }

  const endpoint = (user: string) => ({ host: server.host, port: server.port, database: DB, user });

  beforeAll(async () => {
    const root = await connect(server.user, server.password, PINNED, 'postgres');
    await root.query(`CREATE DATABASE ${DB}`);
    await root.query(`CREATE ROLE ${CDC} LOGIN REPLICATION PASSWORD '${rolePassword}'`);
    await root.query(`CREATE ROLE ${PLAIN} LOGIN PASSWORD '${rolePassword}'`);
    admin = await connect();
    for (const statement of SCHEMA) await admin.query(statement);
    await admin.query(`GRANT SELECT ON every_type, ident, secret TO ${CDC}`);
    await admin.query(`SELECT pg_create_logical_replication_slot('${STALE}', 'pgoutput')`);
    await admin.query(`SELECT pg_create_logical_replication_slot('${SLOT}', 'pgoutput')`);
    await admin.query(`INSERT INTO churn SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g`);
  });

  afterAll(async () => {
    for (const slot of [STALE, SLOT]) {
      await admin
        ?.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [
          slot,
        ])
        .catch(() => undefined);
    }
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
    clients = [];
    const root = new pg.Client({ ...server, database: 'postgres' });
    await root.connect();
    await root.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
    await root.query(`DROP ROLE IF EXISTS ${CDC}`);
    await root.query(`DROP ROLE IF EXISTS ${PLAIN}`);
    await root.end();
  });

  describe('schema reader', () => {
    it('reads a whole schema: tables and partitioned roots, keys by precedence, generated columns left out', async () => {
      const tables = await readTableSchemas(
        admin,
        selection({
          schemas: ['public'],
          primaryKeys: new Map([
            ['public.churn', ['id']],
            ['public.full_t', ['a']],
            ['public.nopk', ['a']],
          ]),
          columnFilters: new Map([['public.gen', { exclude: ['x', 'id'] }]]),
        }),
        new PgTypeCatalog(),
      );
      const byName = new Map(tables.map((t) => [t.table.id.table, t]));
      expect([...byName.keys()]).toEqual([
        'churn',
        'every_type',
        'full_t',
        'gen',
        'ident',
        'nopk',
        'nothing_t',
        'part',
        'secret',
        'uq',
      ]);
      const keys = Object.fromEntries(
        tables.map((t) => [
          t.table.id.table,
          [t.table.primaryKey.join(','), t.table.keySource ?? 'pk', t.replicaIdentity],
        ]),
      );
      expect(keys).toMatchObject({
        every_type: ['id', 'pk', 'default'],
        full_t: ['a', 'configured', 'full'],
        nopk: ['a', 'configured', 'default'],
        // The replica identity index wins over the other unique index (a), which sorts first.
        ident: ['b', 'unique:b_key', 'index'],
        // b is nullable and aa deferrable: neither identifies a row.
        uq: ['a', 'unique:zz', 'default'],
        part: ['id,k', 'pk', 'default'],
      });
      // The key is kept whatever the filter says; the generated column is never captured.
      expect(byName.get('gen')?.table.columns.map((c) => c.name)).toEqual(['id']);
      expect(byName.get('part')?.partitioned).toBe(true);
      const relid = await admin.query(`SELECT 'public.every_type'::regclass::oid::int8 AS oid`);
      expect(byName.get('every_type')?.relid).toBe(Number(relid.rows[0].oid));
      const columns = byName.get('every_type')?.table.columns ?? [];
      expect(columns.slice(0, 8)).toEqual([
        { name: 'id', type: 'integer', nullable: false, sourceType: 'integer' },
        { name: 'b', type: 'boolean', nullable: true, sourceType: 'boolean' },
        { name: 'i8', type: 'long', nullable: true, sourceType: 'bigint' },
        { name: 'f8', type: 'double', nullable: true, sourceType: 'double precision' },
        { name: 'n', type: 'string', nullable: true, sourceType: 'numeric' },
        { name: 'n10_2', type: 'decimal(10,2)', nullable: true, sourceType: 'numeric(10,2)' },
        { name: 'nneg', type: 'decimal(5,0)', nullable: true, sourceType: 'numeric(3,-2)' },
        { name: 'm', type: 'string', nullable: true, sourceType: 'money' },
      ]);
      expect(Object.fromEntries(columns.slice(8).map((c) => [c.name, c.type]))).toEqual({
        c: 'string',
        ci: 'string',
        by: 'binary',
        d: 'date',
        ts: 'timestamp',
        tstz: 'timestamp',
        iv: 'string',
        ttz: 'string',
        jb: 'string',
        u: 'string',
        ip: 'string',
        i4r: 'string',
        tstzr: 'string',
        ia: 'string',
        ta: 'string',
        tsa: 'string',
        e: 'string',
        dm: 'decimal(10,2)',
        dl: 'string',
        addr: 'string',
        aa: 'string',
      });
    });

    it('reads the same with the driver type parsers on', async () => {
      const parsed = await connect(server.user, server.password, PINNED, DB, true);
      const sel = selection({
        tables: [
          { schema: 'public', table: 'ident' },
          { schema: 'public', table: 'uq' },
          { schema: 'public', table: 'every_type' },
        ],
      });
      const a = await readTableSchemas(admin, sel, new PgTypeCatalog());
      const b = await readTableSchemas(parsed, sel, new PgTypeCatalog());
      expect(b.map((t) => t.table)).toEqual(a.map((t) => t.table));
      expect(b.map((t) => t.relid)).toEqual(a.map((t) => t.relid));
    });

    it('takes a named partition and mixed-case names as they are', async () => {
      const tables = await readTableSchemas(
        admin,
        selection({ tables: [{ schema: 'public', table: 'part_2024' }], schemas: ['Mixed'] }),
        new PgTypeCatalog(),
      );
      expect(tables.map((t) => [t.table.id.schema, t.table.id.table, t.table.primaryKey])).toEqual([
        ['Mixed', 'Orders', ['Id']],
        ['public', 'part_2024', ['id', 'k']],
      ]);
      expect(await listTableNames(admin, 'public')).toEqual([
        'churn',
        'every_type',
        'full_t',
        'gen',
        'ident',
        'nopk',
        'nothing_t',
        'part',
        'secret',
        'uq',
      ]);
      expect(await listTableNames(admin, 'Mixed')).toEqual(['Orders']);
    });

    it('refuses unknown tables and schemas, views, and tables without a key', async () => {
      const read = (sel: Partial<TableSelection>) =>
        readTableSchemas(admin, selection(sel), new PgTypeCatalog());
      const error = async (sel: Partial<TableSelection>) => {
        try {
          await read(sel);
        } catch (e) {
          if (e instanceof TributaryError) return { code: e.code, message: e.message, hint: e.hint };
          throw e;
        }
        throw new Error('expected an error');
      };
      expect(await error({ tables: [{ schema: 'public', table: 'Nope' }] })).toMatchObject({
        code: 'SOURCE_TABLE_NOT_FOUND',
        message: 'The source table "public.Nope" does not exist.',
        hint: expect.stringContaining('folds unquoted names to lower case'),
      });
      expect(await error({ schemas: ['nope'] })).toMatchObject({ code: 'SOURCE_TABLE_NOT_FOUND' });
      await expect(listTableNames(admin, 'nope')).rejects.toMatchObject({ code: 'SOURCE_TABLE_NOT_FOUND' });
      expect(await error({ tables: [{ schema: 'public', table: 'v' }] })).toMatchObject({
        code: 'SOURCE_TABLE_NOT_FOUND',
        message: expect.stringContaining('is not a table'),
      });
      expect(await error({ tables: [{ schema: 'public', table: 'nopk' }] })).toMatchObject({
        code: 'SOURCE_NO_PRIMARY_KEY',
        hint: expect.stringContaining('ALTER TABLE "public"."nopk" ADD PRIMARY KEY'),
      });
      expect(
        await error({
          tables: [{ schema: 'public', table: 'nopk' }],
          primaryKeys: new Map([['public.nopk', ['zz']]]),
        }),
      ).toMatchObject({ code: 'CONFIG_INVALID' });
    });
  });

  describe('values from the server', () => {
    it('stage the same whichever session settings printed them', async () => {
      const catalog = new PgTypeCatalog();
      const [table] = await readTableSchemas(
        admin,
        selection({ tables: [{ schema: 'public', table: 'every_type' }] }),
        catalog,
      );
      if (!table) throw new Error('no table');
      const staged = async (client: pg.Client) => {
        const result = await client.query('SELECT * FROM every_type ORDER BY id');
        return result.rows.map((row: Record<string, string | null>) =>
          Object.fromEntries(
            [...table.columns.values()].map((c) => {
              const text = row[c.name] ?? null;
              return [c.name, text === null ? null : c.convert(text)];
            }),
          ),
        );
      };
      const pinned = await staged(admin);
      const other = await staged(await connect(server.user, server.password, OTHER));
      expect(other).toEqual(pinned);
      const [first, second, third] = pinned;
      expect(first).toMatchObject({
        b: true,
        i8: '-9223372036854775808',
        f8: 'NaN',
        n: 'NaN',
        n10_2: null,
        nneg: '12300',
        m: '-$92,233,720,368,547,758.08',
        c: 'ab   ',
        ci: 'CaSe',
        d: '0044-03-15 (BC)',
        ts: '2024-03-01 09:30:00.123456',
        tstz: '2024-03-01 04:00:00.123456+00',
        iv: 'P1Y2M-3DT4H5M6.789S',
        ttz: '12:34:56.789+05:30',
        jb: '{"f": 1.000000000000000000001, "big": 1180591620717411303424}',
        tstzr: '["2023-12-31 19:00:00+00",infinity)',
        ia: '[1,null,3]',
        ta: '["a b","NULL",null,"q\\"uote",""]',
        tsa: '["2023-12-31 18:30:00+00","infinity"]',
        e: 'happy',
        dm: '12.50',
        dl: '[1,2]',
        addr: '{"street":"Main \\"St\\"","zip":12345,"tags":["a",null],"at":"2023-12-31 22:00:00+00"}',
        aa: '[{"street":"Main St, 1","zip":1,"tags":["x"],"at":null},null]',
      });
      expect(Buffer.from(first?.['by'] as Uint8Array).toString('hex')).toBe('00ff5c22');
      expect(second).toMatchObject({
        f8: '-Infinity',
        n: '1180591620717411303424.0000000000000000',
        n10_2: '99999999.99',
        d: null,
        ts: null,
        tstz: null,
        iv: 'PT-0.5S',
        i4r: 'empty',
        ia: '[]',
      });
      expect(third).toMatchObject({
        f8: '5e-324',
        n: '-Infinity',
        d: '4714-11-24 (BC)',
        ts: '0001-12-31 (BC) 23:59:59.5',
        tstz: '0044-03-15 (BC) 12:00:00+00',
        iv: 'PT-2562047788H-54.775808S',
        ia: '[7,8]',
      });
    });

    it('normalise random intervals and instants exactly as the server prints them in UTC and ISO 8601', async () => {
      await admin.query('SELECT setseed(0.42)');
      await admin.query('CREATE SCHEMA fuzz');
      await admin.query(`CREATE TABLE fuzz.samples AS
        SELECT g AS id,
          make_interval(years => (random()*20-10)::int * (random() < 0.3)::int,
                        months => (random()*30-15)::int * (random() < 0.5)::int,
                        days => (random()*80-40)::int * (random() < 0.5)::int,
                        hours => (random()*100-50)::int * (random() < 0.5)::int,
                        mins => (random()*130-65)::int * (random() < 0.5)::int,
                        secs => round((random()*200-100)::numeric, (random()*6)::int)::float8 * (random() < 0.6)::int) AS iv,
          timestamptz '4000-01-01 00:00:00+00 BC'
            + random() * (timestamptz '9999-12-31+00' - timestamptz '4000-01-01 00:00:00+00 BC')
            + make_interval(secs => round(random()::numeric, (random()*6)::int)::float8) AS tz
        FROM generate_series(1, 5000) g`);
      const query = 'SELECT iv, tz FROM fuzz.samples ORDER BY id';
      const reference = (await admin.query(query)).rows as { iv: string; tz: string }[];
      for (const zone of ['Asia/Kolkata', 'America/St_Johns', 'Europe/Amsterdam', 'Pacific/Chatham']) {
        const client = await connect(
          server.user,
          server.password,
          `-c IntervalStyle=postgres -c TimeZone=${zone}`,
        );
        const rows = (await client.query(query)).rows as { iv: string; tz: string }[];
        expect(rows.map((r) => intervalIso(r.iv))).toEqual(reference.map((r) => r.iv));
        expect(rows.map((r) => timestamptzText(r.tz))).toEqual(reference.map((r) => r.tz));
      }
    });
  });

  describe('preflight on a logical server', () => {
    const allTables = selection({
      schemas: ['public', 'nope'],
      tables: [
        { schema: 'public', table: 'v' },
        { schema: 'public', table: 'missing' },
      ],
      primaryKeys: new Map([
        ['public.full_t', ['a']],
        ['public.nopk', ['a']],
      ]),
    });

    it('reports server, slots, keys and the superuser, and every plain-SQL fix works', async () => {
      const findings = await runPostgresPreflight(admin, endpoint(server.user), context(allTables));
      expect(JSON.stringify(findings)).not.toContain(server.password);
      expect(find(findings, 'server_version').status).toBe('PASS');
      expect(find(findings, 'wal_level')).toMatchObject({ status: 'PASS', evidence: 'wal_level = logical' });
      expect(find(findings, 'replication_slots')).toMatchObject({
        status: 'PASS',
        evidence: expect.stringContaining(`including this gateway's ${SLOT}`),
      });
      expect(find(findings, 'wal_senders').status).toBe('PASS');
      // The server's default max_slot_wal_keep_size = -1: unlimited.
      expect(find(findings, 'wal_retention')).toMatchObject({
        status: 'WARN',
        evidence: expect.stringContaining('max_slot_wal_keep_size = -1'),
      });
      expect(find(findings, `slot:${SLOT}`)).toMatchObject({
        status: 'INFO',
        evidence: expect.stringMatching(/^inactive, wal_status = reserved, holding (at least )?\d+/),
      });
      const stale = find(findings, `inactive_slot:${STALE}`);
      expect(stale).toMatchObject({
        status: 'WARN',
        fix: expect.stringContaining(`SELECT pg_drop_replication_slot('${STALE}');`),
      });
      expect(find(findings, 'cdc_user_grants').status).toBe('PASS');
      expect(find(findings, 'cdc_user_least_privilege')).toMatchObject({
        status: 'WARN',
        evidence: `${server.user} is a superuser`,
      });
      expect(find(findings, 'row_security').status).toBe('PASS');
      expect(find(findings, 'tls')).toMatchObject({
        status: 'WARN',
        evidence: expect.stringContaining('not encrypted'),
      });

      const key = (t: string) => find(findings, `primary_key:public.${t}`);
      expect(key('every_type')).toMatchObject({
        status: 'PASS',
        evidence: 'primary key (id); REPLICA IDENTITY DEFAULT',
      });
      expect(key('ident')).toMatchObject({
        status: 'PASS',
        evidence: 'no primary key; unique index b_key (b); REPLICA IDENTITY INDEX',
      });
      expect(key('full_t')).toMatchObject({
        status: 'PASS',
        evidence: expect.stringContaining('REPLICA IDENTITY FULL (old rows are logged in full'),
      });
      expect(key('part')).toMatchObject({
        status: 'PASS',
        evidence: expect.stringContaining('(2 partition(s) checked)'),
      });
      // Run as a superuser, which may alter any table: Tributary would set the identity itself.
      expect(key('nothing_t')).toMatchObject({
        status: 'INFO',
        fix: 'Or run it yourself: ALTER TABLE "public"."nothing_t" REPLICA IDENTITY DEFAULT;',
      });
      // Run as a superuser, which may alter any table: Tributary would set the identity itself.
      expect(key('nopk')).toMatchObject({
        status: 'INFO',
        fix: 'Or run it yourself: ALTER TABLE "public"."nopk" REPLICA IDENTITY FULL;',
      });
      // Run as a superuser, which may alter any table: Tributary would set the identity itself.
      expect(key('uq')).toMatchObject({
        status: 'INFO',
        fix: 'Or run it yourself: ALTER TABLE "public"."uq" REPLICA IDENTITY USING INDEX "zz";',
      });
      expect(key('churn')).toMatchObject({
        status: 'FAIL',
        fix: expect.stringContaining('ALTER TABLE "public"."churn" ADD PRIMARY KEY'),
      });
      expect(find(findings, 'statistics:public.churn')).toMatchObject({
        status: 'INFO',
        fix: 'ANALYZE "public"."churn"; keeps the estimate (used for snapshot progress) current.',
      });
      expect(find(findings, 'schema_exists:nope').status).toBe('FAIL');
      expect(find(findings, 'table_exists:public.missing').status).toBe('FAIL');
      expect(find(findings, 'table_exists:public.v')).toMatchObject({
        status: 'FAIL',
        evidence: 'public.v is a view, not a table',
      });
      // Sections come in checklist order.
      const sections = findings.map((f) => f.section);
      expect(sections).toEqual([...sections].sort());

      for (const t of ['nothing_t', 'nopk', 'uq']) {
        await admin.query((key(t).fix ?? '').replace('Or run it yourself: ', ''));
      }
      await admin.query('ALTER TABLE churn ADD PRIMARY KEY (id)');
      await admin.query('ANALYZE churn');
      await admin.query(/SELECT pg_drop_replication_slot\('[^']+'\);/.exec(stale.fix ?? '')?.[0] ?? '');
      const after = await runPostgresPreflight(admin, endpoint(server.user), context(allTables));
      for (const t of ['nothing_t', 'nopk', 'uq', 'churn'])
        expect(find(after, `primary_key:public.${t}`).status).toBe('PASS');
      expect(find(after, 'statistics:public.churn').evidence).toBe('about 20000 rows (pg_class estimate)');
      expect(after.some((f) => f.check === `inactive_slot:${STALE}`)).toBe(false);
    });

    it('judges a partitioned table by its partitions', async () => {
      await admin.query('ALTER TABLE part_2025 REPLICA IDENTITY NOTHING');
      try {
        const findings = await runPostgresPreflight(
          admin,
          endpoint(server.user),
          context(selection({ tables: [{ schema: 'public', table: 'part' }] })),
        );
        expect(find(findings, 'primary_key:public.part')).toMatchObject({
          status: 'FAIL',
          evidence: expect.stringContaining('REPLICA IDENTITY NOTHING on partition public.part_2025'),
          fix: 'ALTER TABLE "public"."part_2025" REPLICA IDENTITY DEFAULT;',
        });
      } finally {
        await admin.query('ALTER TABLE part_2025 REPLICA IDENTITY DEFAULT');
      }
    });

    it('checks the CDC user: REPLICATION, SELECT, row security, and its fixes work', async () => {
      const sel = selection({
        tables: [
          { schema: 'public', table: 'every_type' },
          { schema: 'public', table: 'ident' },
          { schema: 'public', table: 'secret' },
          { schema: 'public', table: 'uq' },
        ],
      });
      const cdc = await connect(CDC, rolePassword);
      const findings = await runPostgresPreflight(cdc, endpoint(CDC), context(sel));
      expect(JSON.stringify(findings)).not.toContain(rolePassword);
      const grants = find(findings, 'cdc_user_grants');
      expect(grants).toMatchObject({
        status: 'FAIL',
        evidence: `${CDC}: REPLICATION; SELECT on 3 of 4 captured table(s); missing SELECT ON public.uq`,
        fix: `GRANT SELECT ON "public"."uq" TO "${CDC}";`,
      });
      expect(find(findings, 'cdc_user_least_privilege').status).toBe('PASS');
      const rls = find(findings, 'row_security');
      expect(rls).toMatchObject({ status: 'FAIL', fix: `ALTER ROLE "${CDC}" BYPASSRLS;` });
      await admin.query(grants.fix ?? '');
      await admin.query(rls.fix ?? '');
      const after = await runPostgresPreflight(cdc, endpoint(CDC), context(sel));
      expect(find(after, 'cdc_user_grants').status).toBe('PASS');
      expect(find(after, 'row_security')).toMatchObject({
        status: 'PASS',
        evidence: expect.stringContaining('has BYPASSRLS'),
      });

      const plain = await connect(PLAIN, rolePassword);
      const denied = await runPostgresPreflight(
        plain,
        endpoint(PLAIN),
        context(selection({ schemas: ['public'], primaryKeys: allTables.primaryKeys ?? new Map() })),
      );
      const plainGrants = find(denied, 'cdc_user_grants');
      expect(plainGrants.status).toBe('FAIL');
      expect(plainGrants.evidence).toContain(`${PLAIN}: no REPLICATION; SELECT on 0 of 10`);
      expect(plainGrants.fix).toBe(
        `ALTER ROLE "${PLAIN}" WITH REPLICATION; (on RDS and Aurora: GRANT rds_replication TO "${PLAIN}";) GRANT SELECT ON ALL TABLES IN SCHEMA "public" TO "${PLAIN}"; ALTER DEFAULT PRIVILEGES IN SCHEMA "public" GRANT SELECT ON TABLES TO "${PLAIN}";`,
      );
      for (const statement of (plainGrants.fix ?? '').replace(/ \(on RDS.*?\)/, '').split(/(?<=;) /)) {
        await admin.query(statement);
      }
      const granted = await runPostgresPreflight(
        plain,
        endpoint(PLAIN),
        context(selection({ schemas: ['public'] })),
      );
      expect(find(granted, 'cdc_user_grants').status).toBe('PASS');
    });

    it('checks the publication: missing, incomplete, and complete', async () => {
      const sel = selection({
        tables: [
          { schema: 'public', table: 'every_type' },
          { schema: 'public', table: 'ident' },
          { schema: 'public', table: 'part' },
        ],
      });
      const superuser = await runPostgresPreflight(
        admin,
        endpoint(server.user),
        context(sel, { publication: PUB }),
      );
      expect(find(superuser, 'publication')).toMatchObject({
        status: 'INFO',
        evidence: expect.stringContaining('Tributary does on the first run'),
      });
      const plain = await connect(PLAIN, rolePassword);
      const denied = find(
        await runPostgresPreflight(plain, endpoint(PLAIN), context(sel, { publication: PUB })),
        'publication',
      );
      expect(denied).toMatchObject({
        status: 'FAIL',
        fix: `As the table owner or a superuser: CREATE PUBLICATION "${PUB}" FOR TABLE "public"."every_type", "public"."ident", "public"."part" WITH (publish_via_partition_root = true);`,
      });

      await admin.query(
        `CREATE PUBLICATION ${PUB} FOR TABLE every_type (id, b), ident WHERE (a > 0), part WITH (publish = 'insert, update')`,
      );
      const incomplete = find(
        await runPostgresPreflight(admin, endpoint(server.user), context(sel, { publication: PUB })),
        'publication',
      );
      expect(incomplete.status).toBe('FAIL');
      expect(incomplete.evidence).toContain('does not publish delete');
      expect(incomplete.evidence).toContain('publish_via_partition_root = false');
      expect(incomplete.evidence).toContain('publishes public.every_type without i8, f8');
      expect(incomplete.evidence).toContain('publishes only the rows of public.ident WHERE (a > 0)');
      for (const statement of (incomplete.fix ?? '').split(/(?<=;) /)) await admin.query(statement);
      const complete = find(
        await runPostgresPreflight(admin, endpoint(server.user), context(sel, { publication: PUB })),
        'publication',
      );
      expect(complete).toMatchObject({
        status: 'PASS',
        evidence: 'publishes insert, update, delete, truncate; 3 table(s), via partition root',
      });
    });
  });

  describe('preflight on a misconfigured server', () => {
    let other: PostgresServer | undefined;
    let certDir = '';
    const otherClients: pg.Client[] = [];

    beforeAll(async () => {
      const openssl = await ensureProgram({
        binary: 'openssl',
        searchDirs: ['/usr/bin'],
        aptPackage: 'openssl',
      });
      certDir = mkdtempSync(join(tmpdir(), 'tributary-pg-tls-'));
      execFileSync(
        openssl,
        [
          'req',
          '-x509',
          '-newkey',
          'rsa:2048',
          '-nodes',
          '-days',
          '2',
          '-subj',
          '/CN=127.0.0.1',
          '-keyout',
          'server.key',
          '-out',
          'server.crt',
        ],
        { cwd: certDir, stdio: 'pipe' },
      );
      // PostgreSQL runs as `postgres` when we are root, and reads only a key it owns.
      if (process.getuid?.() === 0) {
        const id = (flag: string) =>
          Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim());
        for (const f of ['', 'server.key', 'server.crt']) chownSync(join(certDir, f), id('-u'), id('-g'));
      }
      other = await startPostgres({
        settings: {
          wal_level: 'replica',
          max_replication_slots: 1,
          max_wal_senders: 0,
          max_slot_wal_keep_size: '1GB',
          ssl: 'on',
          ssl_cert_file: join(certDir, 'server.crt'),
          ssl_key_file: join(certDir, 'server.key'),
        },
      });
    });
    afterAll(async () => {
      await Promise.all(otherClients.map((c) => c.end().catch(() => undefined)));
      await other?.stop();
      if (certDir) rmSync(certDir, { recursive: true, force: true });
    });

    it('fails wal_level, slots and senders, and passes TLS only when the session is encrypted', async () => {
      if (!other) throw new Error('no server');
      const open = async (ssl: boolean) => {
        const client = new pg.Client({
          host: other?.host,
          port: other?.port,
          user: other?.user,
          password: other?.password,
          database: 'postgres',
          types: textTypes,
          ...(ssl ? { ssl: { rejectUnauthorized: false } } : {}),
        });
        client.on('error', () => undefined);
        await client.connect();
        otherClients.push(client);
        return client;
      };
      const plainClient = await open(false);
      await plainClient.query(`SELECT pg_create_physical_replication_slot('held', true)`);
      const ep = { host: other.host, port: other.port, database: 'postgres', user: other.user };
      const ctx = context(selection({}));
      const findings = await runPostgresPreflight(plainClient, ep, ctx);
      expect(find(findings, 'wal_level')).toMatchObject({
        status: 'FAIL',
        evidence: 'wal_level = replica',
        fix: expect.stringContaining("ALTER SYSTEM SET wal_level = 'logical';"),
      });
      expect(find(findings, 'replication_slots')).toMatchObject({
        status: 'FAIL',
        evidence: `1 of max_replication_slots = 1 in use; this gateway's ${SLOT} is still to be created`,
        fix: expect.stringContaining('ALTER SYSTEM SET max_replication_slots = 3;'),
      });
      expect(find(findings, 'wal_senders')).toMatchObject({
        status: 'FAIL',
        evidence: '0 of max_wal_senders = 0 in use',
      });
      expect(find(findings, 'wal_retention')).toMatchObject({
        status: 'WARN',
        evidence: expect.stringContaining('max_slot_wal_keep_size = 1024 MB; the WAL rate is unknown'),
      });
      expect(find(findings, 'inactive_slot:held')).toMatchObject({
        status: 'WARN',
        evidence: expect.stringContaining('physical slot, inactive'),
      });
      expect(find(findings, 'tls')).toMatchObject({
        status: 'WARN',
        evidence: 'ssl = on; this connection is not encrypted',
      });

      const encrypted = await runPostgresPreflight(await open(true), ep, ctx);
      expect(find(encrypted, 'tls')).toMatchObject({
        status: 'PASS',
        evidence: expect.stringMatching(/^ssl = on; this connection is encrypted \(TLSv1\.\d, /),
      });
    });
  });

  describe('preflight verdicts on facts', () => {
    let facts: PgPreflightFacts;
    const ctx = () => context(selection({ tables: [{ schema: 'public', table: 'every_type' }] }));
    const verdict = (change: Partial<PgPreflightFacts>, check: string) =>
      find(evaluatePreflight({ ...facts, ...change }, endpoint(server.user), ctx()), check);

    beforeAll(async () => {
      facts = await gatherPreflightFacts(admin, ctx());
    });

    it('compares max_slot_wal_keep_size with the WAL the retention formula needs', () => {
      const gb = 2 ** 30;
      // 16 h at 1 GiB/h needs 16 GiB.
      const at = (keep: string) =>
        verdict(
          { settings: { ...facts.settings, max_slot_wal_keep_size: keep }, walBytesPerHour: gb },
          'wal_retention',
        );
      expect(at('16384')).toMatchObject({
        status: 'PASS',
        evidence: expect.stringContaining(
          'max_slot_wal_keep_size = 16384 MB; at least the WAL of the required 2 × (4 h downtime + 2 h pipeline + 2 h buffer) = 16 h',
        ),
      });
      expect(at('1024')).toMatchObject({
        status: 'FAIL',
        fix: expect.stringMatching(
          /^ALTER SYSTEM SET max_slot_wal_keep_size = '16GB'; SELECT pg_reload_conf\(\);/,
        ),
      });
      expect(at('-1')).toMatchObject({
        status: 'WARN',
        fix: expect.stringContaining("ALTER SYSTEM SET max_slot_wal_keep_size = '16GB'"),
      });
      const { max_slot_wal_keep_size: _, ...pg12 } = facts.settings;
      expect(
        verdict({ settings: pg12, version: '12.20', versionNum: 120020 }, 'wal_retention'),
      ).toMatchObject({
        status: 'WARN',
        evidence: expect.stringContaining('PostgreSQL 12.20 has no max_slot_wal_keep_size'),
      });
    });

    it('fails a lost slot, warns about one about to be lost, and stops at an unsupported version', () => {
      const own = (walStatus: string) => ({
        slots: [{ name: SLOT, type: 'logical', active: false, walStatus, retainedBytes: 5 * 2 ** 20 }],
      });
      // FAIL for `tributary preflight`; a run leaves it to capture (SOURCE_HISTORY_LOST), which a refresh resolves.
      expect(verdict(own('lost'), `slot:${SLOT}`)).toMatchObject({
        status: 'FAIL',
        fix: expect.stringContaining('tributary refresh'),
        recovery: 'resnapshot',
      });
      expect(verdict(own('unreserved'), `slot:${SLOT}`).status).toBe('WARN');
      expect(verdict(own('reserved'), `slot:${SLOT}`)).toMatchObject({
        status: 'INFO',
        evidence: 'inactive, wal_status = reserved, holding at least 4 MiB of WAL',
      });
      const old = evaluatePreflight(
        { ...facts, versionNum: 110022, version: '11.22' },
        endpoint(server.user),
        ctx(),
      );
      expect(old).toEqual([expect.objectContaining({ check: 'server_version', status: 'FAIL' })]);
    });

    it('asks for REPLICATION, or accepts rds_replication', () => {
      const user = { ...facts.user, superuser: false, replication: false };
      expect(verdict({ user }, 'cdc_user_grants').status).toBe('FAIL');
      expect(verdict({ user: { ...user, rdsReplication: true } }, 'cdc_user_grants')).toMatchObject({
        status: 'PASS',
        evidence: expect.stringContaining('member of rds_replication'),
      });
    });
  });
});
