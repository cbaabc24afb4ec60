/**
 * The source side of the demo: a throwaway server with the workshop's retail_db, a least-privilege CDC user,
 * and the YAML that points Tributary at it. One per source type, so `npm run demo` and
 * `npm run demo -- --source postgresql` run the same workshop.
 */
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { startMariaDb } from '../testing/mariadb-server.js';
import { startPostgres } from '../testing/postgres-server.js';
import { mysqlRetailDatabase, postgresRetailDatabase, type RetailDatabase } from './retail-workshop.js';

export type DemoSourceType = 'mariadb' | 'postgresql';

export interface DemoSource {
  /** An admin connection to retail_db, for seeding, the scenario and counts. */
  readonly retail: RetailDatabase;
  readonly cdcPassword: string;
  /** The secret scope the password is stored under. */
  readonly secretScope: string;
  /** `connections:` and the pipeline's `objects:` of tributary.yaml. */
  readonly connectionYaml: string;
  readonly objectsYaml: string;
  /** Lines describing what the CDC user may do (no password). */
  readonly grants: readonly string[];
  close(): Promise<void>;
}

/** What is printed while a server starts. */
export function startingBanner(type: DemoSourceType): string {
  return type === 'mariadb'
    ? 'Starting a throwaway MariaDB (installs mariadb-server with apt-get when missing)'
    : 'Starting a throwaway PostgreSQL (installs postgresql with apt-get when missing)';
}

export async function startDemoSource(
  type: DemoSourceType,
  say: (line: string) => void,
): Promise<DemoSource> {
  return type === 'mariadb' ? startMariaDbSource(say) : startPostgresSource(say);
}

async function startMariaDbSource(say: (line: string) => void): Promise<DemoSource> {
  const server = await startMariaDb();
  say(`MariaDB listening on ${server.host}:${server.port}`);
  const admin = await mysql.createConnection({
    host: server.host,
    port: server.port,
    user: server.rootUser,
    password: server.rootPassword,
    charset: 'utf8mb4',
  });
  await admin.query('CREATE DATABASE retail_db CHARACTER SET utf8mb4');
  await admin.query('USE retail_db');
  const cdcPassword = randomBytes(18).toString('base64url');
  await admin.query("CREATE USER 'cdc_user'@'127.0.0.1' IDENTIFIED BY ?", [cdcPassword]);
  await admin.query("GRANT SELECT ON retail_db.* TO 'cdc_user'@'127.0.0.1'");
  await admin.query("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc_user'@'127.0.0.1'");
  const [grants] = await admin.query("SHOW GRANTS FOR 'cdc_user'@'127.0.0.1'");
  return {
    retail: mysqlRetailDatabase(admin),
    cdcPassword,
    secretScope: 'mysql_credentials',
    grants: (grants as Array<Record<string, string>>).map((g) =>
      String(Object.values(g)[0]).replace(/PASSWORD '[^']*'/, "PASSWORD '***'"),
    ),
    connectionYaml: `  retail_mysql_connection:
    type: mysql
    host: ${server.host}
    port: ${server.port}
    user: cdc_user
    password: "{{secrets/mysql_credentials/cdc_password}}"`,
    objectsYaml: `      - table:
          source_schema: retail_db
          source_table: customers
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration: { scd_type: SCD_TYPE_1 }
      - schema:
          source_schema: retail_db
          destination_catalog: retail_analytics
          destination_schema: bronze`,
    async close() {
      await admin.end().catch(() => undefined);
      await server.stop();
    },
  };
}

async function startPostgresSource(say: (line: string) => void): Promise<DemoSource> {
  const server = await startPostgres();
  say(`PostgreSQL listening on ${server.host}:${server.port}`);
  const connect = async (database: string) => {
    const client = new pg.Client({
      host: server.host,
      port: server.port,
      user: server.user,
      password: server.password,
      database,
    });
    await client.connect();
    return client;
  };
  const bootstrap = await connect('postgres');
  await bootstrap.query('CREATE DATABASE retail_db');
  await bootstrap.end();
  const admin = await connect('retail_db');
  const cdcPassword = randomBytes(18).toString('base64url');
  // DDL takes no parameters; the password is random base64url, so it needs no escaping.
  await admin.query(`CREATE ROLE cdc_user LOGIN REPLICATION PASSWORD '${cdcPassword}'`);
  await admin.query('ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO cdc_user');
  // An owner of the tables creates the publication, as docs/postgres.md asks; Tributary creates the slot.
  await admin.query('CREATE PUBLICATION tributary_retail_ingestion_gateway FOR ALL TABLES');
  return {
    retail: postgresRetailDatabase(admin),
    cdcPassword,
    secretScope: 'pg_credentials',
    grants: [
      'CREATE ROLE cdc_user LOGIN REPLICATION PASSWORD ***',
      'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO cdc_user',
      'CREATE PUBLICATION tributary_retail_ingestion_gateway FOR ALL TABLES',
    ],
    connectionYaml: `  retail_pg_connection:
    type: postgresql
    host: ${server.host}
    port: ${server.port}
    database: retail_db
    user: cdc_user
    password: "{{secrets/pg_credentials/cdc_password}}"`,
    objectsYaml: `      - table:
          source_catalog: retail_db
          source_schema: public
          source_table: customers
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration: { scd_type: SCD_TYPE_1 }
      - schema:
          source_catalog: retail_db
          source_schema: public
          destination_catalog: retail_analytics
          destination_schema: bronze`,
    async close() {
      await admin.end().catch(() => undefined);
      await server.stop();
    },
  };
}
