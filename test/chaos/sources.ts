/**
 * The two source flavours of the chaos suite behind one shape: a server this process owns (so it may be
 * killed, restarted and have its log purged), and per scenario a fresh database with the suite's two tables,
 * a least-privilege CDC user and the YAML that points a pipeline at it.
 */
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { type LocalMariaDbServer, startMariaDb } from '../../src/testing/mariadb-server.js';
import { type PostgresServer, startPostgres } from '../../src/testing/postgres-server.js';

export type Flavor = 'mariadb' | 'postgresql';

export const TABLES = {
  customers: ['id', 'name', 'tier'],
  orders: ['id', 'customer_id', 'amount', 'note'],
} as const;
export type TableName = keyof typeof TABLES;

/** A connection to the source as its administrator. Values come back as text-comparable scalars. */
export interface SqlClient {
  query(sql: string): Promise<Array<Record<string, unknown>>>;
  close(): Promise<void>;
}

/** One scenario's database on the flavour's server. */
export interface ChaosDatabase {
  readonly flavor: Flavor;
  readonly name: string;
  /** Secret value of the CDC user; handed to Tributary through the environment only. */
  readonly cdcPassword: string;
  /** `connections.src` for a pipeline reaching the source at `endpoint` (the server, or a proxy). */
  connectionYaml(endpoint: { host: string; port: number }): string;
  /** Extra lines for the gateway (the PostgreSQL slot, which is per server, is named per scenario). */
  readonly gatewayYaml: string;
  /** `pipelines.p.objects`: the whole database (schema) into lake.bronze. */
  readonly objectsYaml: string;
  connect(): Promise<SqlClient>;
  /**
   * Loses the log the pipeline still needs: binlogs purged (MariaDB, either way); the slot dropped, as an
   * operator or a failover would, or invalidated by writing more WAL than max_slot_wal_keep_size (PostgreSQL).
   */
  loseHistory(how?: 'drop' | 'exceed-retention'): Promise<void>;
  drop(): Promise<void>;
}

export interface ChaosServer extends AsyncDisposable {
  readonly flavor: Flavor;
  readonly host: string;
  readonly port: number;
  kill(): Promise<void>;
  restart(): Promise<void>;
  createDatabase(scenario: string): Promise<ChaosDatabase>;
  /** Renders a workload operation in this flavour's SQL. */
  readonly dialect: Dialect;
}

export interface Dialect {
  upsert(table: TableName, values: readonly (number | string)[]): string;
  /** Moves a row to another key unless that key is taken: a delete and an insert to CDC. */
  moveKey(table: TableName, from: number, to: number): string;
}

const literal = (v: number | string) => (typeof v === 'number' ? String(v) : `'${v.replace(/'/g, "''")}'`);

function columnsAndValues(table: TableName, values: readonly (number | string)[]): string {
  return `${table} (${TABLES[table].join(', ')}) VALUES (${values.map(literal).join(', ')})`;
}

const DDL = [
  'CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(64) NOT NULL, tier INT NOT NULL)',
  'CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT NOT NULL, amount INT NOT NULL, note VARCHAR(200))',
];

/** Seed rows, so that the first run's snapshot has chunks to be killed in. */
export const SEED = { customers: 600, orders: 3000 } as const;

function seedStatements(): string[] {
  const customers = Array.from({ length: SEED.customers }, (_, i) => `(${i + 1}, 'c-${i + 1}', ${i % 5})`);
  const orders = Array.from(
    { length: SEED.orders },
    (_, i) => `(${i + 1}, ${1 + (i % SEED.customers)}, ${(i * 37) % 1000}, 'seed-${i + 1}')`,
  );
  return [
    `INSERT INTO customers (id, name, tier) VALUES ${customers.join(', ')}`,
    `INSERT INTO orders (id, customer_id, amount, note) VALUES ${orders.join(', ')}`,
  ];
}

const scenarioName = (scenario: string) => `chaos_${scenario.replace(/[^a-z0-9]/g, '_')}`;

