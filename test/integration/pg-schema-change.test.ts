/**
 * Column changes on a captured PostgreSQL table between runs, with rows changing before and after the ALTER
 * in the same stretch of log: pgoutput sends a new Relation message, and the bronze table follows as it does
 * for MySQL (test/integration/ddl-stream.test.ts, capture-schema-change.test.ts):
 *
 * - ADD COLUMN: the column is added to bronze and carries the values the log shows;
 * - DROP COLUMN: the column stays in bronze (columns are only ever added) and is NULL for rows staged after;
 * - int → bigint: the bronze column is widened in place (Delta type widening) and keeps every value;
 * - an incompatible change (bigint → text) stops the table with SOURCE_SCHEMA_CHANGED, the rest applied, and
 *   the next run replaces the table by the full refresh the first one asked for.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadSnapshot } from '../../src/delta/snapshot.js';
import { type PgPipelineFixture, pgPipelineFixture } from '../harness/pg-pipeline-fixture.js';

/** Both sides as text: the source's columns, in bronze; `extra` are bronze columns the source no longer has. */
async function compare(f: PgPipelineFixture, table: string, options: { latest?: boolean } = {}) {
  const source = await f.client.query(`SELECT * FROM ${table} ORDER BY id`);
  const columns = source.fields.map((c) => c.name);
  const bronze = await f.sql(
    `SELECT ${columns.map((c) => `CAST("${c}" AS VARCHAR) AS "${c}"`).join(', ')} FROM bronze.${table} ORDER BY id`,
    options,
  );
  return { source: source.rows as Record<string, string | null>[], bronze };
}

async function expectEqualToSource(
  f: PgPipelineFixture,
  table: string,
  options: { latest?: boolean } = {},
): Promise<void> {
  const { source, bronze } = await compare(f, table, options);
  expect(bronze, table).toEqual(source);
}

