/**
 * A continuous `tributary run` survives its source going away: a killed and restarted MariaDB is a
 * transient failure, retried with backoff, and the changes made around the outage all reach bronze.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { startMariaDb } from '../../src/testing/mariadb-server.js';
import { CLI_PATH } from '../harness/cli.js';
import { prepareShop, rootConnection, shopWorkspace } from '../harness/own-server.js';

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
  const parent = await mkdtemp(join(tmpdir(), 'tributary-restart-'));
  try {
    const password = await prepareShop(server, [
      'CREATE TABLE shop.t (id INT PRIMARY KEY, v INT)',
      'INSERT INTO shop.t VALUES (1, 1)',
    ]);
    const { dir, env: workEnv, cli } = await shopWorkspace(parent, server, password);
    const env = { ...process.env, ...workEnv };
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
      const r = await cli(['sql', 'SELECT id, v FROM lake.bronze.t ORDER BY id', '--format', 'json']);
      return r.code === 0 ? (JSON.parse(r.stdout) as Array<{ id: number; v: number }>) : undefined;
    };
    try {
      await until('the snapshot', async () => ((await rows())?.length === 1 ? true : undefined));

      await server.kill();
      await until('a retry after the crash', async () => (/retry \d+ in/.test(stderr) ? true : undefined));
      await server.restart();
      const after = await rootConnection(server);
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
    await rm(parent, { recursive: true, force: true });
  }
});
