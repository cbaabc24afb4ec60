/**
 * TOASTed values survive updates that leave them alone. With REPLICA IDENTITY DEFAULT, pgoutput does not send
 * a TOASTed value an UPDATE did not change: the new tuple marks it "unchanged" ('u') and the old tuple holds
 * the key only. Bronze must keep the value it has (or the one an earlier change of the same run carried),
 * never store NULL.
 *
 * Three tables run the same scenario side by side: REPLICA IDENTITY DEFAULT (copy-on-write apply), the same
 * with deletion vectors (merge-on-read apply), and REPLICA IDENTITY FULL (the old tuple carries the value).
 * `body` is stored EXTERNAL (out of line, uncompressed) and is 6,400 bytes, so every value of it is TOASTed.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AddFile } from '../../src/delta/actions.js';
import { type PgPipelineFixture, pgPipelineFixture } from '../harness/pg-pipeline-fixture.js';

const TABLES = ['t_default', 't_dv', 't_full'] as const;

/** A 6,400-byte value that names its version, so a stale one is told apart from the right one. */
const body = (tag: string) => `repeat(md5('${tag}'), 200)`;

async function sourceRows(f: PgPipelineFixture, table: string) {
  const r = await f.client.query(
    `SELECT id::text AS id, note, length(body)::text AS len, md5(body) AS hash FROM ${table} ORDER BY id`,
  );
  return r.rows as Record<string, string | null>[];
}

async function bronzeRows(f: PgPipelineFixture, table: string) {
  return f.sql(
    `SELECT CAST(id AS VARCHAR) AS id, note, CAST(length(body) AS VARCHAR) AS len, md5(body) AS hash
       FROM bronze.${table} ORDER BY id`,
  );
}

async function expectEqualToSource(f: PgPipelineFixture): Promise<void> {
  for (const table of TABLES) {
    const source = await sourceRows(f, table);
    expect(source.length, table).toBeGreaterThan(0);
    expect(
      source.every((r) => r['len'] === '6400'),
      table,
    ).toBe(true);
    expect(await bronzeRows(f, table), table).toEqual(source);
  }
}

async function each(f: PgPipelineFixture, statement: (table: string) => string): Promise<void> {
  for (const table of TABLES) await f.client.query(statement(table));
}

