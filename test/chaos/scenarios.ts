/**
 * The fault-injection scenarios of issue 7, defined once and run for each source flavour. Every scenario
 * runs under the workload, lets a continuous `tributary run` recover by itself (a marker row written after
 * the last fault must show up in bronze without help), then ends with the row-for-row comparison with the
 * source and a look at `system.lakeflow.pipeline_events`.
 *
 * `npm test` runs the short version; `npm run chaos` (TRIBUTARY_CHAOS=long) runs the long one, with at least
 * 100 kills of Tributary per flavour. Scenarios that do not depend on the source (storage, table
 * maintenance, two processes) run for MariaDB only in the short version.
 */
import { mkdir, rm } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTcpProxy } from '../../src/testing/tcp-proxy.js';
import { cannotMount, fill, mount, unmount } from '../harness/tmpfs.js';
import { ChaosWorkspace, LONG, randomSequence, type TributaryProcess, until } from './rig.js';
import type { ChaosServer, Flavor } from './sources.js';
import { sleep, Workload } from './workload.js';

const SCALE = {
  tributaryKills: LONG ? 100 : 8,
  sourceKills: LONG ? 6 : 2,
  proxyCuts: LONG ? 30 : 5,
  storageOutages: LONG ? 3 : 1,
  maintenanceMs: LONG ? 60_000 : 8_000,
};

const TRANSIENT = new Set([
  'SOURCE_UNREACHABLE',
  'SOURCE_QUERY_FAILED',
  'STAGING_FULL',
  'DELTA_CONFLICT',
  'RUN_INTERRUPTED',
]);

const tmpfsSkip = await cannotMount();

/** Writes a customer no workload touches, after the last fault, and waits for it at the consistent cut. */
async function expectRecoveredByItself(work: ChaosWorkspace, marker: number, runner: TributaryProcess) {
  const client = await work.db.connect();
  try {
    await client.query(`INSERT INTO customers (id, name, tier) VALUES (${marker}, 'marker-${marker}', 9)`);
  } finally {
    await client.close();
  }
  await until(`marker ${marker} in bronze (the running process recovering by itself)`, async () => {
    if (!runner.running) throw new Error(`tributary run exited:\n${runner.stderr}`);
    const rows = await work.sql(`SELECT id FROM lake.bronze.customers WHERE id = ${marker}`);
    return rows.length === 1 ? true : undefined;
  });
}

/** The end of every scenario: load stopped, one catch-up round, bronze equal to the source. */
async function finish(
  work: ChaosWorkspace,
  load: Workload,
  runner?: TributaryProcess,
  /** Failures this scenario provokes on purpose, beyond the transient ones every scenario may see. */
  expected: readonly string[] = [],
): Promise<void> {
  if (runner?.running) {
    const exit = await runner.stop();
    expect(exit.code, `SIGTERM must stop at a safe point and exit 0:\n${runner.stderr}`).toBe(0);
  }
  const stats = await load.stop();
  expect(stats.committed, 'the workload must have run').toBeGreaterThan(10);
  await work.catchUp();
  const { rows } = await work.expectConverged();
  await work.expectNoSegmentAppliedTwice();
  const events = await work.events();
  expect(events.at(-1)?.state, 'the last round recorded is the successful catch-up').toBe('COMPLETED');
  const failed: Record<string, number> = {};
  for (const e of events.filter((e) => e.state === 'FAILED')) {
    const code = e.error_code ?? '';
    expect(TRANSIENT.has(code) || expected.includes(code), `unexpected failure: ${code} ${e.message}`).toBe(
      true,
    );
    failed[code] = (failed[code] ?? 0) + 1;
  }
  report(
    `${stats.committed} transactions committed (${stats.failed} died with the server); ${rows} rows equal to the source; ${events.length} events, FAILED by code ${JSON.stringify(failed)}`,
  );
}

/** One line per scenario for docs/fault-injection.md: what ran and what was checked. */
function report(line: string): void {
  process.stdout.write(`[chaos] ${expect.getState().currentTestName}: ${line}\n`);
}

