/**
 * The binlog a pipeline still needs is purged while Tributary is down: the next run stops with a distinct
 * error that says a full refresh is needed and why, and stages nothing.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { startMariaDb } from '../../src/testing/mariadb-server.js';
import { prepareShop, rootConnection, shopWorkspace } from '../harness/own-server.js';

it('reports SOURCE_HISTORY_LOST when the saved binlog position was purged', async () => {
  const server = await startMariaDb({ serverId: 104 });
  const parent = await mkdtemp(join(tmpdir(), 'tributary-purged-'));
  try {
    const password = await prepareShop(server, [
      'CREATE TABLE shop.t (id INT PRIMARY KEY)',
      'INSERT INTO shop.t VALUES (1)',
    ]);
    const work = await shopWorkspace(parent, server, password);
    const first = await work.cli(['run', 'p', '--once']);
    expect(first.code, first.stderr).toBe(0);

    // While Tributary is down: changes, then the logs holding them are rotated away and purged.
    await purgeWhileDown(server, 'INSERT INTO shop.t VALUES (2)');

    const staging = join(work.dir, 'lake', 'lake', 'landing', 'vol', 'gw');
    const segmentsBefore = await readdir(staging);
    const second = await work.cli(['run', 'p', '--once']);
    expect(second.code, second.stderr).toBe(1);
    expect(second.stderr).toContain('SOURCE_HISTORY_LOST');
    expect(second.stderr).toContain('no longer on the source');
    expect(second.stderr).toMatch(/binlog_expire_logs_seconds/);
    expect(second.stderr).toMatch(/snapshot/);
    expect(await readdir(staging)).toEqual(segmentsBefore);
  } finally {
    await server.stop();
    await rm(parent, { recursive: true, force: true });
  }
});

/** Makes a change, then rotates the binlog and purges every file before the current one. */
async function purgeWhileDown(
  server: Awaited<ReturnType<typeof startMariaDb>>,
  ...changes: string[]
): Promise<void> {
  const admin = await rootConnection(server);
  for (const change of changes) await admin.query(change);
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
}

it('with auto_full_refresh, snapshots again after a purge and carries on from the new position', async () => {
  const server = await startMariaDb({ serverId: 105 });
  const parent = await mkdtemp(join(tmpdir(), 'tributary-purged-'));
  try {
    const password = await prepareShop(server, [
      'CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(10))',
      "INSERT INTO shop.t VALUES (1, 'a'), (2, 'b')",
    ]);
    const work = await shopWorkspace(parent, server, password);
    const config = join(work.dir, 'tributary.yaml');
    await writeFile(
      config,
      (await readFile(config, 'utf8')).replace(
        '    gateway: gw\n',
        '    gateway: gw\n    auto_full_refresh: true\n',
      ),
    );
    expect((await work.cli(['run', 'p', '--once'])).code).toBe(0);

    // Lost while down: an insert, an update and a delete the pipeline never saw in the binlog.
    await purgeWhileDown(
      server,
      "INSERT INTO shop.t VALUES (3, 'c')",
      "UPDATE shop.t SET v = 'B' WHERE id = 2",
      'DELETE FROM shop.t WHERE id = 1',
    );
    const refreshed = await work.cli(['run', 'p', '--once']);
    expect(refreshed.code, refreshed.stderr).toBe(0);
    expect(refreshed.stderr).toContain('SOURCE_HISTORY_LOST');
    expect(refreshed.stderr).toContain('auto_full_refresh is on');
    const rows = async () =>
      JSON.parse(
        (await work.cli(['sql', 'SELECT id, v FROM lake.bronze.t ORDER BY id', '--format', 'json'])).stdout,
      ) as unknown[];
    expect(await rows()).toEqual([
      { id: 2, v: 'B' },
      { id: 3, v: 'c' },
    ]);

    // Streaming goes on from the new snapshot's position.
    const admin = await rootConnection(server);
    await admin.query("INSERT INTO shop.t VALUES (4, 'd')");
    await admin.end();
    const next = await work.cli(['run', 'p', '--once']);
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).not.toContain('SOURCE_HISTORY_LOST');
    expect(await rows()).toEqual([
      { id: 2, v: 'B' },
      { id: 3, v: 'c' },
      { id: 4, v: 'd' },
    ]);
  } finally {
    await server.stop();
    await rm(parent, { recursive: true, force: true });
  }
});
