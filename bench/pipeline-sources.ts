/**
 * The two sources of the pipeline benchmarks behind one interface: a throwaway MariaDB or PostgreSQL that the
 * bench starts itself, tables with ten mixed columns, the workload's transactions as SQL text, the source's
 * own client as the read limit, and workspaces (a directory with tributary.yaml, a least-privilege CDC user
 * whose password reaches the CLI through TRIBUTARY_SECRET_BENCH__PASSWORD, never argv).
 *
 * Both servers trade durability for speed the same way (PostgreSQL `fsync=off`, MariaDB
 * `innodb_flush_log_at_trx_commit=2`), so the generator is limited by CPU, not by this machine's disk.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { SESSION_OPTIONS } from '../src/sources/postgres/connect.js';
import { startMariaDb } from '../src/testing/mariadb-server.js';
import { startPostgres } from '../src/testing/postgres-server.js';
import { runDiscarding } from './measure.js';
import type { SourceKind } from './pipeline-config.js';
import { pgProgram, postmasterPid, rowValues, sleep, TABLE_COLUMNS } from './postgres-bench-support.js';

export interface TableRef {
  readonly schema: string;
  readonly table: string;
}

/** One transaction of the workload; every id named exists (or, for inserts, does not) so each hits its row. */
export interface ChangeSet {
  /** New ids `first, first + step, ...` (`count` of them). */
  readonly inserts?: { readonly first: number; readonly count: number; readonly step: number };
  readonly updates?: readonly number[];
  readonly deletes?: readonly number[];
  /** Sets the generator lane's progress row, so a reader of bronze knows which transactions it sees. */
  readonly progress?: { readonly table: TableRef; readonly lane: number; readonly seq: number };
}

/** A connection that runs one transaction's SQL text in a single round trip. */
export interface SqlRunner {
  run(sql: string): Promise<void>;
  close(): Promise<void>;
}

export interface Workspace {
  readonly id: number;
  readonly dir: string;
  /** TRIBUTARY_HOME and the CDC password for the CLI child. */
  readonly env: NodeJS.ProcessEnv;
  readonly warehouse: string;
  readonly tables: readonly TableRef[];
  bronzeRoot(t: TableRef): string;
  bronzeName(t: TableRef): string;
  dispose(): Promise<void>;
}

export interface WorkspaceOptions {
  /** `table_configuration.table_properties` of every table (e.g. deletion vectors). */
  readonly tableProperties?: Readonly<Record<string, string>>;
}

export interface BenchSource {
  readonly kind: SourceKind;
  readonly version: string;
  /** The process whose CPU (with its children's) is the server's. */
  readonly serverPid: number | undefined;
  /** A schema (MariaDB: database) the CDC user may read. */
  createSchema(schema: string): Promise<void>;
  /** A table of the ten mixed columns holding ids 1..rows, loaded outside what capture reads from the log. */
  loadTable(t: TableRef, rows: number): Promise<void>;
  /** The generator's progress rows: one per lane, `seq` 0. */
  createProgressTable(t: TableRef, lanes: number): Promise<void>;
  transactionSql(t: TableRef, change: ChangeSet): string;
  openRunner(): Promise<SqlRunner>;
  /** The source's own client reading every row of the table into /dev/null: the read limit. */
  readWithClient(t: TableRef): Promise<void>;
  count(t: TableRef): Promise<number>;
  /** `count(*)` and `sum(a)` of the table, to compare with bronze. */
  checksum(t: TableRef): Promise<{ rows: number; sumA: number }>;
  newWorkspace(tables: readonly TableRef[], options?: WorkspaceOptions): Promise<Workspace>;
  stop(): Promise<void>;
}

const CDC_USER = 'cdc';
const CATALOG = 'lake';
/** Rows per INSERT ... SELECT while loading, so no single statement holds millions of rows. */
const LOAD_CHUNK = 1_000_000;
let workspaces = 0;

export async function startSource(kind: SourceKind): Promise<BenchSource> {
  return kind === 'mariadb' ? MariaDbSource.start() : PostgresBenchSource.start();
}

// ---------------------------------------------------------------------------------------------------------
// Workspaces

