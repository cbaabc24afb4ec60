/**
 * For tests that need a MariaDB of their own (to kill it, purge its binlog, or give it TLS): a `shop` database,
 * a least-privilege CDC user, and a working directory whose tributary.yaml captures `shop` into
 * `lake.bronze` through gateway `gw` and pipeline `p`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import type { MariaDbServer } from '../../src/testing/mariadb-server.js';
import { type CliRun, runCli } from './cli.js';

export function rootConnection(server: MariaDbServer): Promise<mysql.Connection> {
  return mysql.createConnection({
    host: server.host,
    port: server.port,
    user: server.rootUser,
    password: server.rootPassword,
    charset: 'utf8mb4',
  });
}

/** Creates database `shop` (run `ddl` in it) and the CDC user `cdc`@`127.0.0.1`; returns the user's password. */
export async function prepareShop(
  server: MariaDbServer,
  ddl: readonly string[],
  options: { requireSsl?: boolean } = {},
): Promise<string> {
  const password = randomBytes(12).toString('base64url');
  const admin = await rootConnection(server);
  try {
    await admin.query('CREATE DATABASE shop');
    for (const sql of ddl) await admin.query(sql);
    await admin.query(
      `CREATE USER 'cdc'@'127.0.0.1' IDENTIFIED BY ?${options.requireSsl ? ' REQUIRE SSL' : ''}`,
      [password],
    );
    await admin.query("GRANT SELECT ON shop.* TO 'cdc'@'127.0.0.1'");
    await admin.query("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'127.0.0.1'");
  } finally {
    await admin.end();
  }
  return password;
}

export interface ShopWorkspace {
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  cli(args: readonly string[]): Promise<CliRun>;
}

/** A working directory under `parent` with the shop pipeline's config; `connectionYaml` adds connection keys. */
export async function shopWorkspace(
  parent: string,
  server: MariaDbServer,
  password: string,
  connectionYaml = '',
): Promise<ShopWorkspace> {
  const dir = await mkdtemp(join(parent, 'work-'));
  await writeFile(
    join(dir, 'tributary.yaml'),
    `warehouse: ./lake
connections:
  src:
    type: mysql
    host: ${server.host}
    port: ${server.port}
    user: cdc
    password: "{{secrets/t/pw}}"
${connectionYaml}
gateways:
  gw: { connection: src, storage: lake.landing.vol }
pipelines:
  p:
    gateway: gw
    objects:
      - schema: { source_schema: shop, destination_catalog: lake, destination_schema: bronze }
`,
  );
  const env = { TRIBUTARY_HOME: join(dir, 'home'), TRIBUTARY_SECRET_T__PW: password };
  return { dir, env, cli: (args) => runCli(args, { cwd: dir, env }) };
}
