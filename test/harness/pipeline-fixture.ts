/**
 * A source database, a least-privilege CDC user, a working directory with tributary.yaml and a secret store:
 * everything one pipeline test needs, created fresh and removed afterwards.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Connection } from 'mysql2/promise';
import { inject } from 'vitest';
import { type CliOptions, type CliRun, runCli } from './cli.js';
import { adminConnection, type FreshDatabase, freshDatabase, type ServerAddress } from './mysql.js';

export interface PipelineFixture extends AsyncDisposable {
  readonly db: FreshDatabase;
  /** The CDC user, created for host 127.0.0.1. */
  readonly user: string;
  readonly password: string;
  readonly conn: Connection;
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  /** Runs the CLI in the fixture's directory with its TRIBUTARY_HOME. */
  cli(args: readonly string[], options?: Partial<CliOptions>): Promise<CliRun>;
  /** `tributary run p --once`, failing the test on a non-zero exit. */
  run(): Promise<CliRun>;
  /**
   * `tributary sql <sql> --format json`, parsed. `latest` reads newest table versions instead of the
   * pipeline's consistent cut (which a failing table holds back).
   */
  sql(statement: string, options?: { latest?: boolean }): Promise<Record<string, unknown>[]>;
}

export async function pipelineFixture(options: {
  prefix: string;
  /** A MariaDB of the test's own; the integration server by default. */
  server?: ServerAddress;
  /** SQL run on the source before the config is written (DDL, seed data). */
  setup?: (conn: Connection, database: string) => Promise<void>;
  /** YAML for `pipelines.p.objects`; `$DB` is replaced by the database name. */
  objects?: (database: string) => string;
  /** Extra YAML lines for the connection `src` (indented 4 spaces). */
  connection?: string;
  /** Extra YAML lines for the gateway `gw` (indented 4 spaces). */
  gateway?: string;
  /** Extra pipelines (YAML under `pipelines:`, indented 2 spaces); `$DB` is replaced by the database name. */
  pipelines?: (database: string) => string;
}): Promise<PipelineFixture> {
  const db = await freshDatabase(options.prefix, options.server);
  await options.setup?.(db.conn, db.name);
  const dir = await mkdtemp(join(tmpdir(), `tributary-${options.prefix}-`));
  const user = `cdc_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('base64url');
  const admin = await adminConnection({ ...options.server });
  try {
    await admin.query(`CREATE USER ?@'127.0.0.1' IDENTIFIED BY ?`, [user, password]);
    await admin.query(`GRANT SELECT ON \`${db.name}\`.* TO ?@'127.0.0.1'`, [user]);
    await admin.query(`GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO ?@'127.0.0.1'`, [user]);
  } finally {
    await admin.end();
  }
  const { host, port } = options.server ?? inject('mysql');
  const objects =
    options.objects?.(db.name) ??
    `      - schema:
          source_schema: ${db.name}
          destination_catalog: retail_analytics
          destination_schema: bronze`;
  await writeFile(
    join(dir, 'tributary.yaml'),
    `warehouse: ./lakehouse
connections:
  src:
    type: mysql
    host: ${host}
    port: ${port}
    user: ${user}
    password: "{{secrets/test/password}}"
${options.connection ?? ''}
gateways:
  gw:
    connection: src
    storage: retail_analytics.landing.ingestion_volume
${options.gateway ?? ''}
pipelines:
  p:
    gateway: gw
    objects:
${objects}
${options.pipelines?.(db.name) ?? ''}
`,
  );
  const env = { TRIBUTARY_HOME: join(dir, 'home'), TRIBUTARY_SECRET_TEST__PASSWORD: password };
  const cli = (args: readonly string[], extra: Partial<CliOptions> = {}) =>
    runCli(args, { cwd: dir, ...extra, env: { ...env, ...extra.env } });
  const fixture: PipelineFixture = {
    db,
    user,
    password,
    conn: db.conn,
    dir,
    env,
    cli,
    async run() {
      const r = await cli(['run', 'p', '--once']);
      if (r.code !== 0) throw new Error(`tributary run failed (${r.code ?? r.signal}):\n${r.stderr}`);
      return r;
    },
    async sql(statement, options = {}) {
      const r = await cli(['sql', statement, '--format', 'json', ...(options.latest ? ['--latest'] : [])]);
      if (r.code !== 0) throw new Error(`tributary sql failed (${r.code}):\n${r.stderr}`);
      return JSON.parse(r.stdout) as Record<string, unknown>[];
    },
    async [Symbol.asyncDispose]() {
      await db.drop();
      const cleanup = await adminConnection({ ...options.server });
      await cleanup.query(`DROP USER IF EXISTS ?@'127.0.0.1'`, [user]).finally(() => cleanup.end());
      await rm(dir, { recursive: true, force: true });
    },
  };
  return fixture;
}

/** Comparable text for a value from the source (mysql2, dateStrings) or from `tributary sql --format json`. */
export function comparable(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (Buffer.isBuffer(value)) return value.toString('hex');
  const s = String(value);
  // TIMESTAMPTZ text from DuckDB ends in +00; the source's DATETIME text has no zone.
  return s.replace(/\+00$/, '');
}

/** Rows of a source table and of its bronze twin, as comparable text, ordered by the key. */
export async function sourceAndBronze(
  f: PipelineFixture,
  table: string,
  key: string,
  columns?: readonly string[],
  options: { latest?: boolean } = {},
): Promise<{ source: Array<Record<string, string | null>>; bronze: Array<Record<string, string | null>> }> {
  const [rows] = await f.conn.query(`SELECT * FROM \`${f.db.name}\`.\`${table}\` ORDER BY \`${key}\``);
  const source = (rows as Array<Record<string, unknown>>).map((r) => {
    const out: Record<string, string | null> = {};
    for (const [k, v] of Object.entries(r)) if (!columns || columns.includes(k)) out[k] = comparable(v);
    return out;
  });
  const cols = Object.keys(source[0] ?? {}).map((c) => `"${c}"`);
  const bronzeRows = await f.sql(
    `SELECT ${cols.length > 0 ? cols.join(', ') : '*'} FROM retail_analytics.bronze."${table}" ORDER BY "${key}"`,
    options,
  );
  const bronze = bronzeRows.map((r) => {
    const out: Record<string, string | null> = {};
    for (const [k, v] of Object.entries(r)) out[k] = comparable(v);
    return out;
  });
  return { source, bronze };
}
