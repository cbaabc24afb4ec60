/**
 * The PostgreSQL twin of pipeline-fixture.ts: a fresh source database, a least-privilege CDC role (LOGIN
 * REPLICATION, SELECT on the captured schema), a publication created by the "administrator" the way the
 * docs ask, and a working directory with tributary.yaml and the role's password as a secret.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { inject } from 'vitest';
import { type CliOptions, type CliRun, runCli } from './cli.js';
import { type FreshPgDatabase, freshPgDatabase, pgAdmin } from './postgres.js';

export interface PgPipelineFixture extends AsyncDisposable {
  readonly db: FreshPgDatabase;
  /** A superuser client of the source database. */
  readonly client: pg.Client;
  readonly user: string;
  readonly password: string;
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  cli(args: readonly string[], options?: Partial<CliOptions>): Promise<CliRun>;
  /** `tributary run p --once`, failing the test on a non-zero exit. */
  run(): Promise<CliRun>;
  /**
   * `tributary sql <sql> --format json`, parsed. `latest` reads newest table versions instead of the
   * pipeline's consistent cut (which a failing table holds back).
   */
  sql(statement: string, options?: { latest?: boolean }): Promise<Record<string, unknown>[]>;
}

export async function pgPipelineFixture(options: {
  prefix: string;
  /** SQL run on the source (as superuser) before the config is written. */
  setup?: (client: pg.Client, database: string) => Promise<void>;
  /** YAML for `pipelines.p.objects`; `$DB` is the database name. Default: every table of schema public. */
  objects?: (database: string) => string;
  /**
   * Who creates the publication: `admin` (default) creates `tributary_gw` FOR ALL TABLES as superuser before
   * the run, as an operator following the docs would; `tributary` leaves it to the CDC role, which is then
   * made owner of the schema's tables so that it may.
   */
  publication?: 'admin' | 'tributary';
  /** Extra YAML lines for the gateway `gw` (indented 4 spaces). */
  gateway?: string;
}): Promise<PgPipelineFixture> {
  const db = await freshPgDatabase(options.prefix);
  await options.setup?.(db.client, db.name);
  const dir = await mkdtemp(join(tmpdir(), `tributary-${options.prefix}-`));
  const user = `cdc_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(12).toString('base64url');
  await db.client.query(`CREATE ROLE ${user} LOGIN REPLICATION PASSWORD '${password}'`);
  await db.client.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${user}`);
  await db.client.query(`ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO ${user}`);
  if ((options.publication ?? 'admin') === 'admin') {
    await db.client.query('CREATE PUBLICATION tributary_gw FOR ALL TABLES');
  } else {
    await db.client.query(`GRANT CREATE ON DATABASE ${db.name} TO ${user}`);
    const tables = await db.client.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'");
    for (const { tablename } of tables.rows as { tablename: string }[]) {
      await db.client.query(`ALTER TABLE public."${tablename}" OWNER TO ${user}`);
    }
  }
  const { host, port } = inject('postgres');
  const objects =
    options.objects?.(db.name) ??
    `      - schema:
          source_catalog: ${db.name}
          source_schema: public
          destination_catalog: retail_analytics
          destination_schema: bronze`;
  await writeFile(
    join(dir, 'tributary.yaml'),
    `warehouse: ./lakehouse
connections:
  src:
    type: postgresql
    host: ${host}
    port: ${port}
    database: ${db.name}
    user: ${user}
    password: "{{secrets/test/password}}"
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
`,
  );
  const env = { TRIBUTARY_HOME: join(dir, 'home'), TRIBUTARY_SECRET_TEST__PASSWORD: password };
  const cli = (args: readonly string[], extra: Partial<CliOptions> = {}) =>
    runCli(args, { cwd: dir, ...extra, env: { ...env, ...extra.env } });
  return {
    db,
    client: db.client,
    user,
    password,
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
      const admin = await pgAdmin();
      try {
        await admin.query(`DROP ROLE IF EXISTS ${user}`);
      } finally {
        await admin.end();
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
