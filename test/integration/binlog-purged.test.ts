/**
 * The binlog a pipeline still needs is purged while Tributary is down: the next run stops with a distinct
 * error that says a full refresh is needed and why, and stages nothing.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
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
    const admin = await rootConnection(server);
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
