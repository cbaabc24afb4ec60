/**
 * One contract for every SourceConnector, run against MariaDB and PostgreSQL alike: what the pipeline relies
 * on, stated once. A new source passes this suite before it is wired into the app.
 */
import { randomBytes } from 'node:crypto';
import type { Connection } from 'mysql2/promise';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ChangeBatch, ChangeEvent } from '../../src/core/change.js';
import { isTributaryError } from '../../src/core/errors.js';
import type { SourceConnector } from '../../src/core/ports.js';
import type { Position } from '../../src/core/position.js';
import type { TableSchema } from '../../src/core/table.js';
import { MySqlSource } from '../../src/sources/mysql/mysql-source.js';
import { PostgresSource } from '../../src/sources/postgres/postgres-source.js';
import { type FreshDatabase, freshDatabase } from '../harness/mysql.js';
import { type FreshPgDatabase, freshPgDatabase } from '../harness/postgres.js';

/** What the contract needs of each source under test. */
interface Subject {
  readonly source: SourceConnector;
  /** The schema name the source uses for the test's tables. */
  readonly schema: string;
  /** Runs SQL on the source as an admin; `?` placeholders. */
  exec(sql: string, params?: unknown[]): Promise<void>;
  dispose(): Promise<void>;
}

async function mysqlSubject(): Promise<Subject> {
  const db: FreshDatabase = await freshDatabase('contract');
  const conn: Connection = db.conn;
  const { host, port, user, password } = inject('mysql');
  const source = new MySqlSource({ name: 'contract', host, port, user, password }, { serverId: 7777 });
  return {
    source,
    schema: db.name,
    exec: async (sql, params = []) => {
      await conn.query(sql, params);
    },
    dispose: async () => {
      await source[Symbol.asyncDispose]();
      await db.drop();
    },
  };
}

async function postgresSubject(): Promise<Subject> {
  const db: FreshPgDatabase = await freshPgDatabase('contract');
  const client: pg.Client = db.client;
  const { host, port, user, password } = inject('postgres');
  const suffix = randomBytes(3).toString('hex');
  const source = new PostgresSource(
    { name: 'contract', host, port, user, password, database: db.name },
    { slot: `contract_${suffix}`, publication: `contract_${suffix}`, publishAllTables: true },
  );
  return {
    source,
    schema: 'public',
    exec: async (sql, params = []) => {
      let n = 0;
      await client.query(
        sql.replace(/\?/g, () => `$${++n}`),
        params,
      );
    },
    dispose: async () => {
      await source[Symbol.asyncDispose]();
      await db.drop();
    },
  };
}

const signal = () => AbortSignal.timeout(60_000);

async function collect(batches: AsyncIterable<ChangeBatch>): Promise<ChangeBatch[]> {
  const out: ChangeBatch[] = [];
  for await (const b of batches) out.push(b);
  return out;
}

/** Events of the captured table, without schema events, as comparable tuples. */
function rowEvents(batches: readonly ChangeBatch[]): string[] {
  return batches.flatMap((b) =>
    b.events
      .filter((e): e is Exclude<ChangeEvent, { kind: 'schema' }> => e.kind !== 'schema')
      .map((e) => {
        switch (e.kind) {
          case 'truncate':
            return 'truncate';
          case 'delete':
            return `delete ${String(e.before['id'])}`;
          case 'read':
          case 'insert':
            return `${e.kind} ${String(e.after['id'])} ${String(e.after['label'])}`;
          case 'update':
            return `update ${String(e.after['id'])} ${String(e.after['label'])}`;
          default:
            throw new Error(`unexpected event ${JSON.stringify(e)}`);
        }
      }),
  );
}

