/**
 * The lag `tributary status` reports is honest in the three situations a quiet pipeline can be in:
 * - the source is idle and everything is captured: lag 0, with the reason, and it stays 0 however long the
 *   source stays idle (also after a binlog rotation, which only a heartbeat shows the stream);
 * - the captured tables are idle but other tables and databases of the source are busy: their transactions
 *   move the staged position on, durably (a change-free segment), and the lag stays 0;
 * - the source cannot be reached: the state says so, and the lag is unknown (never 0), with the time since
 *   the last successful contact growing.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { PipelineStatus } from '../../src/app/pipeline-status.js';
import type { SegmentManifest } from '../../src/staging/segment-format.js';
import { CLI_PATH } from '../harness/cli.js';
import { adminConnection, type FreshDatabase, freshDatabase } from '../harness/mysql.js';
import { type PipelineFixture, pipelineFixture } from '../harness/pipeline-fixture.js';

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function until<T>(what: string, check: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

describe('tributary status: lag', () => {
  let f: PipelineFixture;
  let noise: FreshDatabase;
  const gatewayDir = () => join(f.dir, 'lakehouse', 'retail_analytics', 'landing', 'ingestion_volume', 'gw');
  const status = async (): Promise<PipelineStatus> => {
    const r = await f.cli(['status', 'p', '--format', 'json']);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as PipelineStatus[])[0] as PipelineStatus;
  };
  const text = async () => (await f.cli(['status', 'p'])).stdout;
  const newestManifest = async (): Promise<SegmentManifest> => {
    const newest = (await readdir(gatewayDir()))
      .filter((n) => n.startsWith('seg-'))
      .sort()
      .at(-1);
    return JSON.parse(await readFile(join(gatewayDir(), newest ?? '', '_manifest.json'), 'utf8'));
  };
  const makeNoise = async () => {
    for (let i = 0; i < 10; i++) await noise.conn.query("INSERT INTO n (v) VALUES ('x')");
    await f.conn.query("INSERT INTO uncaptured (v) VALUES ('y')");
  };

  beforeAll(async () => {
    noise = await freshDatabase('lagnoise');
    await noise.conn.query('CREATE TABLE n (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)');
    f = await pipelineFixture({
      prefix: 'lag',
      setup: async (conn) => {
        await conn.query('CREATE TABLE t (id INT PRIMARY KEY, v TEXT)');
        await conn.query('CREATE TABLE uncaptured (id INT AUTO_INCREMENT PRIMARY KEY, v TEXT)');
        await conn.query("INSERT INTO t VALUES (1, 'a')");
      },
      objects: (db) => `      - table:
          source_schema: ${db}
          source_table: t
          destination_catalog: retail_analytics
          destination_schema: bronze`,
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
    await noise?.drop();
  });

  it('idle and caught up: lag 0 with the reason, staying 0 while the source stays idle', async () => {
    await f.run();
    const first = await status();
    expect(first).toMatchObject({ state: 'UP_TO_DATE', sourceReachable: true, sourceError: null });
    expect(first.stagedPosition).toBe(first.sourcePosition);
    expect(first.lag).toMatchObject({ seconds: 0, secondsSinceContact: 0 });
    expect(first.lag.reason).toBe(`caught up with the source at ${first.lag.capturedThrough}`);
    expect(first.tables).toMatchObject([{ destination: 'retail_analytics.bronze.t', lagSeconds: 0 }]);

    // Nothing happens at the source; the newest staged change ages, the lag does not.
    await sleep(2_000);
    const later = await status();
    expect(later.lag.seconds).toBe(0);
    expect(Date.parse(later.lag.capturedThrough ?? '')).toBeGreaterThan(
      Date.parse(first.lag.capturedThrough ?? ''),
    );
    expect(later.newestStagedCommit).toBe(first.newestStagedCommit);
    expect(await text()).toMatch(/\n {2}capture lag: 0 s \(caught up with the source at \S+\)\n/);
  });

  it('idle after a binlog rotation: a heartbeat moves the staged position to the head in the new file', async () => {
    const before = await status();
    const admin = await adminConnection();
    try {
      // What every server restart does too: the log continues in a new file, with no transaction in it.
      await admin.query('FLUSH BINARY LOGS');
    } finally {
      await admin.end();
    }
    const rotated = await status();
    expect(rotated.state).toBe('BEHIND');
    // Behind since the last round caught up, which was a moment ago; not 0, and not since the last change.
    expect(rotated.lag.seconds).toBeGreaterThan(0);
    expect(rotated.lag.capturedThrough).not.toBeNull();

    const r = await f.cli(['run', 'p', '--once']);
    expect(r.code, r.stderr).toBe(0);
    const after = await status();
    expect(after.stagedPosition).toBe(after.sourcePosition);
    expect(after.stagedPosition?.split(' ')[1]?.split(':')[0]).not.toBe(
      before.stagedPosition?.split(' ')[1]?.split(':')[0],
    );
    expect(after).toMatchObject({ state: 'UP_TO_DATE', lag: { seconds: 0 } });
    // The heartbeat's segment holds no change, and the newest staged change is still the old one.
    expect(Object.keys((await newestManifest()).tables)).toEqual([]);
    expect(after.newestStagedCommit).toBe(before.newestStagedCommit);
  });

  it('busy elsewhere: other tables move the staged position on, durably, and the lag stays 0', async () => {
    const before = await status();
    await makeNoise();
    const busy = await status();
    expect(busy.state).toBe('BEHIND');
    expect((busy.sourcePosition ?? '') > (busy.stagedPosition ?? '')).toBe(true);

    // The default idle-seal interval (60 s) lets a process seal its first change-free stretch at once.
    const r = await f.cli(['run', 'p', '--once']);
    expect(r.code, r.stderr).toBe(0);
    const after = await status();
    expect(after.stagedPosition).toBe(after.sourcePosition);
    expect((after.stagedPosition ?? '') > (before.stagedPosition ?? '')).toBe(true);
    expect(after).toMatchObject({ state: 'UP_TO_DATE', lag: { seconds: 0 } });
    expect(after.stagedSegments).toBe(before.stagedSegments + 1);
    // Durable: a sealed segment without changes whose end is the new position.
    const manifest = await newestManifest();
    expect(manifest).toMatchObject({ origin: 'stream', endPosition: after.stagedPosition, tables: {} });
    expect(manifest.state.position).toBe(after.stagedPosition);
    expect(after.newestStagedCommit).toBe(before.newestStagedCommit);
    expect(await f.sql('SELECT id, v FROM bronze.t')).toEqual([{ id: 1, v: 'a' }]);
  });

  it('busy elsewhere under a continuous run: caught up between change-free seals, and a captured change lands', async () => {
    let stdout = '';
    let stderr = '';
    const child: ChildProcess = spawn(process.execPath, [CLI_PATH, 'run', 'p', '--interval', '1'], {
      cwd: f.dir,
      // Change-free stretches are sealed at most once an hour here, so the staged position stays behind.
      env: { ...process.env, ...f.env, TRIBUTARY_IDLE_SEAL_SECONDS: '3600' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((done) => child.on('close', (code) => done(code)));
    try {
      await until('a first round', async () => (stdout.includes('bronze.t: version') ? true : undefined));
      // The first change-free stretch of the process is sealed; later ones wait an hour.
      await makeNoise();
      await until('the noise sealed', async () => {
        const s = await status();
        return s.stagedPosition === s.sourcePosition ? s : undefined;
      });
      await makeNoise();
      const caughtUp = await until('a round over the noise', async () => {
        const s = await status();
        return s.lag.seconds === 0 && (s.sourcePosition ?? '') > (s.stagedPosition ?? '') ? s : undefined;
      });
      expect(caughtUp.state).toBe('UP_TO_DATE');
      expect(caughtUp.lag.reason).toMatch(/^caught up with the source at .*no change of the captured tables/);

      await f.conn.query("UPDATE t SET v = 'b' WHERE id = 1");
      await until('the change in bronze', async () => {
        const rows = await f.sql('SELECT v FROM bronze.t WHERE id = 1');
        return rows[0]?.['v'] === 'b' ? true : undefined;
      });
      const landed = await status();
      expect(landed).toMatchObject({ state: 'UP_TO_DATE', lag: { seconds: 0 } });
      expect(landed.tables[0]?.lagSeconds).toBe(0);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited, stderr).toBe(0);
  });

  it('unreachable: the state says so, and the lag is unknown, growing since the last contact, never 0', async () => {
    const config = join(f.dir, 'tributary.yaml');
    const original = await readFile(config, 'utf8');
    const lastRound = await status();
    await writeFile(config, original.replace(/\n {4}port: \d+\n/, `\n    port: ${await closedPort()}\n`));
    try {
      const dead = await status();
      expect(dead).toMatchObject({
        state: 'SOURCE_UNREACHABLE',
        sourceReachable: false,
        sourcePosition: null,
      });
      expect(dead.sourceError).toMatch(/^SOURCE_UNREACHABLE: /);
      expect(dead.lag.seconds).toBeNull();
      expect(dead.tables[0]?.lagSeconds).toBeNull();
      const contact = dead.lag.lastContact ?? '';
      // The last contact is the last completed round's, from before this status check.
      expect(Date.parse(contact)).toBeLessThan(Date.parse(lastRound.lag.capturedThrough ?? ''));
      expect(dead.lag.reason).toMatch(
        new RegExp(
          `^the source cannot be reached \\(SOURCE_UNREACHABLE: .*\\): the lag is unknown, and grows from the last successful contact at ${contact.replaceAll('.', '\\.')} \\([\\d.]+ s ago\\)`,
        ),
      );
      const shown = await text();
      expect(shown).toContain('p  SOURCE_UNREACHABLE');
      expect(shown).toMatch(/\n {2}capture lag: unknown \(the source cannot be reached/);
      expect(shown).not.toMatch(/capture lag: 0/);
      expect(shown).toMatch(/\| unknown\n/);

      // A round cannot reach it either, and does not pass for a contact.
      const r = await f.cli(['run', 'p', '--once']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('SOURCE_UNREACHABLE');
      await sleep(1_100);
      const still = await status();
      expect(still.lag.lastContact).toBe(contact);
      expect(still.lag.secondsSinceContact ?? 0).toBeGreaterThan(dead.lag.secondsSinceContact ?? Infinity);
    } finally {
      await writeFile(config, original);
    }
    // Reachable again: caught up at once.
    expect(await status()).toMatchObject({ state: 'UP_TO_DATE', lag: { seconds: 0 } });
  });
});
