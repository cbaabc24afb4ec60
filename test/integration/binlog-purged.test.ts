/**
 * The binlog a pipeline still needs is purged while Tributary is down: the next run stops with a distinct
 * error that says a full refresh is needed and why, and stages nothing.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { expect, it } from 'vitest';
import { startMariaDb } from '../../src/testing/mariadb-server.js';
import { runCli } from '../harness/cli.js';

it('reports SOURCE_HISTORY_LOST when the saved binlog position was purged', async () => {
  const server = await startMariaDb({ serverId: 104 });
  const dir = await mkdtemp(join(tmpdir(), 'tributary-purged-'));
  try {
    const password = randomBytes(12).toString('base64url');
    const admin = await mysql.createConnection({
      host: server.host,
      port: server.port,
      user: 'root',
      password: server.rootPassword,
    });
    await admin.query('CREATE DATABASE shop');
    await admin.query('CREATE TABLE shop.t (id INT PRIMARY KEY)');
    await admin.query('INSERT INTO shop.t VALUES (1)');
    await admin.query("CREATE USER 'cdc'@'127.0.0.1' IDENTIFIED BY ?", [password]);
    await admin.query("GRANT SELECT ON shop.* TO 'cdc'@'127.0.0.1'");
    await admin.query("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'127.0.0.1'");
    await writeFile(
      join(dir, 'tributary.yaml'),
      `warehouse: ./lake
connections:
  src: { type: mysql, host: ${server.host}, port: ${server.port}, user: cdc, password: "{{secrets/t/pw}}" }
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
    const first = await runCli(['run', 'p', '--once'], { cwd: dir, env });
    expect(first.code, first.stderr).toBe(0);

    // While Tributary is down: changes, then the logs holding them are rotated away and purged.
    await admin.query('INSERT INTO shop.t VALUES (2)');
    await admin.query('FLUSH BINARY LOGS');
    const [[current]] = (await admin.query('SHOW MASTER STATUS')) as unknown as [[{ File: string }]];
    // MariaDB keeps a file until its binlog checkpoint has moved on, so the purge is repeated until it takes.
    for (let attempt = 0; ; attempt++) {
      await admin.query(`PURGE BINARY LOGS TO '${current.File}'`);
      const [logs] = (await admin.query('SHOW BINARY LOGS')) as unknown as [Array<{ Log_name: string }>];
      if (logs.every((l) => l.Log_name >= current.File)) break;
      if (attempt > 50) throw new Error(`the server kept ${logs.map((l) => l.Log_name).join(', ')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await admin.end();

    const segmentsBefore = await readdir(join(dir, 'lake', 'lake', 'landing', 'vol', 'gw'));
    const second = await runCli(['run', 'p', '--once'], { cwd: dir, env });
    expect(second.code, second.stderr).toBe(1);
    expect(second.stderr).toContain('SOURCE_HISTORY_LOST');
    expect(second.stderr).toContain('no longer on the source');
    expect(second.stderr).toMatch(/binlog_expire_logs_seconds/);
    expect(second.stderr).toMatch(/snapshot/);
    expect(await readdir(join(dir, 'lake', 'lake', 'landing', 'vol', 'gw'))).toEqual(segmentsBefore);
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
