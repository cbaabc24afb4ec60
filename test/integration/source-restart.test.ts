/**
 * A continuous `tributary run` survives its source going away: a killed and restarted MariaDB is a
 * transient failure, retried with backoff, and the changes made around the outage all reach bronze.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import { expect, it } from 'vitest';
import { startMariaDb } from '../../src/testing/mariadb-server.js';
import { CLI_PATH, runCli } from '../harness/cli.js';

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

it('keeps running through a source crash and restart, losing nothing', async () => {
  const server = await startMariaDb({ serverId: 103 });
  const dir = await mkdtemp(join(tmpdir(), 'tributary-restart-'));
  const connect = () =>
    mysql.createConnection({
      host: server.host,
      port: server.port,
      user: 'root',
      password: server.rootPassword,
      charset: 'utf8mb4',
    });
  try {
    const password = randomBytes(12).toString('base64url');
    const admin = await connect();
    await admin.query('CREATE DATABASE shop');
    await admin.query('CREATE TABLE shop.t (id INT PRIMARY KEY, v INT)');
    await admin.query('INSERT INTO shop.t VALUES (1, 1)');
    await admin.query("CREATE USER 'cdc'@'127.0.0.1' IDENTIFIED BY ?", [password]);
    await admin.query("GRANT SELECT ON shop.* TO 'cdc'@'127.0.0.1'");
    await admin.query("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'127.0.0.1'");
    await admin.end();
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
    const env = { ...process.env, TRIBUTARY_HOME: join(dir, 'home'), TRIBUTARY_SECRET_T__PW: password };
    const child = spawn(process.execPath, [CLI_PATH, 'run', 'p', '--interval', '0.2'], {
      cwd: dir,
      env,
      stdio: 'pipe',
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const rows = async () => {
      const r = await runCli(['sql', 'SELECT id, v FROM lake.bronze.t ORDER BY id', '--format', 'json'], {
        cwd: dir,
        env,
      });
      return r.code === 0 ? (JSON.parse(r.stdout) as Array<{ id: number; v: number }>) : undefined;
    };
    try {
      await until('the snapshot', async () => ((await rows())?.length === 1 ? true : undefined));

      await server.kill();
      await until('a retry after the crash', async () => (/retry \d+ in/.test(stderr) ? true : undefined));
      await server.restart();
      const after = await connect();
      await after.query('INSERT INTO shop.t VALUES (2, 2), (3, 3)');
      await after.query('UPDATE shop.t SET v = 10 WHERE id = 1');
      await after.end();

      const final = await until('the changes after the restart', async () => {
        const r = await rows();
        return r?.length === 3 && r[0]?.v === 10 ? r : undefined;
      });
      expect(final).toEqual([
        { id: 1, v: 10 },
        { id: 2, v: 2 },
        { id: 3, v: 3 },
      ]);
      expect(stderr).toContain('SOURCE_UNREACHABLE');
    } finally {
      child.kill('SIGTERM');
    }
    // SIGTERM stops at a safe point and exits cleanly.
    expect(await exited).toBe(0);
  } finally {
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
});