export async function startChaosMariaDb(): Promise<ChaosServer> {
  const server: LocalMariaDbServer = await startMariaDb({ serverId: 301 });
  const admin = (database?: string) =>
    mysql.createConnection({
      host: server.host,
      port: server.port,
      user: server.rootUser,
      password: server.rootPassword,
      charset: 'utf8mb4',
      ...(database === undefined ? {} : { database }),
    });
  const client = async (database?: string): Promise<SqlClient> => {
    const conn = await admin(database);
    conn.on('error', () => undefined);
    return {
      query: async (sql) => (await conn.query(sql))[0] as Array<Record<string, unknown>>,
      close: () => conn.end().catch(() => undefined),
    };
  };
  return {
    flavor: 'mariadb',
    host: server.host,
    port: server.port,
    kill: () => server.kill(),
    restart: () => server.restart(),
    [Symbol.asyncDispose]: () => server.stop(),
    dialect: {
      upsert: (table, values) =>
        `INSERT INTO ${columnsAndValues(table, values)} ON DUPLICATE KEY UPDATE ${TABLES[table]
          .slice(1)
          .map((c) => `${c} = VALUES(${c})`)
          .join(', ')}`,
      moveKey: (table, from, to) => `UPDATE IGNORE ${table} SET id = ${to} WHERE id = ${from}`,
    },
    async createDatabase(scenario) {
      const name = scenarioName(scenario);
      const user = `cdc_${randomBytes(3).toString('hex')}`;
      const password = randomBytes(12).toString('base64url');
      const root = await client();
      try {
        await root.query(`CREATE DATABASE ${name}`);
        const db = await client(name);
        for (const sql of [...DDL, ...seedStatements()]) await db.query(sql);
        await db.close();
        await root.query(`CREATE USER '${user}'@'127.0.0.1' IDENTIFIED BY '${password}'`);
        await root.query(`GRANT SELECT ON ${name}.* TO '${user}'@'127.0.0.1'`);
        await root.query(`GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '${user}'@'127.0.0.1'`);
      } finally {
        await root.close();
      }
      return {
        flavor: 'mariadb',
        name,
        cdcPassword: password,
        connectionYaml: (endpoint) =>
          `    type: mysql\n    host: ${endpoint.host}\n    port: ${endpoint.port}\n    user: ${user}\n    password: "{{secrets/chaos/pw}}"\n`,
        gatewayYaml: '',
        objectsYaml: `      - schema: { source_schema: ${name}, destination_catalog: lake, destination_schema: bronze }\n`,
        connect: () => client(name),
        async loseHistory() {
          const root = await client();
          try {
            // Rotate so that every binlog holding the pipeline's position becomes purgeable, then purge.
            await root.query('FLUSH BINARY LOGS');
            const current = String((await root.query('SHOW MASTER STATUS'))[0]?.['File']);
            // MariaDB keeps a file until its binlog checkpoint has moved on, so the purge is repeated.
            for (let attempt = 0; ; attempt++) {
              await root.query(`PURGE BINARY LOGS TO '${current}'`);
              const logs = (await root.query('SHOW BINARY LOGS')).map((l) => String(l['Log_name']));
              if (logs.every((name) => name >= current)) break;
              if (attempt > 50) throw new Error(`the server kept ${logs.join(', ')}`);
              await new Promise((resolve) => setTimeout(resolve, 200));
            }
          } finally {
            await root.close();
          }
        },
        async drop() {
          const root = await client().catch(() => undefined);
          if (!root) return;
          await root.query(`DROP DATABASE IF EXISTS ${name}`).catch(() => undefined);
          await root.query(`DROP USER IF EXISTS '${user}'@'127.0.0.1'`).catch(() => undefined);
          await root.close();
        },
      };
    },
  };
}

