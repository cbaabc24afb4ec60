/**
 * Positions staged before GTIDs were recorded are plain `<file>:<offset>`. Streaming from one resumes exactly
 * there, and the positions it hands out carry the right GTID state from the first batch on: the state the
 * server itself reports at the head (checked by string equality with readHead), both when MariaDB is asked
 * for the state at the old offset (BINLOG_GTID_POS) and when it is learnt from the start of the binlog file
 * (the way it is done on MySQL, which has no such function).
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ChangeBatch } from '../../src/core/change.js';
import { asPosition, type Position } from '../../src/core/position.js';
import type { TableSchema } from '../../src/core/table.js';
import { decodeBinlogPosition } from '../../src/sources/mysql/binlog-position.js';
import { readBinlog } from '../../src/sources/mysql/binlog-reader.js';
import { MySqlSource } from '../../src/sources/mysql/mysql-source.js';
import { type FreshDatabase, freshDatabase } from '../harness/mysql.js';

async function collect(batches: AsyncIterable<ChangeBatch>): Promise<ChangeBatch[]> {
  const out: ChangeBatch[] = [];
  for await (const b of batches) out.push(b);
  return out;
}

describe('positions staged before GTIDs were recorded', () => {
  let db: FreshDatabase;
  let source: MySqlSource;
  let tables: readonly TableSchema[];
  let legacy: Position;
  let head: Position;
  const signal = new AbortController().signal;

  beforeAll(async () => {
    const { host, port, user, password } = inject('mysql');
    db = await freshDatabase('legacypos');
    await db.conn.query('CREATE TABLE t (id INT PRIMARY KEY, v INT)');
    source = new MySqlSource({ name: 'test', host, port, user, password }, { serverId: 4343 });
    tables = await source.listTables({ tables: [{ schema: db.name, table: 't' }], schemas: [] }, signal);
    const start = decodeBinlogPosition(await source.readHead(signal));
    // What an older Tributary stored: the file and the zero-padded offset, nothing else.
    legacy = asPosition(`${start.file}:${String(start.offset).padStart(20, '0')}`);
    await db.conn.query('INSERT INTO t VALUES (1, 1), (2, 2)');
    await db.conn.query('UPDATE t SET v = 10 WHERE id = 1');
    await db.conn.query('DELETE FROM t WHERE id = 2');
    head = await source.readHead(signal);
  });
  afterAll(async () => {
    await source?.[Symbol.asyncDispose]();
    await db?.drop();
  });

  const check = (batches: ChangeBatch[]) => {
    const changes = batches.flatMap((b) => b.events);
    expect(changes.map((e) => e.kind)).toEqual(['insert', 'insert', 'update', 'delete']);
    expect(batches.at(-1)?.position).toBe(head);
    const positions = batches.map((b) => b.position);
    expect([...positions].sort()).toEqual(positions);
    expect(positions.every((p) => p > legacy)).toBe(true);
  };

  it('resumes exactly there, with the GTID state MariaDB reports for that offset', async () => {
    check(await collect(source.stream(legacy, { tables, until: head, signal })));
  });

  it('resumes exactly there when the GTID state is learnt from the start of the file instead', async () => {
    const { host, port, user, password } = inject('mysql');
    const at = decodeBinlogPosition(legacy);
    const server = decodeBinlogPosition(head);
    if (server.legacy) throw new Error('readHead returned an old position');
    const batches = await collect(
      readBinlog(
        { name: 'test', host, port, user, password },
        legacy,
        { kind: 'file', file: at.file, offset: at.offset, gtid: undefined, ordinal: 0n },
        { tables, until: head, signal, serverId: 4344, server: server.server },
      ),
    );
    check(batches);
  });
});