export function chaosSuite(flavor: Flavor, start: () => Promise<ChaosServer>): void {
  const sourceAgnostic = LONG || flavor === 'mariadb';

  describe(`chaos: ${flavor}`, () => {
    let server: ChaosServer;
    beforeAll(async () => {
      server = await start();
    });
    afterAll(async () => {
      await server?.[Symbol.asyncDispose]();
    });

    const workspace = async (scenario: string, options: { autoFullRefresh?: boolean } = {}) =>
      ChaosWorkspace.create(await server.createDatabase(scenario), { endpoint: server, ...options });

    it(`kill -9 of Tributary at random points (${SCALE.tributaryKills} times)`, async () => {
      await using work = await workspace('kill9');
      const load = new Workload(work.db, server.dialect, { seed: 11 }).start();
      const random = randomSequence(5);
      let landed = 0;
      for (let i = 0; i < SCALE.tributaryKills; i++) {
        const runner = work.spawn();
        await sleep(200 + random() * 2000);
        if (!runner.running) throw new Error(`tributary run exited by itself:\n${runner.stderr}`);
        if (await runner.kill9()) landed++;
      }
      await finish(work, load);
      // Each kill that landed mid-round is recorded by the round that took over (kills between rounds are not).
      const interrupted = (await work.events()).filter((e) => e.error_code === 'RUN_INTERRUPTED');
      expect(interrupted.length).toBeGreaterThan(0);
      expect(interrupted.length).toBeLessThanOrEqual(landed);
      report(`${landed} of ${SCALE.tributaryKills} kills landed on a running process`);
    });

    it(`kill -9 of the source mid-transaction, and a restart (${SCALE.sourceKills} times)`, async () => {
      await using work = await workspace('source_kill');
      const load = new Workload(work.db, server.dialect, { seed: 12 }).start();
      const runner = work.spawn();
      await until('the snapshot in bronze', async () =>
        (await work.sql('SELECT count(*) AS n FROM lake.bronze.orders'))[0] ? true : undefined,
      );
      for (let k = 0; k < SCALE.sourceKills; k++) {
        // A transaction open at the crash: the server rolls it back, so its row must never reach bronze.
        const open = await work.db.connect();
        await open.query('BEGIN');
        await open.query(server.dialect.upsert('orders', [999_000 + k, 1, 1, 'never-committed']));
        await load.progress(3);
        const retries = runner.stderr.match(/retry \d+ in/g)?.length ?? 0;
        await server.kill();
        await open.close();
        // Every other time the server comes straight back, before Tributary notices: it then reads the crashed
        // binlog and the new one in one stream, where table ids name other tables (found this way once).
        if (k % 2 === 0) {
          await until('a retry after this crash', async () =>
            (runner.stderr.match(/retry \d+ in/g)?.length ?? 0) > retries ? true : undefined,
          );
        }
        await server.restart();
        await load.progress(5);
      }
      await expectRecoveredByItself(work, 90_001, runner);
      await finish(work, load, runner);
      const failed = (await work.events()).filter((e) => e.state === 'FAILED');
      expect(failed.length, 'the rounds the crash broke are recorded').toBeGreaterThan(0);
    });

    it(`connections cut at random by a TCP proxy (${SCALE.proxyCuts} cuts)`, async () => {
      await using proxy = await startTcpProxy(server);
      await using work = await ChaosWorkspace.create(await server.createDatabase('proxy'), {
        endpoint: proxy,
      });
      const load = new Workload(work.db, server.dialect, { seed: 13 }).start();
      const runner = work.spawn();
      const random = randomSequence(17);
      let cut = 0;
      while (cut < SCALE.proxyCuts) {
        await sleep(300 + random() * 1500);
        // Only a cut that breaks an open connection is a fault; between rounds there may be none.
        if (proxy.cutAll() > 0) cut++;
        if (!runner.running) throw new Error(`tributary run exited:\n${runner.stderr}`);
      }
      await expectRecoveredByItself(work, 90_002, runner);
      await finish(work, load, runner);
      expect(proxy.stats.cut).toBeGreaterThanOrEqual(SCALE.proxyCuts);
      report(`${cut} cuts broke ${proxy.stats.cut} open connections (of ${proxy.stats.accepted} accepted)`);
    });

    it('binlog purged or slot dropped while Tributary is down: one clear error, then tributary refresh or auto_full_refresh', async () => {
      await using work = await workspace('history');
      await work.catchUp();
      const load = new Workload(work.db, server.dialect, { seed: 14 }).start();
      await load.progress(20);
      await work.db.loseHistory();
      await load.progress(5);

      const refused = await work.cli(['run', 'p', '--once']);
      expect(refused.code, refused.stderr).toBe(1);
      expect(refused.stderr).toContain('SOURCE_HISTORY_LOST');
      expect(refused.stderr).toMatch(/full refresh/);
      expect(refused.stderr).toMatch(/auto_full_refresh|tributary refresh/);
      const failed = (await work.events()).at(-1);
      expect(failed).toMatchObject({ state: 'FAILED', error_code: 'SOURCE_HISTORY_LOST' });

      // The two ways out the error names. First by hand: `tributary refresh p`, under load.
      const refreshed = await work.cli(['refresh', 'p']);
      expect(refreshed.code, `${refreshed.stdout}\n${refreshed.stderr}`).toBe(0);
      expect(refreshed.stderr).toContain('full refresh requested for every table');

      // Then by itself: the log is lost again (a PostgreSQL slot this time invalidated by
      // max_slot_wal_keep_size), and auto_full_refresh takes the new snapshot unasked.
      await load.progress(10);
      await work.db.loseHistory('exceed-retention');
      await work.configure({ endpoint: server, autoFullRefresh: true });
      const runner = work.spawn();
      await expectRecoveredByItself(work, 90_003, runner);
      await finish(work, load, runner, ['SOURCE_HISTORY_LOST']);
    });

    it.skipIf(!sourceAgnostic || tmpfsSkip !== undefined)(
      `staging storage failing writes with ENOSPC for a while (${SCALE.storageOutages} times)${tmpfsSkip ? ` [skipped: ${tmpfsSkip}]` : ''}`,
      async () => {
        await using work = await workspace('enospc');
        await mkdir(work.stagingDir, { recursive: true });
        mount(work.stagingDir, '256m');
        try {
          const load = new Workload(work.db, server.dialect, { seed: 15 }).start();
          const runner = work.spawn();
          await until('the snapshot in bronze', async () =>
            (await work.sql('SELECT count(*) AS n FROM lake.bronze.orders'))[0] ? true : undefined,
          );
          for (let i = 0; i < SCALE.storageOutages; i++) {
            const seen = runner.stderr.split('STAGING_FULL').length;
            const filler = await fill(work.stagingDir, 0);
            await until('capture stopping on the full volume', async () =>
              runner.stderr.split('STAGING_FULL').length > seen ? true : undefined,
            );
            await load.progress(5);
            await rm(filler);
          }
          await expectRecoveredByItself(work, 90_004, runner);
          await finish(work, load, runner);
          const full = (await work.events()).filter((e) => e.error_code === 'STAGING_FULL');
          expect(full.length).toBeGreaterThanOrEqual(SCALE.storageOutages);
        } finally {
          unmount(work.stagingDir);
        }
      },
    );

    it.skipIf(!sourceAgnostic)('OPTIMIZE and VACUUM running concurrently with apply', async () => {
      await using work = await workspace('maintenance');
      const load = new Workload(work.db, server.dialect, { seed: 16, pauseMs: 5 }).start();
      const runner = work.spawn();
      await until('the snapshot in bronze', async () =>
        (await work.sql('SELECT count(*) AS n FROM lake.bronze.orders'))[0] ? true : undefined,
      );
      const done = { optimize: 0, vacuum: 0, conflicts: 0 };
      const outputs: string[] = [];
      const deadline = Date.now() + SCALE.maintenanceMs;
      while (Date.now() < deadline) {
        for (const [kind, sql] of [
          // ZORDER rewrites every file, so each run really competes with the merges for the same files.
          ['optimize', 'OPTIMIZE lake.bronze.orders ZORDER BY (customer_id)'],
          ['optimize', 'OPTIMIZE lake.bronze.customers ZORDER BY (tier)'],
          ['vacuum', 'VACUUM lake.bronze.orders'],
        ] as const) {
          const r = await work.cli(['sql', sql]);
          outputs.push(`${sql}: ${r.stdout}`);
          if (r.code === 0) done[kind]++;
          else if (r.stderr.includes('DELTA_CONFLICT')) done.conflicts++;
          else throw new Error(`${sql} failed:\n${r.stderr}`);
        }
      }
      await expectRecoveredByItself(work, 90_005, runner);
      await finish(work, load, runner);
      report(`OPTIMIZE and VACUUM beside apply: ${JSON.stringify(done)}`);
      expect(done.optimize, JSON.stringify(done)).toBeGreaterThan(0);
      expect(done.vacuum, JSON.stringify(done)).toBeGreaterThan(0);
      for (const table of ['orders', 'customers']) {
        const history = await work.sql(`DESCRIBE HISTORY lake.bronze.${table}`);
        expect(
          history.some((h) => h['operation'] === 'OPTIMIZE'),
          `${table}: ${JSON.stringify(history.map((h) => h['operation']))}\n${outputs.slice(-3).join('\n')}`,
        ).toBe(true);
      }
    });

    it.skipIf(!sourceAgnostic)(
      'two processes on one pipeline: the second refuses, never both writing',
      async () => {
        await using work = await workspace('two');
        const load = new Workload(work.db, server.dialect, { seed: 17 }).start();
        const first = work.spawn();
        await until('the first process running rounds', async () =>
          first.stderr.includes('catching up') ? true : undefined,
        );
        for (const args of [['run', 'p'], ['start']]) {
          const second = work.spawn(args);
          const exit = await second.exited;
          expect(exit.code, second.stderr).not.toBe(0);
          expect(second.stderr).toContain(`Pipeline p is already running (pid ${first.child.pid})`);
        }
        // A crash leaves the claim behind; two processes started at once after it: exactly one takes over.
        await first.kill9();
        const pair = [work.spawn(), work.spawn()];
        const loser = await until(
          'one of the two refusing',
          async () => pair.find((p) => !p.running),
          30_000,
        );
        const winner = pair.find((p) => p !== loser) as TributaryProcess;
        expect(loser.stderr).toContain(`Pipeline p is already running (pid ${winner.child.pid})`);
        await load.progress(10);
        expect(winner.running, winner.stderr).toBe(true);
        await expectRecoveredByItself(work, 90_006, winner);
        await finish(work, load, winner);
      },
    );
  });
}