for (const [name, makeSubject] of [
  ['MariaDB', mysqlSubject],
  ['PostgreSQL', postgresSubject],
] as const) {
  describe(`SourceConnector contract: ${name}`, () => {
    let s: Subject;
    let table: TableSchema;
    let after: Position;

    beforeAll(async () => {
      s = await makeSubject();
      await s.exec('CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(20), qty INT)');
      await s.exec('CREATE TABLE other (id INT PRIMARY KEY)');
      await s.exec("INSERT INTO items VALUES (1, 'one', 1), (2, 'two', 2), (3, 'three', 3)");
    });
    afterAll(async () => {
      await s?.dispose();
    });

    it('describes itself and lists the base tables of a schema', async () => {
      expect(await s.source.describe(signal())).toMatch(name === 'MariaDB' ? /^MariaDB / : /^PostgreSQL /);
      expect(await s.source.tableNames(s.schema, signal())).toEqual(['items', 'other']);
    });

    it('resolves a selection to shapes with Delta types and keys, and refuses unknown tables', async () => {
      const tables = await s.source.listTables(
        { tables: [{ schema: s.schema, table: 'items' }], schemas: [] },
        signal(),
      );
      expect(tables).toHaveLength(1);
      table = tables[0] as TableSchema;
      expect(table.primaryKey).toEqual(['id']);
      expect(table.columns.map((c) => [c.name, c.type])).toEqual([
        ['id', 'integer'],
        ['label', 'string'],
        ['qty', 'integer'],
      ]);
      const missing = await s.source
        .listTables({ tables: [{ schema: s.schema, table: 'nope' }], schemas: [] }, signal())
        .catch((e: unknown) => e);
      expect(isTributaryError(missing) && missing.code).toBe('SOURCE_TABLE_NOT_FOUND');
    });

    it('snapshots in key order, in bounded chunks, all at one position', async () => {
      const batches = await collect(s.source.snapshot([table], { chunkRows: 2, signal: signal() }));
      expect(rowEvents(batches)).toEqual(['read 1 one', 'read 2 two', 'read 3 three']);
      expect(batches.every((b) => b.origin === 'snapshot' && b.events.length <= 2)).toBe(true);
      expect(new Set(batches.map((b) => b.position)).size).toBe(1);
      expect(batches.at(-1)?.snapshotTableComplete).toBe(true);
      after = batches[0]?.position as Position;
    });

    it('resumes a snapshot after a given key', async () => {
      const batches = await collect(
        s.source.snapshot([table], {
          chunkRows: 10,
          signal: signal(),
          afterKeys: new Map([[`${s.schema}.items`, { id: '1' }]]),
        }),
      );
      expect(rowEvents(batches)).toEqual(['read 2 two', 'read 3 three']);
    });

    it('streams whole transactions in order from the snapshot position, up to a given head', async () => {
      await s.exec("INSERT INTO items VALUES (4, 'four', 4)");
      await s.exec('BEGIN');
      await s.exec("UPDATE items SET label = 'TWO' WHERE id = 2");
      await s.exec('DELETE FROM items WHERE id = 3');
      await s.exec('INSERT INTO other VALUES (1)');
      await s.exec('COMMIT');
      await s.exec('TRUNCATE TABLE items');
      await s.exec("INSERT INTO items VALUES (5, 'five', 5)");
      const head = await s.source.readHead(signal());
      expect(head > after).toBe(true);
      const batches = await collect(
        s.source.stream(after, { tables: [table], until: head, signal: signal() }),
      );
      expect(rowEvents(batches)).toEqual([
        'insert 4 four',
        'update 2 TWO',
        'delete 3',
        'truncate',
        'insert 5 five',
      ]);
      const complete = batches.filter((b) => b.complete);
      expect(complete.length).toBeGreaterThanOrEqual(4);
      // Positions never go back, and the last one reaches the head.
      const positions = complete.map((b) => b.position);
      expect(positions).toEqual([...positions].sort());
      expect((positions.at(-1) as Position) >= head).toBe(true);
      // The transaction with an update and a delete is one batch, never split.
      expect(batches.some((b) => rowEvents([b]).join() === 'update 2 TWO,delete 3')).toBe(true);
      for (const b of complete) s.source.acknowledge(b.position);
      after = positions.at(-1) as Position;
    });

    it('streams from a later position without repeating what came before it', async () => {
      await s.exec("INSERT INTO items VALUES (6, 'six', 6)");
      const head = await s.source.readHead(signal());
      const batches = await collect(
        s.source.stream(after, { tables: [table], until: head, signal: signal() }),
      );
      expect(rowEvents(batches)).toEqual(['insert 6 six']);
    });
  });
}
