/**
 * Failover: the primary a pipeline captures from dies, its GTID replica is promoted, and the connection is
 * pointed at the new primary. The next run detects the changed server identity, warns with both identities,
 * resumes from the captured GTID state on the new primary, and bronze ends up with every row exactly once:
 * the changes made on the old primary that capture had not read yet (the replica has them), and the changes
 * made on the new primary after the promotion. Staged row counts prove no transaction was staged twice.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Connection, RowDataPacket } from 'mysql2/promise';
import { expect, it } from 'vitest';
import type { SegmentManifest } from '../../src/staging/segment-format.js';
import { type MariaDbServer, startMariaDb } from '../../src/testing/mariadb-server.js';
import { prepareShop, rootConnection, type ShopWorkspace, shopWorkspace } from '../harness/own-server.js';

interface Row {
  id: number;
  v: string;
}

async function sourceRows(conn: Connection): Promise<Row[]> {
  const [rows] = await conn.query<RowDataPacket[]>('SELECT id, v FROM shop.t ORDER BY id');
  return rows.map((r) => ({ id: Number(r['id']), v: String(r['v']) }));
}

async function bronzeRows(work: ShopWorkspace): Promise<Row[]> {
  const r = await work.cli(['sql', 'SELECT id, v FROM lake.bronze.t ORDER BY id', '--format', 'json']);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as Array<{ id: number; v: string }>).map((x) => ({
    id: Number(x.id),
    v: x.v,
  }));
}

/** The sealed stream segments' manifests, in order. */
async function streamManifests(work: ShopWorkspace): Promise<SegmentManifest[]> {
  const staging = join(work.dir, 'lake', 'lake', 'landing', 'vol', 'gw');
  const names = (await readdir(staging)).filter((n) => n.startsWith('seg-')).sort();
  const manifests = await Promise.all(
    names.map(
      async (n) => JSON.parse(await readFile(join(staging, n, '_manifest.json'), 'utf8')) as SegmentManifest,
    ),
  );
  return manifests.filter((m) => m.origin === 'stream');
}

const stagedRows = (manifests: readonly SegmentManifest[]) =>
  manifests.reduce((n, m) => n + (m.tables['shop.t']?.rows ?? 0), 0);

async function run(work: ShopWorkspace): Promise<string> {
  const r = await work.cli(['run', 'p', '--once']);
  expect(r.code, r.stderr).toBe(0);
  return r.stderr;
}