export async function startChaosPostgres(): Promise<ChaosServer> {
  // Small enough that a test can outgrow it in seconds; the chaos load never comes near it.
  const server: PostgresServer = await startPostgres({ settings: { max_slot_wal_keep_size: '64MB' } });
  const client = async (database = 'postgres'): Promise<SqlClient> => {
    const c = new pg.Client({
      host: server.host,
      port: server.port,
      user: server.user,
      password: server.password,
      database,
      types: { getTypeParser: () => (value: string) => value },
    });
    c.on('error', () => undefined);
    await c.connect();
    return {
      query: async (sql) => (await c.query(sql)).rows as Array<Record<string, unknown>>,
      close: () => c.end().catch(() => undefined),
    };
  };
  return {
    flavor: 'postgresql',
    host: server.host,
    port: server.port,
    kill: () => server.kill(),
    restart: () => server.restart(),
    [Symbol.asyncDispose]: () => server.stop(),
    dialect: {
      upsert: (table, values) =>
        `INSERT INTO ${columnsAndValues(table, values)} ON CONFLICT (id) DO UPDATE SET ${TABLES[table]
          .slice(1)
          .map((c) => `${c} = EXCLUDED.${c}`)
          .join(', ')}`,
      moveKey: (table, from, to) =>
        `UPDATE ${table} SET id = ${to} WHERE id = ${from} AND NOT EXISTS (SELECT 1 FROM ${table} WHERE id = ${to})`,
    },
    async createDatabase(scenario) {
      const name = scenarioName(scenario);
      const user = `cdc_${randomBytes(3).toString('hex')}`;
      const password = randomBytes(12).toString('base64url');
      const slot = `${name}_slot`;
      const root = await client();
      try {
        await root.query(`CREATE DATABASE ${name}`);
        await root.query(`CREATE ROLE ${user} LOGIN REPLICATION PASSWORD '${password}'`);
      } finally {
        await root.close();
      }
      const db = await client(name);
      try {
        for (const sql of [...DDL, ...seedStatements()]) await db.query(sql);
        await db.query(`GRANT SELECT ON ALL TABLES IN SCHEMA public TO ${user}`);
        await db.query('CREATE PUBLICATION tributary_gw FOR ALL TABLES');
      } finally {
        await db.close();
      }
      return {
        flavor: 'postgresql',
        name,
        cdcPassword: password,
        connectionYaml: (endpoint) =>
          `    type: postgresql\n    host: ${endpoint.host}\n    port: ${endpoint.port}\n    database: ${name}\n    user: ${user}\n    password: "{{secrets/chaos/pw}}"\n`,
        gatewayYaml: `    slot_name: ${slot}\n`,
        objectsYaml: `      - schema: { source_catalog: ${name}, source_schema: public, destination_catalog: lake, destination_schema: bronze }\n`,
        connect: () => client(name),
        async loseHistory(how = 'drop') {
          const root = await client();
          try {
            if (how === 'drop') {
              await root.query(`SELECT pg_drop_replication_slot('${slot}')`);
              return;
            }
            // WAL is per server: a filler table outside the captured database writes it.
            await root.query('CREATE TABLE IF NOT EXISTS wal_filler (id int, pad text)');
            for (let attempt = 0; ; attempt++) {
              await root.query(
                "INSERT INTO wal_filler SELECT g, repeat('x', 1000) FROM generate_series(1, 50000) g",
              );
              await root.query('TRUNCATE wal_filler');
              await root.query('SELECT pg_switch_wal()');
              await root.query('CHECKPOINT');
              const [state] = await root.query(
                `SELECT wal_status FROM pg_replication_slots WHERE slot_name = '${slot}'`,
              );
              if (state?.['wal_status'] === 'lost') return;
              if (attempt > 20) throw new Error(`slot ${slot} is still ${String(state?.['wal_status'])}`);
            }
          } finally {
            await root.close();
          }
        },
        async drop() {
          const root = await client().catch(() => undefined);
          if (!root) return;
          await root
            .query(
              `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${slot}'`,
            )
            .catch(() => undefined);
          await root.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
          await root.query(`DROP ROLE IF EXISTS ${user}`).catch(() => undefined);
          await root.close();
        },
      };
    },
  };
}