describe('PostgreSQL column changes between runs', () => {
  let f: PgPipelineFixture;
  const bronzeFields = async (table: string) =>
    (await loadSnapshot(join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', table))).schema.fields;

  beforeAll(async () => {
    f = await pgPipelineFixture({
      prefix: 'pg_schema_change',
      setup: async (client) => {
        await client.query('CREATE TABLE t (id int PRIMARY KEY, a text, c int, n int)');
        await client.query(`INSERT INTO t SELECT g, 'row ' || g, g * 10, g FROM generate_series(1, 4) g`);
        await client.query('CREATE TABLE other (id int PRIMARY KEY, v text)');
        await client.query(`INSERT INTO other VALUES (1, 'one')`);
      },
    });
    await f.run();
    await expectEqualToSource(f, 't');
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('ADD COLUMN without a default: bronze gains the column and the values the log carries', async () => {
    await f.client.query(`INSERT INTO t VALUES (5, 'before the add', 50, 5)`);
    await f.client.query('ALTER TABLE t ADD COLUMN b text');
    await f.client.query(`INSERT INTO t VALUES (6, 'after the add', 60, 6, 'b of 6')`);
    await f.client.query(`UPDATE t SET b = 'b of 1' WHERE id = 1`);
    await f.client.query(`UPDATE t SET a = 'a of 2, b untouched' WHERE id = 2`);
    await f.run();
    expect((await bronzeFields('t')).map((c) => c.name)).toEqual([
      'id',
      'a',
      'c',
      'n',
      'b',
      '_commit_timestamp',
    ]);
    await expectEqualToSource(f, 't');
  });

  it('ADD COLUMN with a default: rows the log shows after it carry the default, rows it never shows stay NULL', async () => {
    await f.client.query(`UPDATE t SET a = 'updated before the add' WHERE id = 3`);
    await f.client.query('ALTER TABLE t ADD COLUMN d int NOT NULL DEFAULT 7');
    await f.client.query(`INSERT INTO t (id, a) VALUES (7, 'after the add')`);
    await f.client.query(`UPDATE t SET a = 'updated after the add' WHERE id = 4`);
    await f.run();
    const { source, bronze } = await compare(f, 't');
    // PostgreSQL 11+ adds such a column without rewriting the table: the existing rows read the default
    // (pg_attribute.attmissingval) but no change of theirs is in the log. Bronze has them as they were last
    // captured, with NULL in the new column, until a later change of the row carries the value. The same
    // holds for MySQL, whose binlog has no row events for an ADD COLUMN either.
    const expected = source.map((r) => (['4', '7'].includes(String(r['id'])) ? r : { ...r, d: null }));
    expect(bronze).toEqual(expected);
    expect(source.every((r) => r['d'] === '7')).toBe(true);
    // Any later change of a row carries the value; touching them all makes bronze equal the source.
    await f.client.query('UPDATE t SET a = a');
    await f.run();
    await expectEqualToSource(f, 't');
  });

  it('DROP COLUMN: bronze keeps the column, NULL for rows staged after the drop, old values elsewhere', async () => {
    await f.client.query(`UPDATE t SET c = 33 WHERE id = 3`);
    await f.client.query('ALTER TABLE t DROP COLUMN c');
    await f.client.query(`INSERT INTO t (id, a) VALUES (8, 'after the drop')`);
    await f.client.query(`UPDATE t SET a = 'updated after the drop' WHERE id = 4`);
    await f.run();
    expect((await bronzeFields('t')).map((c) => c.name)).toEqual([
      'id',
      'a',
      'c',
      'n',
      'b',
      'd',
      '_commit_timestamp',
    ]);
    await expectEqualToSource(f, 't');
    const c = await f.sql('SELECT id, CAST(c AS VARCHAR) AS c FROM bronze.t ORDER BY id');
    expect(c).toEqual([
      { id: 1, c: '10' },
      { id: 2, c: '20' },
      // Changed in the stretch of log that the run read with the shape after the drop: the values the
      // changes before the drop carried for `c` are not staged (the column is no longer captured).
      { id: 3, c: null },
      { id: 4, c: null },
      { id: 5, c: '50' },
      { id: 6, c: '60' },
      { id: 7, c: null },
      { id: 8, c: null },
    ]);
  });

  it('int → bigint: the bronze column is widened in place and keeps every value', async () => {
    await f.client.query(`UPDATE t SET n = 2147483647 WHERE id = 1`);
    await f.client.query('ALTER TABLE t ALTER COLUMN n TYPE bigint');
    await f.client.query(`INSERT INTO t (id, a, n) VALUES (9, 'after the widening', 1099511627776)`);
    await f.client.query(`UPDATE t SET n = -4611686018427387904 WHERE id = 2`);
    await f.run();
    const n = (await bronzeFields('t')).find((c) => c.name === 'n');
    expect(n?.type).toBe('long');
    expect(JSON.stringify(n?.metadata)).toContain('delta.typeChanges');
    await expectEqualToSource(f, 't');
    // And in a later run, with the shape read as bigint from the start.
    await f.client.query(`UPDATE t SET n = 9223372036854775807 WHERE id = 3`);
    await f.run();
    await expectEqualToSource(f, 't');
  });

  it('an incompatible change (bigint → text) stops the table with SOURCE_SCHEMA_CHANGED; other tables go on', async () => {
    await f.client.query('ALTER TABLE t ALTER COLUMN n TYPE text');
    await f.client.query(`UPDATE t SET n = 'not a number' WHERE id = 1`);
    await f.client.query(`INSERT INTO other VALUES (2, 'two')`);
    const r = await f.cli(['run', 'p', '--once']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('SOURCE_SCHEMA_CHANGED');
    expect(r.stderr).toContain('n: long -> string');
    expect(r.stderr).toMatch(/full refresh/i);
    // Applied; seen at its newest version, since the failing table holds the consistent cut back.
    await expectEqualToSource(f, 'other', { latest: true });
    expect(r.stderr).toContain('A full refresh of the table was requested (schema_evolution: evolve)');
    // The next run takes that refresh: a new snapshot replaces the table, text column and all.
    const next = await f.cli(['run', 'p', '--once']);
    expect(next.code, next.stderr).toBe(0);
    await expectEqualToSource(f, 't');
    await expectEqualToSource(f, 'other');
  });
});