interface WorkspaceSpec {
  readonly connection: string;
  readonly gateway: string;
  readonly tables: readonly TableRef[];
  readonly sourceCatalog?: string;
  readonly password: string;
  readonly options: WorkspaceOptions;
  readonly cleanup: () => Promise<void>;
}

async function writeWorkspace(id: number, spec: WorkspaceSpec): Promise<Workspace> {
  const dir = await mkdtemp(join(tmpdir(), `tributary-bench-ws${id}-`));
  const warehouse = join(dir, 'lakehouse');
  const properties = spec.options.tableProperties;
  const objects = spec.tables
    .map((t) =>
      [
        '      - table:',
        ...(spec.sourceCatalog ? [`          source_catalog: ${spec.sourceCatalog}`] : []),
        `          source_schema: ${t.schema}`,
        `          source_table: ${t.table}`,
        `          destination_catalog: ${CATALOG}`,
        '          destination_schema: bronze',
        ...(properties
          ? [
              '          table_configuration:',
              '            table_properties:',
              ...Object.entries(properties).map(([k, v]) => `              ${k}: "${v}"`),
            ]
          : []),
      ].join('\n'),
    )
    .join('\n');
  await writeFile(
    join(dir, 'tributary.yaml'),
    `warehouse: ./lakehouse
connections:
  src:
${spec.connection}
    user: ${CDC_USER}
    password: "{{secrets/bench/password}}"
gateways:
  gw:
    connection: src
    storage: ${CATALOG}.landing.staging
${spec.gateway}
pipelines:
  p:
    gateway: gw
    objects:
${objects}
`,
  );
  const bronzeRoot = (t: TableRef) => join(warehouse, CATALOG, 'bronze', t.table);
  return {
    id,
    dir,
    env: { TRIBUTARY_HOME: join(dir, 'home'), TRIBUTARY_SECRET_BENCH__PASSWORD: spec.password },
    warehouse,
    tables: spec.tables,
    bronzeRoot,
    bronzeName: (t) => `${CATALOG}.bronze.${t.table}`,
    async dispose() {
      await spec.cleanup();
      // BENCH_KEEP_WORKSPACE=1 leaves the workspace (staging, warehouse, log) for a look afterwards.
      if (process.env['BENCH_KEEP_WORKSPACE'] === '1') console.error(`workspace kept: ${dir}`);
      else await rm(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------------------------------------------------
// MariaDB

/** The SELECT list of a benchmark row from the Sequence engine's `seq` (the id). */
const MARIADB_ROW = `seq, seq % 1000, concat('name-', seq), (seq % 100000) / 100,
  timestamp'2024-05-06 07:08:09.123456' + interval seq second, seq / 7, repeat(concat('text ', seq, ' '), 3),
  seq * 1000, concat('s', seq % 97), date'2024-01-01' + interval (seq % 3650) day`;

class MariaDbSource implements BenchSource {
  readonly kind = 'mariadb' as const;
  readonly #password = randomBytes(12).toString('base64url');

  private constructor(
    readonly server: Awaited<ReturnType<typeof startMariaDb>>,
    readonly admin: mysql.Connection,
    readonly version: string,
    readonly serverPid: number | undefined,
  ) {}

  static async start(): Promise<MariaDbSource> {
    const server = await startMariaDb({
      serverId: 701,
      extraArgs: [
        '--innodb-buffer-pool-size=2G',
        '--innodb-log-file-size=1G',
        '--innodb-flush-log-at-trx-commit=2',
        '--max-binlog-size=1G',
      ],
    });
    const admin = await mysql.createConnection({
      host: server.host,
      port: server.port,
      user: 'root',
      password: server.rootPassword,
      multipleStatements: true,
    });
    const [rows] = await admin.query<mysql.RowDataPacket[]>('SELECT VERSION() AS v');
    const pid = Number(readFileSync(join(server.baseDir, 'pid'), 'utf8').trim());
    const source = new MariaDbSource(server, admin, `MariaDB ${rows[0]?.['v']}`, pid || undefined);
    await admin.query(`CREATE USER ${CDC_USER}@'127.0.0.1' IDENTIFIED BY ?`, [source.#password]);
    await admin.query(`GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO ${CDC_USER}@'127.0.0.1'`);
    return source;
  }

  async createSchema(schema: string): Promise<void> {
    await this.admin.query(`CREATE DATABASE IF NOT EXISTS \`${schema}\``);
    await this.admin.query(`GRANT SELECT ON \`${schema}\`.* TO ${CDC_USER}@'127.0.0.1'`);
  }

  async loadTable(t: TableRef, rows: number): Promise<void> {
    await this.admin.query(`CREATE TABLE ${this.#name(t)} (
      id BIGINT PRIMARY KEY, a INT, b VARCHAR(64), c DECIMAL(12,2), d DATETIME(6),
      e DOUBLE, f TEXT, g BIGINT UNSIGNED, h VARCHAR(20), i DATE)`);
    // Kept out of the binlog: a snapshot reads these rows, and the log stays small.
    await this.admin.query('SET SESSION sql_log_bin = 0');
    try {
      for (let first = 1; first <= rows; first += LOAD_CHUNK) {
        const last = Math.min(rows, first + LOAD_CHUNK - 1);
        await this.admin.query(
          `INSERT INTO ${this.#name(t)} SELECT ${MARIADB_ROW} FROM \`${t.schema}\`.seq_${first}_to_${last}`,
        );
      }
    } finally {
      await this.admin.query('SET SESSION sql_log_bin = 1');
    }
    await this.admin.query(`ANALYZE TABLE ${this.#name(t)}`);
  }

  async createProgressTable(t: TableRef, lanes: number): Promise<void> {
    await this.admin.query(`CREATE TABLE ${this.#name(t)} (lane INT PRIMARY KEY, seq BIGINT NOT NULL)`);
    const values = Array.from({ length: lanes }, (_, lane) => `(${lane}, 0)`).join(', ');
    await this.admin.query(`INSERT INTO ${this.#name(t)} VALUES ${values}`);
  }

  transactionSql(t: TableRef, change: ChangeSet): string {
    const name = this.#name(t);
    const statements = ['START TRANSACTION'];
    const ins = change.inserts;
    if (ins && ins.count > 0) {
      const last = ins.first + (ins.count - 1) * ins.step;
      const step = ins.step === 1 ? '' : `_step_${ins.step}`;
      statements.push(
        `INSERT INTO ${name} SELECT ${MARIADB_ROW} FROM \`${t.schema}\`.seq_${ins.first}_to_${last}${step}`,
      );
    }
    if (change.updates?.length) {
      statements.push(
        `UPDATE ${name} SET a = a + 1, c = c + 0.01, d = NOW(6), h = 'updated' WHERE id IN (${change.updates.join(',')})`,
      );
    }
    if (change.deletes?.length)
      statements.push(`DELETE FROM ${name} WHERE id IN (${change.deletes.join(',')})`);
    const p = change.progress;
    if (p) statements.push(`UPDATE ${this.#name(p.table)} SET seq = ${p.seq} WHERE lane = ${p.lane}`);
    statements.push('COMMIT');
    return statements.join(';\n');
  }

  async openRunner(): Promise<SqlRunner> {
    const conn = await mysql.createConnection({
      host: this.server.host,
      port: this.server.port,
      user: 'root',
      password: this.server.rootPassword,
      multipleStatements: true,
    });
    return {
      run: async (sql) => {
        await conn.query(sql);
      },
      close: () => conn.end(),
    };
  }

  readWithClient(t: TableRef): Promise<void> {
    const args = [
      `--host=${this.server.host}`,
      `--port=${this.server.port}`,
      '--user=root',
      '--quick',
      '--batch',
      '--skip-column-names',
      '-e',
      `SELECT * FROM ${this.#name(t)}`,
    ];
    return runDiscarding('mariadb', args, { MYSQL_PWD: this.server.rootPassword });
  }

  async count(t: TableRef): Promise<number> {
    const [rows] = await this.admin.query<mysql.RowDataPacket[]>(
      `SELECT COUNT(*) AS n FROM ${this.#name(t)}`,
    );
    return Number(rows[0]?.['n']);
  }

  async checksum(t: TableRef): Promise<{ rows: number; sumA: number }> {
    const [rows] = await this.admin.query<mysql.RowDataPacket[]>(
      `SELECT COUNT(*) AS n, SUM(a) AS s FROM ${this.#name(t)}`,
    );
    return { rows: Number(rows[0]?.['n']), sumA: Number(rows[0]?.['s']) };
  }

  newWorkspace(tables: readonly TableRef[], options: WorkspaceOptions = {}): Promise<Workspace> {
    const id = ++workspaces;
    return writeWorkspace(id, {
      connection: `    type: mysql\n    host: ${this.server.host}\n    port: ${this.server.port}`,
      // Each workspace is its own replica; two with one server id would disconnect each other.
      gateway: `    server_id: ${5000 + id}`,
      tables,
      password: this.#password,
      options,
      cleanup: async () => {},
    });
  }

  async stop(): Promise<void> {
    await this.admin.end().catch(() => undefined);
    await this.server.stop();
  }

  #name(t: TableRef): string {
    return `\`${t.schema}\`.\`${t.table}\``;
  }
}

// ---------------------------------------------------------------------------------------------------------
// PostgreSQL

const PG_DATABASE = 'bench';

class PostgresBenchSource implements BenchSource {
  readonly kind = 'postgresql' as const;
  readonly #password = randomBytes(12).toString('base64url');

  private constructor(
    readonly server: Awaited<ReturnType<typeof startPostgres>>,
    readonly admin: pg.Client,
    readonly version: string,
    readonly serverPid: number | undefined,
  ) {}

  static async start(): Promise<PostgresBenchSource> {
    const server = await startPostgres({
      settings: { autovacuum: 'off', shared_buffers: '512MB', max_wal_size: '8GB' },
    });
    const postgres = new pg.Client(PostgresBenchSource.#endpoint(server, 'postgres'));
    await postgres.connect();
    try {
      await postgres.query(`CREATE DATABASE ${PG_DATABASE}`);
    } finally {
      await postgres.end();
    }
    const admin = new pg.Client(PostgresBenchSource.#endpoint(server, PG_DATABASE));
    await admin.connect();
    const version = (await admin.query<{ v: string }>("SELECT current_setting('server_version') AS v"))
      .rows[0]?.v;
    const source = new PostgresBenchSource(
      server,
      admin,
      `PostgreSQL ${version}`,
      postmasterPid(server.baseDir),
    );
    await admin.query(`CREATE ROLE ${CDC_USER} LOGIN REPLICATION PASSWORD '${source.#password}'`);
    return source;
  }

  static #endpoint(server: Awaited<ReturnType<typeof startPostgres>>, database: string): pg.ClientConfig {
    return { host: server.host, port: server.port, user: server.user, password: server.password, database };
  }

  async createSchema(schema: string): Promise<void> {
    await this.admin.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await this.admin.query(`GRANT USAGE ON SCHEMA ${schema} TO ${CDC_USER}`);
    await this.admin.query(
      `ALTER DEFAULT PRIVILEGES IN SCHEMA ${schema} GRANT SELECT ON TABLES TO ${CDC_USER}`,
    );
  }

  async loadTable(t: TableRef, rows: number): Promise<void> {
    const name = this.#name(t);
    await this.admin.query(`CREATE TABLE ${name} (${TABLE_COLUMNS})`);
    for (let first = 1; first <= rows; first += LOAD_CHUNK) {
      const last = Math.min(rows, first + LOAD_CHUNK - 1);
      await this.admin.query(
        `INSERT INTO ${name} SELECT ${rowValues("timestamptz '2024-01-01 00:00:00+00' + g * interval '1.000001 second'")}
           FROM generate_series(${first}::int8, ${last}::int8) g`,
      );
    }
    // Hint bits and the visibility map are set now, so no read pays for them; nothing dirty is left to write.
    await this.admin.query(`VACUUM (FREEZE, ANALYZE) ${name}`);
    await this.admin.query('CHECKPOINT');
  }

  async createProgressTable(t: TableRef, lanes: number): Promise<void> {
    await this.admin.query(`CREATE TABLE ${this.#name(t)} (lane int4 PRIMARY KEY, seq int8 NOT NULL)`);
    await this.admin.query(
      `INSERT INTO ${this.#name(t)} SELECT g, 0 FROM generate_series(0, ${lanes - 1}) g`,
    );
  }

  transactionSql(t: TableRef, change: ChangeSet): string {
    const name = this.#name(t);
    const statements = ['BEGIN'];
    const ins = change.inserts;
    if (ins && ins.count > 0) {
      const last = ins.first + (ins.count - 1) * ins.step;
      statements.push(
        `INSERT INTO ${name} SELECT ${rowValues('clock_timestamp()')} FROM generate_series(${ins.first}::int8, ${last}::int8, ${ins.step}) g`,
      );
    }
    if (change.updates?.length) {
      statements.push(
        `UPDATE ${name} SET a = a + 1, b = b + 0.01, e = clock_timestamp(), g = NOT g WHERE id IN (${change.updates.join(',')})`,
      );
    }
    if (change.deletes?.length)
      statements.push(`DELETE FROM ${name} WHERE id IN (${change.deletes.join(',')})`);
    const p = change.progress;
    if (p) statements.push(`UPDATE ${this.#name(p.table)} SET seq = ${p.seq} WHERE lane = ${p.lane}`);
    statements.push('COMMIT');
    return statements.join(';\n');
  }

  async openRunner(): Promise<SqlRunner> {
    const client = new pg.Client(PostgresBenchSource.#endpoint(this.server, PG_DATABASE));
    await client.connect();
    return {
      run: async (sql) => {
        await client.query(sql);
      },
      close: () => client.end(),
    };
  }

  readWithClient(t: TableRef): Promise<void> {
    const s = this.server;
    const args = ['-h', s.host, '-p', String(s.port), '-U', s.user, '-d', PG_DATABASE, '-X', '-q'];
    args.push('-c', `COPY (SELECT * FROM ${this.#name(t)}) TO STDOUT`);
    return runDiscarding(pgProgram('psql'), args, { PGPASSWORD: s.password, PGOPTIONS: SESSION_OPTIONS });
  }

  async count(t: TableRef): Promise<number> {
    const { rows } = await this.admin.query<{ n: string }>(
      `SELECT count(*)::text AS n FROM ${this.#name(t)}`,
    );
    return Number(rows[0]?.n);
  }

  async checksum(t: TableRef): Promise<{ rows: number; sumA: number }> {
    const { rows } = await this.admin.query<{ n: string; s: string }>(
      `SELECT count(*)::text AS n, sum(a)::text AS s FROM ${this.#name(t)}`,
    );
    return { rows: Number(rows[0]?.n), sumA: Number(rows[0]?.s) };
  }

  async newWorkspace(tables: readonly TableRef[], options: WorkspaceOptions = {}): Promise<Workspace> {
    const id = ++workspaces;
    // Each workspace has its own slot and publication (made by the "administrator", as the docs ask), so a
    // fresh workspace takes a fresh snapshot and dropping it releases its WAL.
    const slot = `bench_ws${id}`;
    for (const t of tables) await this.admin.query(`GRANT SELECT ON ${this.#name(t)} TO ${CDC_USER}`);
    await this.admin.query(
      `CREATE PUBLICATION ${slot} FOR TABLE ${tables.map((t) => this.#name(t)).join(', ')}`,
    );
    const s = this.server;
    return writeWorkspace(id, {
      connection: `    type: postgresql\n    host: ${s.host}\n    port: ${s.port}\n    database: ${PG_DATABASE}`,
      gateway: `    slot_name: ${slot}\n    publication_name: ${slot}`,
      tables,
      sourceCatalog: PG_DATABASE,
      password: this.#password,
      options,
      cleanup: async () => {
        await this.#dropSlot(slot);
        await this.admin.query(`DROP PUBLICATION IF EXISTS ${slot}`);
        await rm(join(tmpdir(), 'tributary-pg-spool', `${PG_DATABASE}.${slot}`), {
          recursive: true,
          force: true,
        });
      },
    });
  }

  async stop(): Promise<void> {
    await this.admin.end().catch(() => undefined);
    await this.server.stop();
  }

  /** Drops a slot once its walsender (a CLI child that just exited) has let go of it. */
  async #dropSlot(slot: string): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { rows } = await this.admin.query<{ active: boolean }>(
        'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
        [slot],
      );
      if (rows.length === 0) return;
      if (!rows[0]?.active) {
        await this.admin.query('SELECT pg_drop_replication_slot($1)', [slot]);
        return;
      }
      if (Date.now() > deadline) throw new Error(`slot ${slot} stayed active`);
      await sleep(50);
    }
  }

  #name(t: TableRef): string {
    return `${t.schema}.${t.table}`;
  }
}
