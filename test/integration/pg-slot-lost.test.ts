/**
 * What `tributary run` says when the source can no longer give it what it needs:
 *
 * - the gateway's replication slot was dropped while Tributary was down: the changes since the last run are
 *   gone, so the run exits non-zero with SOURCE_HISTORY_LOST and says that a full refresh is needed and why;
 * - the publication does not publish a captured table, and the CDC user may not change it: the source
 *   refuses to capture with SOURCE_PRIVILEGE_MISSING and the exact ALTER PUBLICATION statement (which works
 *   as given), and creates no slot; `tributary run` stops earlier, at its preflight gate, with the same
 *   statement.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { TributaryError } from '../../src/core/errors.js';
import { PostgresSource } from '../../src/sources/postgres/postgres-source.js';
import { pgPipelineFixture } from '../harness/pg-pipeline-fixture.js';

describe('a lost slot and a publication the CDC user may not change (PostgreSQL)', () => {
  it('fails with SOURCE_HISTORY_LOST and asks for a full refresh when the slot was dropped while down', async () => {
    await using f = await pgPipelineFixture({
      prefix: 'pg_slot_lost',
      setup: async (client) => {
        await client.query('CREATE TABLE t (id int PRIMARY KEY, v text)');
        await client.query(`INSERT INTO t VALUES (1, 'one')`);
      },
    });
    await f.run();
    await f.client.query(`INSERT INTO t VALUES (2, 'two')`);
    await f.run();
    // Tributary is down: the slot is dropped, and the application goes on changing rows.
    await f.client.query("SELECT pg_drop_replication_slot('tributary_gw')");
    await f.client.query(`INSERT INTO t VALUES (3, 'three')`);
    await f.client.query(`UPDATE t SET v = 'changed' WHERE id = 1`);

    for (let attempt = 0; attempt < 2; attempt++) {
      const r = await f.cli(['run', 'p', '--once']);
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.signal).toBeNull();
      expect(r.stderr).toContain('SOURCE_HISTORY_LOST');
      expect(r.stderr).toContain('"tributary_gw"');
      expect(r.stderr).toMatch(/full refresh/);
      // Why: the slot is gone, and with it the WAL since the last run.
      expect(r.stderr).toMatch(/does not exist|no longer exists/);
      expect(r.stderr).toMatch(/changes since/);
      // Nothing is made up for the missing stretch: no new slot is created behind the user's back.
      const slots = await f.client.query(
        "SELECT 1 FROM pg_replication_slots WHERE slot_name = 'tributary_gw'",
      );
      expect(slots.rows).toEqual([]);
    }
    // Bronze stays at the last good state.
    expect(await f.sql('SELECT id, v FROM bronze.t ORDER BY id')).toEqual([
      { id: 1, v: 'one' },
      { id: 2, v: 'two' },
    ]);

    // The full refresh the hint describes works: without the gateway directory and the bronze table, the
    // next run creates a slot, snapshots, and bronze equals the source again.
    const lake = join(f.dir, 'lakehouse', 'retail_analytics');
    await rm(join(lake, 'landing', 'ingestion_volume', 'gw'), { recursive: true, force: true });
    await rm(join(lake, 'bronze', 't'), { recursive: true, force: true });
    await f.run();
    await f.client.query(`INSERT INTO t VALUES (4, 'four')`);
    await f.run();
    expect(await f.sql('SELECT id, v FROM bronze.t ORDER BY id')).toEqual([
      { id: 1, v: 'changed' },
      { id: 2, v: 'two' },
      { id: 3, v: 'three' },
      { id: 4, v: 'four' },
    ]);
  });

  it('stops with the exact ALTER PUBLICATION when a captured table is not published and the CDC user may not add it', async () => {
    await using f = await pgPipelineFixture({
      prefix: 'pg_pub_missing',
      setup: async (client) => {
        await client.query('CREATE TABLE a (id int PRIMARY KEY, v text)');
        await client.query('CREATE TABLE "B c" (id int PRIMARY KEY, v text)');
        await client.query(`INSERT INTO a VALUES (1, 'a'); INSERT INTO "B c" VALUES (1, 'b')`);
      },
      objects: (db) =>
        ['a', 'B c']
          .map(
            (t) => `      - table:
          source_catalog: ${db}
          source_schema: public
          source_table: "${t}"
          destination_catalog: retail_analytics
          destination_schema: bronze
          destination_table: ${t.replace(' ', '_').toLowerCase()}`,
          )
          .join('\n'),
    });
    // The administrator published one of the two tables; the CDC user owns neither, nor the publication.
    await f.client.query('DROP PUBLICATION tributary_gw');
    await f.client.query('CREATE PUBLICATION tributary_gw FOR TABLE a');
    const statement = 'ALTER PUBLICATION "tributary_gw" ADD TABLE "public"."B c";';
    const noSlot = async () =>
      expect(
        (await f.client.query("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'tributary_gw'")).rows,
      ).toEqual([]);

    // The source, asked to capture, refuses with SOURCE_PRIVILEGE_MISSING and the statement to run, before it
    // creates a slot that would hold WAL for a pipeline that cannot run.
    const { host, port } = inject('postgres');
    await using source = new PostgresSource(
      { name: 'src', host, port, database: f.db.name, user: f.user, password: f.password },
      { slot: 'tributary_gw', publication: 'tributary_gw', publishAllTables: false },
    );
    const signal = new AbortController().signal;
    const tables = await source.listTables(
      {
        tables: [
          { schema: 'public', table: 'a' },
          { schema: 'public', table: 'B c' },
        ],
        schemas: [],
      },
      signal,
    );
    const failure = await (async () => {
      for await (const _ of source.snapshot(tables, { chunkRows: 100, signal })) {
        // Not reached.
      }
    })().then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(TributaryError);
    expect((failure as TributaryError).code).toBe('SOURCE_PRIVILEGE_MISSING');
    expect((failure as TributaryError).message).toContain(`User "${f.user}"`);
    expect((failure as TributaryError).message).toContain('may not change the publication "tributary_gw"');
    expect((failure as TributaryError).hint).toContain(statement);
    await noSlot();

    // `tributary run` does not get that far: its preflight gate finds the publication incomplete first and
    // stops with the same statement, under SOURCE_MISCONFIGURED (run-pipeline.ts turns every failed
    // preflight check into that code).
    const r = await f.cli(['run', 'p', '--once']);
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toContain('error[SOURCE_MISCONFIGURED]');
    expect(r.stderr).toContain(
      'publication (publishes insert, update, delete, truncate; 1 table(s); does not publish public.B c)',
    );
    expect(r.stderr).toContain(statement);
    await noSlot();

    // The statement is exact: run as the administrator, it lets the pipeline run.
    await f.client.query(statement);
    await f.run();
    await f.client.query(`INSERT INTO "B c" VALUES (2, 'b2')`);
    await f.run();
    expect(await f.sql('SELECT id, v FROM bronze.b_c ORDER BY id')).toEqual([
      { id: 1, v: 'b' },
      { id: 2, v: 'b2' },
    ]);
  });
});