async function startReplication(replica: MariaDbServer, primary: MariaDbServer): Promise<void> {
  const password = randomBytes(12).toString('base64url');
  const p = await rootConnection(primary);
  try {
    await p.query('SET SESSION sql_log_bin = 0');
    await p.query("CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY ?", [password]);
    await p.query("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'");
  } finally {
    await p.end();
  }
  const r = await rootConnection(replica);
  try {
    await r.query(
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${primary.port}, MASTER_USER='repl', MASTER_PASSWORD=?, MASTER_USE_GTID=slave_pos`,
      [password],
    );
    await r.query('START SLAVE');
  } finally {
    await r.end();
  }
}

/** Waits until the replica has applied everything the primary has logged. */
async function awaitReplica(replica: Connection, primary: Connection): Promise<void> {
  const [[pos]] = (await primary.query('SELECT @@gtid_binlog_pos AS g')) as unknown as [[{ g: string }]];
  const [[wait]] = (await replica.query('SELECT MASTER_GTID_WAIT(?, 30) AS r', [pos.g])) as unknown as [
    [{ r: number }],
  ];
  expect(wait.r, `replica did not reach ${pos.g}`).toBe(0);
}

it('continues on the promoted replica by GTID after a failover: every row in bronze, exactly once', async () => {
  const parent = await mkdtemp(join(tmpdir(), 'tributary-failover-'));
  // The replica logs what it replicates (log_slave_updates), so its binlog holds the old primary's
  // transactions under their original GTIDs: that is what lets capture continue there.
  const primary = await startMariaDb({ serverId: 211, extraArgs: ['--log-slave-updates=1'] });
  const replica = await startMariaDb({ serverId: 212, extraArgs: ['--log-slave-updates=1'] });
  try {
    await startReplication(replica, primary);
    // Database, table, rows and the CDC user are created on the primary and replicated.
    const password = await prepareShop(primary, [
      'CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(20))',
      "INSERT INTO shop.t VALUES (1, 'one'), (2, 'two'), (3, 'three')",
    ]);
    const work = await shopWorkspace(parent, primary, password);
    const old = await rootConnection(primary);
    const promoted = await rootConnection(replica);
    try {
      // Snapshot, then a streamed round, on the old primary.
      await run(work);
      await old.query("INSERT INTO shop.t VALUES (4, 'four')");
      await old.query("UPDATE shop.t SET v = 'one!' WHERE id = 1");
      await run(work);
      expect(await bronzeRows(work)).toEqual(await sourceRows(old));
      const before = await streamManifests(work);
      expect(stagedRows(before)).toBe(2);
      expect(before.at(-1)?.state.position).toMatch(/ gtid=0-211-\d+ server=mariadb\/211$/);

      // Changes the pipeline has not read yet when the primary dies; the replica has them.
      await old.query("INSERT INTO shop.t VALUES (5, 'five')");
      await old.query("UPDATE shop.t SET v = 'three!' WHERE id = 3");
      await old.query('DELETE FROM shop.t WHERE id = 2');
      await awaitReplica(promoted, old);
      await old.end();
      await primary.stop();

      // Promotion, then writes on the new primary: one two-statement transaction and one more.
      await promoted.query('STOP SLAVE');
      await promoted.query('RESET SLAVE ALL');
      await promoted.query('BEGIN');
      await promoted.query("INSERT INTO shop.t VALUES (6, 'six')");
      await promoted.query("UPDATE shop.t SET v = 'four!' WHERE id = 4");
      await promoted.query('COMMIT');
      await promoted.query('DELETE FROM shop.t WHERE id = 1');

      // The connection now points at the new primary (as a DNS name or proxy would after a failover).
      const config = join(work.dir, 'tributary.yaml');
      await writeFile(
        config,
        (await readFile(config, 'utf8')).replace(`port: ${primary.port}`, `port: ${replica.port}`),
      );
      const stderr = await run(work);

      expect(stderr).toMatch(
        /WARN\s+failover detected on connection "src": the saved position mysql-bin\.\d+:\d+ was recorded on MariaDB server_id 211, but the connection now reaches MariaDB server_id 212\. Resuming from GTID state 0-211-\d+/,
      );
      const expected = await sourceRows(promoted);
      expect(expected).toEqual([
        { id: 3, v: 'three!' },
        { id: 4, v: 'four!' },
        { id: 5, v: 'five' },
        { id: 6, v: 'six' },
      ]);
      expect(await bronzeRows(work)).toEqual(expected);

      // Exactly once: 3 changes from the old primary's tail + 3 from the new primary, nothing read twice.
      const after = await streamManifests(work);
      expect(stagedRows(after) - stagedRows(before)).toBe(6);
      const last = after.at(-1)?.state.position ?? '';
      expect(last).toMatch(/ gtid=0-212-\d+ server=mariadb\/212$/);
      expect(last > (before.at(-1)?.state.position ?? '')).toBe(true);

      // From now on the new primary is the saved server: the next round resumes by file and offset, without
      // a warning, and stages exactly what happens next.
      await promoted.query("INSERT INTO shop.t VALUES (7, 'seven')");
      const next = await run(work);
      expect(next).not.toContain('failover');
      expect(stagedRows(await streamManifests(work)) - stagedRows(after)).toBe(1);
      expect(await bronzeRows(work)).toEqual(await sourceRows(promoted));
    } finally {
      await old.end().catch(() => undefined);
      await promoted.end();
    }
  } finally {
    await primary.stop();
    await replica.stop();
    await rm(parent, { recursive: true, force: true });
  }
});
