/**
 * A changed server identity that capture cannot follow stops the run with SOURCE_HISTORY_LOST (retry
 * `resnapshot`), a message naming both servers and why, and a hint to do a full refresh; nothing is staged.
 * - the saved position has no GTID state, so nothing says where to continue on the other server;
 * - the saved GTID state is not in the other server's binlog (it is not a replica of the old one);
 * - the other server never logged the replication domain of the saved GTID state.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type MariaDbServer, startMariaDb } from '../../src/testing/mariadb-server.js';
import { rootConnection, type ShopWorkspace, shopWorkspace } from '../harness/own-server.js';

const password = randomBytes(12).toString('base64url');

/** Database `shop` with table `t`, and the CDC user; `logged: false` keeps all of it out of the binlog. */
async function prepare(server: MariaDbServer, options: { logged: boolean; rows: number }): Promise<void> {
  const admin = await rootConnection(server);
  try {
    if (!options.logged) await admin.query('SET SESSION sql_log_bin = 0');
    await admin.query('CREATE DATABASE shop');
    await admin.query('CREATE TABLE shop.t (id INT PRIMARY KEY)');
    for (let id = 1; id <= options.rows; id++) await admin.query('INSERT INTO shop.t VALUES (?)', [id]);
    await admin.query("CREATE USER 'cdc'@'127.0.0.1' IDENTIFIED BY ?", [password]);
    await admin.query("GRANT SELECT ON shop.* TO 'cdc'@'127.0.0.1'");
    await admin.query("GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'cdc'@'127.0.0.1'");
  } finally {
    await admin.end();
  }
}

async function pointAt(work: ShopWorkspace, from: MariaDbServer, to: MariaDbServer): Promise<void> {
  const config = join(work.dir, 'tributary.yaml');
  const text = await readFile(config, 'utf8');
  await writeFile(config, text.replace(`port: ${from.port}`, `port: ${to.port}`));
}

const staging = (work: ShopWorkspace) => join(work.dir, 'lake', 'lake', 'landing', 'vol', 'gw');

describe('a changed server identity that capture cannot follow', () => {
  let parent: string;
  /** Everything it logged was kept out of the binlog: positions on it carry no GTID state. */
  let quiet: MariaDbServer;
  /** An unrelated server with its own history in GTID domain 0. */
  let other: MariaDbServer;

  beforeAll(async () => {
    parent = await mkdtemp(join(tmpdir(), 'tributary-lost-'));
    quiet = await startMariaDb({ serverId: 221 });
    other = await startMariaDb({ serverId: 222 });
    await prepare(quiet, { logged: false, rows: 2 });
    // More transactions than the quiet server will ever log, so its head sorts after their positions.
    await prepare(other, { logged: true, rows: 20 });
  });
  afterAll(async () => {
    await quiet?.stop();
    await other?.stop();
    if (parent) await rm(parent, { recursive: true, force: true });
  });

  it('fails with SOURCE_HISTORY_LOST when the saved position has no GTID state', async () => {
    const work = await shopWorkspace(parent, quiet, password);
    const first = await work.cli(['run', 'p', '--once']);
    expect(first.code, first.stderr).toBe(0);
    const segments = await readdir(staging(work));

    await pointAt(work, quiet, other);
    const second = await work.cli(['run', 'p', '--once']);
    expect(second.code, second.stderr).toBe(1);
    expect(second.stderr).toContain('SOURCE_HISTORY_LOST');
    expect(second.stderr).toMatch(
      /Capture cannot continue on the source of connection "src": the saved position mysql-bin\.\d+:\d+ was recorded on MariaDB server_id 221, but the connection now reaches MariaDB server_id 222, and the position has no GTID state/,
    );
    expect(second.stderr).toMatch(
      /a binlog file and offset mean something only on the server that wrote them/,
    );
    expect(second.stderr).toMatch(/new snapshot \(full refresh\)/);
    expect(await readdir(staging(work))).toEqual(segments);
  });

  it('fails with SOURCE_HISTORY_LOST when the other server does not hold the saved GTID state', async () => {
    // Now the quiet server logs a transaction, so positions on it carry GTID 0-221-1.
    const admin = await rootConnection(quiet);
    await admin.query('INSERT INTO shop.t VALUES (3)');
    await admin.end();
    const work = await shopWorkspace(parent, quiet, password);
    const first = await work.cli(['run', 'p', '--once']);
    expect(first.code, first.stderr).toBe(0);
    const segments = await readdir(staging(work));

    await pointAt(work, quiet, other);
    const second = await work.cli(['run', 'p', '--once']);
    expect(second.code, second.stderr).toBe(1);
    expect(second.stderr).toContain('SOURCE_HISTORY_LOST');
    expect(second.stderr).toMatch(
      /A failover was detected on connection "src" \(the saved position mysql-bin\.\d+:\d+ was recorded on MariaDB server_id 221, but the connection now reaches MariaDB server_id 222\), and the new primary cannot continue from the captured GTID state 0-221-1: .*GTID 0-221-1, which is not in the master's binlog/,
    );
    expect(second.stderr).toMatch(/new snapshot \(full refresh\)/);
    expect(await readdir(staging(work))).toEqual(segments);
  });

  it('fails with SOURCE_HISTORY_LOST when the other server never logged the saved replication domain', async () => {
    const domain9 = await startMariaDb({ serverId: 223, extraArgs: ['--gtid-domain-id=9'] });
    try {
      await prepare(domain9, { logged: true, rows: 20 });
      const work = await shopWorkspace(parent, quiet, password);
      const first = await work.cli(['run', 'p', '--once']);
      expect(first.code, first.stderr).toBe(0);

      await pointAt(work, quiet, domain9);
      const second = await work.cli(['run', 'p', '--once']);
      expect(second.code, second.stderr).toBe(1);
      expect(second.stderr).toContain('SOURCE_HISTORY_LOST');
      expect(second.stderr).toMatch(
        /its binlog has no transaction of replication domain 0, which the captured GTID state 0-221-1 includes/,
      );
    } finally {
      await domain9.stop();
    }
  });
});