describe('TOASTed values that an UPDATE leaves unchanged (PostgreSQL)', () => {
  let f: PgPipelineFixture;

  beforeAll(async () => {
    f = await pgPipelineFixture({
      prefix: 'pg_toast',
      setup: async (client) => {
        for (const table of TABLES) {
          await client.query(`CREATE TABLE ${table} (id int PRIMARY KEY, note text, body text)`);
          await client.query(`ALTER TABLE ${table} ALTER COLUMN body SET STORAGE EXTERNAL`);
          for (const id of [1, 2, 3, 4]) {
            await client.query(`INSERT INTO ${table} VALUES (${id}, 'initial', ${body(`${table}-${id}`)})`);
          }
        }
        await client.query('ALTER TABLE t_full REPLICA IDENTITY FULL');
      },
      objects: (db) => `      - table:
          source_catalog: ${db}
          source_schema: public
          source_table: t_dv
          destination_catalog: retail_analytics
          destination_schema: bronze
          table_configuration:
            table_properties: { delta.enableDeletionVectors: "true" }
      - schema:
          source_catalog: ${db}
          source_schema: public
          destination_catalog: retail_analytics
          destination_schema: bronze`,
    });
    // Every body is out of line: the TOAST tables hold the values.
    for (const table of TABLES) {
      const toast = await f.client.query(
        `SELECT reltoastrelid::regclass::text AS t FROM pg_class WHERE oid = '${table}'::regclass`,
      );
      const chunks = await f.client.query(
        `SELECT count(DISTINCT chunk_id)::int AS n FROM ${(toast.rows[0] as { t: string }).t}`,
      );
      expect((chunks.rows[0] as { n: string }).n, table).toBe('4');
    }
    await f.run();
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('snapshots the large values whole', async () => {
    await expectEqualToSource(f);
  });

  it('keeps the value when another column of a snapshotted row is updated in a later run', async () => {
    await each(f, (t) => `UPDATE ${t} SET note = 'later run' WHERE id = 1`);
    await f.run();
    await expectEqualToSource(f);
  });

  it('keeps the value when the row is inserted and then updated in the same run', async () => {
    await each(f, (t) => `INSERT INTO ${t} VALUES (10, 'inserted', ${body(`${t}-10`)})`);
    await each(f, (t) => `UPDATE ${t} SET note = 'same run' WHERE id = 10`);
    // Insert and update in one transaction too.
    for (const t of TABLES) {
      await f.client.query('BEGIN');
      await f.client.query(`INSERT INTO ${t} VALUES (11, 'inserted', ${body(`${t}-11`)})`);
      await f.client.query(`UPDATE ${t} SET note = 'same transaction' WHERE id = 11`);
      await f.client.query('COMMIT');
    }
    await f.run();
    await expectEqualToSource(f);
  });

  it('keeps the value through several updates, in one run, one transaction and across runs', async () => {
    for (let i = 0; i < 3; i++)
      await each(f, (t) => `UPDATE ${t} SET note = 'update ${i}' WHERE id IN (2, 10)`);
    for (const t of TABLES) {
      await f.client.query('BEGIN');
      for (let i = 0; i < 3; i++) await f.client.query(`UPDATE ${t} SET note = 'txn ${i}' WHERE id = 11`);
      await f.client.query('COMMIT');
    }
    await f.run();
    await expectEqualToSource(f);
    // A change of the value itself, then more updates that leave it alone, in the same run.
    await each(f, (t) => `UPDATE ${t} SET body = ${body(`${t}-2-new`)} WHERE id = 2`);
    await each(f, (t) => `UPDATE ${t} SET note = 'after new body' WHERE id = 2`);
    await each(f, (t) => `UPDATE ${t} SET note = 'again' WHERE id = 1`);
    await f.run();
    await expectEqualToSource(f);
    await each(f, (t) => `UPDATE ${t} SET note = 'one more run' WHERE id IN (1, 2, 10, 11)`);
    await each(f, (t) => `DELETE FROM ${t} WHERE id = 11`);
    await f.run();
    await expectEqualToSource(f);
  });

  it('keeps the value when an update changes the primary key and leaves the value alone', async () => {
    // A snapshotted row moves to a new key; a row inserted in this run moves, then moves again.
    await each(f, (t) => `UPDATE ${t} SET id = 300 WHERE id = 3`);
    await each(f, (t) => `INSERT INTO ${t} VALUES (20, 'to move', ${body(`${t}-20`)})`);
    await each(f, (t) => `UPDATE ${t} SET id = 21, note = 'moved' WHERE id = 20`);
    await each(f, (t) => `UPDATE ${t} SET id = 22 WHERE id = 21`);
    await f.run();
    await expectEqualToSource(f);
    // Moved in a later run, then updated (the value still unchanged) in the same transaction.
    for (const t of TABLES) {
      await f.client.query('BEGIN');
      await f.client.query(`UPDATE ${t} SET id = 400 WHERE id = 4`);
      await f.client.query(`UPDATE ${t} SET note = 'after the move' WHERE id = 400`);
      await f.client.query('COMMIT');
    }
    await f.run();
    await expectEqualToSource(f);
  });

  it('applied t_dv with deletion vectors (merge-on-read), the others by rewriting files', async () => {
    const dvAdds = async (table: string) => {
      const log = join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', table, '_delta_log');
      let n = 0;
      for (const name of (await readdir(log)).filter((x) => x.endsWith('.json'))) {
        for (const line of (await readFile(join(log, name), 'utf8')).split('\n')) {
          if (line.startsWith('{"add"') && (JSON.parse(line) as { add: AddFile }).add.deletionVector) n++;
        }
      }
      return n;
    };
    expect(await dvAdds('t_dv')).toBeGreaterThan(0);
    expect(await dvAdds('t_default')).toBe(0);
  });
});
