/**
 * `tributary refresh`: a table re-snapshotted while the current one stays queryable, replaced in one commit,
 * resumable after a crash, with the changes made meanwhile applied after it.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSnapshot } from '../../src/delta/snapshot.js';
import { type PipelineFixture, pipelineFixture, sourceAndBronze } from '../harness/pipeline-fixture.js';

const SMALL = { TRIBUTARY_SNAPSHOT_CHUNK_ROWS: '400' };

describe('tributary refresh', () => {
  let f: PipelineFixture;
  const commits = async (table: string) => {
    const log = join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', table, '_delta_log');
    return (await readdir(log)).filter((n) => /^\d{20}\.json$/.test(n)).sort();
  };
  const expectEqual = async (table: string) => {
    const { source, bronze } = await sourceAndBronze(f, table, 'id');
    expect(bronze.map(({ _commit_timestamp, ...rest }) => rest)).toEqual(source);
  };

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'refresh',
      setup: async (conn) => {
        await conn.query('CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(40))');
        await conn.query('CREATE TABLE other (id INT PRIMARY KEY, label VARCHAR(40))');
        await conn.query('INSERT INTO items VALUES ?', [
          Array.from({ length: 3000 }, (_, i) => [i + 1, `item ${i + 1}`]),
        ]);
        await conn.query("INSERT INTO other VALUES (1, 'o')");
        await conn.query('CREATE TABLE typed (id INT PRIMARY KEY, code INT)');
        await conn.query('INSERT INTO typed VALUES (1, 10), (2, 20)');
      },
    });
    const r = await f.cli(['run', 'p', '--once'], { env: SMALL });
    expect(r.code, r.stderr).toBe(0);
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('repairs a table that drifted from the source, replacing it in one commit', async () => {
    // Changes the binlog never saw: only a new snapshot can bring bronze back in line.
    await f.conn.query('SET SESSION sql_log_bin = 0');
    await f.conn.query("UPDATE items SET label = 'drifted' WHERE id <= 100");
    await f.conn.query('DELETE FROM items WHERE id > 2900');
    await f.conn.query('SET SESSION sql_log_bin = 1');
    const before = await commits('items');
    const otherBefore = await commits('other');
    const r = await f.cli(['refresh', 'p', '--table', 'items'], { env: SMALL });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('full refresh of');
    await expectEqual('items');
    // 8 snapshot segments of 400 rows, one commit; the other table was not touched.
    expect((await commits('items')).length).toBe(before.length + 1);
    expect(await commits('other')).toEqual(otherBefore);
    const last = (
      await readFile(
        join(
          f.dir,
          'lakehouse',
          'retail_analytics',
          'bronze',
          'items',
          '_delta_log',
          (await commits('items')).at(-1) as string,
        ),
        'utf8',
      )
    )
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(last.filter((a) => 'add' in a).length).toBeGreaterThan(0);
    expect(last.filter((a) => 'remove' in a).length).toBeGreaterThan(0);
  });

  it('keeps the current table queryable through a crashed refresh, resumes it, and applies the changes made meanwhile', async () => {
    await f.conn.query('SET SESSION sql_log_bin = 0');
    await f.conn.query("UPDATE items SET label = 'drifted again' WHERE id <= 10");
    await f.conn.query('SET SESSION sql_log_bin = 1');
    const killed = await f.cli(['refresh', 'p', '--table', 'items'], {
      env: { ...SMALL, TRIBUTARY_FAULT: 'after-snapshot-segment:3' },
    });
    expect(killed.signal).toBe('SIGKILL');
    // The old table, whole: 2900 rows, none of the new snapshot.
    expect(await f.sql('SELECT count(*) AS n FROM bronze.items')).toEqual([{ n: 2900 }]);
    // Changes while the refresh is half done.
    await f.conn.query("UPDATE items SET label = 'during refresh' WHERE id = 5");
    await f.conn.query("INSERT INTO items VALUES (5000, 'new during refresh')");
    const resumed = await f.cli(['run', 'p', '--once'], { env: SMALL });
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stderr).toContain('resuming the snapshot');
    await expectEqual('items');
    // Done: the next run does not refresh again.
    const next = await f.cli(['run', 'p', '--once'], { env: SMALL });
    expect(next.stderr).not.toContain('full refresh of');
  });

  it('repairs a table whose column changed to a type Delta cannot widen to, replacing its schema', async () => {
    await f.conn.query('ALTER TABLE typed MODIFY code VARCHAR(10)');
    await f.conn.query("UPDATE typed SET code = 'x1' WHERE id = 1");
    const stopped = await f.cli(['run', 'p', '--once']);
    expect(stopped.code).not.toBe(0);
    expect(stopped.stderr).toContain('SOURCE_SCHEMA_CHANGED');
    // schema_evolution is evolve (the default): the pipeline asked for the refresh itself.
    expect(stopped.stderr).toContain('A full refresh of the table was requested');

    const r = await f.cli(['run', 'p', '--once'], { env: SMALL });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('full refresh of');
    await expectEqual('typed');
    const table = await loadSnapshot(join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', 'typed'));
    expect(table.schema.fields.find((c) => c.name === 'code')?.type).toBe('string');
    const next = await f.cli(['run', 'p', '--once']);
    expect(next.code, next.stderr).toBe(0);
  });

  it('names an unknown table clearly', async () => {
    const r = await f.cli(['refresh', 'p', '--table', 'nope.nope']);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('Pipeline p has no table "nope.nope"');
  });
});
