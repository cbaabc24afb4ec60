import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TributaryError } from '../../core/errors.js';
import { decodePgoutput, UNCHANGED_TOAST } from './pgoutput.js';
import type { ReplicationFrame } from './replication-stream.js';
import {
  type AssembledItem,
  type DecodedChange,
  TransactionAssembler,
  type TransactionAssemblerOptions,
  type TransactionChunk,
} from './transaction-assembler.js';

/** pgoutput messages, byte by byte as documented. `xid` is the stream-block prefix, when given. */
class Bytes {
  readonly #parts: Buffer[] = [];
  static of(tag: string, streamXid?: number): Bytes {
    const b = new Bytes().char(tag);
    return streamXid === undefined ? b : b.int32(streamXid);
  }
  char(c: string): this {
    return this.int8(c.charCodeAt(0));
  }
  int8(v: number): this {
    this.#parts.push(Buffer.from([v]));
    return this;
  }
  int16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    this.#parts.push(b);
    return this;
  }
  int32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    this.#parts.push(b);
    return this;
  }
  int64(v: bigint): this {
    const b = Buffer.alloc(8);
    b.writeBigInt64BE(v);
    this.#parts.push(b);
    return this;
  }
  string(s: string): this {
    this.#parts.push(Buffer.from(s, 'utf8'), Buffer.from([0]));
    return this;
  }
  tuple(...columns: Array<string | null | 'unchanged'>): this {
    this.int16(columns.length);
    for (const c of columns) {
      if (c === null) this.char('n');
      else if (c === 'unchanged') this.char('u');
      else {
        const text = Buffer.from(c, 'utf8');
        this.char('t').int32(text.length);
        this.#parts.push(text);
      }
    }
    return this;
  }
  done(): Uint8Array {
    return Buffer.concat(this.#parts);
  }
}

const ORDERS = 16_385;
const ITEMS = 16_390;

const begin = (xid: number, commitLsn: bigint) =>
  Bytes.of('B').int64(commitLsn).int64(1_000_000n).int32(xid).done();
const commit = (commitLsn: bigint, endLsn: bigint) =>
  Bytes.of('C').int8(0).int64(commitLsn).int64(endLsn).int64(1_000_000n).done();
const relation = (
  oid: number,
  name: string,
  columns: Array<[string, number, boolean]>,
  streamXid?: number,
) => {
  const b = Bytes.of('R', streamXid).int32(oid).string('shop').string(name).char('d').int16(columns.length);
  for (const [column, type, key] of columns)
    b.int8(key ? 1 : 0)
      .string(column)
      .int32(type)
      .int32(-1);
  return b.done();
};
const ordersRelation = (streamXid?: number) =>
  relation(
    ORDERS,
    'orders',
    [
      ['id', 20, true],
      ['body', 25, false],
    ],
    streamXid,
  );
const itemsRelation = (streamXid?: number) => relation(ITEMS, 'items', [['id', 23, true]], streamXid);
const insert = (oid: number, values: string[], streamXid?: number) =>
  Bytes.of('I', streamXid)
    .int32(oid)
    .char('N')
    .tuple(...values)
    .done();
const streamStart = (xid: number, first: boolean) =>
  Bytes.of('S')
    .int32(xid)
    .int8(first ? 1 : 0)
    .done();
const streamStop = () => Bytes.of('E').done();
const streamCommit = (xid: number, commitLsn: bigint, endLsn: bigint) =>
  Bytes.of('c').int32(xid).int8(0).int64(commitLsn).int64(endLsn).int64(2_000_000n).done();
const streamAbort = (xid: number, subxid: number) => Bytes.of('A').int32(xid).int32(subxid).done();
const KEEPALIVE = Symbol('keepalive');

/** Frames as ReplicationStream delivers them: decoded with the stream-block state, raw bytes alongside. */
async function* framesOf(messages: Array<Uint8Array | typeof KEEPALIVE>): AsyncGenerator<ReplicationFrame> {
  let inStream = false;
  let lsn = 0x1000n;
  for (const raw of messages) {
    lsn += 0x10n;
    if (raw === KEEPALIVE) {
      yield { kind: 'keepalive', walEnd: lsn, sendTime: 0n, replyRequested: false };
      continue;
    }
    const message = decodePgoutput(raw, { inStream });
    if (message.tag === 'streamStart') inStream = true;
    if (message.tag === 'streamStop') inStream = false;
    yield { kind: 'xlog', walStart: lsn, walEnd: lsn, sendTime: 0n, message, raw };
  }
}

let spoolDir: string;
beforeEach(async () => {
  spoolDir = await mkdtemp(join(tmpdir(), 'tributary-assembler-'));
});
afterEach(async () => {
  await rm(spoolDir, { recursive: true, force: true });
});

async function assemble(
  messages: Array<Uint8Array | typeof KEEPALIVE>,
  options: Partial<TransactionAssemblerOptions> = {},
): Promise<AssembledItem[]> {
  const assembler = await TransactionAssembler.create({ spoolDir, ...options });
  const items: AssembledItem[] = [];
  try {
    for await (const item of assembler.assemble(framesOf(messages))) items.push(item);
  } finally {
    await assembler.close();
  }
  return items;
}

const chunks = (items: AssembledItem[]) =>
  items.filter((i): i is TransactionChunk => i.kind === 'transaction');
/** Compact view of changes: kind plus the first column of the relevant tuple. */
const summary = (changes: readonly DecodedChange[]) =>
  changes.map((c) => {
    switch (c.kind) {
      case 'relation':
        return `relation ${c.relation.name}`;
      case 'insert':
        return `insert ${c.relation.name} ${String(c.after[0])}`;
      case 'update':
        return `update ${c.relation.name} ${String(c.after[0])}`;
      case 'delete':
        return `delete ${c.relation.name} ${String(c.before[0])}`;
      case 'truncate':
        return `truncate ${c.relation.name}`;
      default:
        return `message ${c.prefix}`;
    }
  });

describe('TransactionAssembler: regular transactions', () => {
  it('assembles Begin … Commit with the relation, its changes and the resume position', async () => {
    const items = await assemble([
      begin(700, 0x5000n),
      ordersRelation(),
      insert(ORDERS, ['1', 'a']),
      Bytes.of('U').int32(ORDERS).char('K').tuple('1', null).char('N').tuple('2', 'unchanged').done(),
      Bytes.of('D').int32(ORDERS).char('K').tuple('2', null).done(),
      commit(0x5000n, 0x5030n),
    ]);
    expect(items).toHaveLength(1);
    const [tx] = chunks(items);
    expect(tx).toMatchObject({
      kind: 'transaction',
      xid: 700,
      commitLsn: 0x5000n,
      endLsn: 0x5030n,
      commitTime: 1_000_000n + 946_684_800_000_000n,
      streamed: false,
      final: true,
    });
    const orders = {
      oid: ORDERS,
      namespace: 'shop',
      name: 'orders',
      replicaIdentity: 'default',
      columns: [
        { name: 'id', typeOid: 20, typmod: -1, isKey: true },
        { name: 'body', typeOid: 25, typmod: -1, isKey: false },
      ],
    };
    expect(tx?.changes).toEqual([
      { kind: 'relation', relation: orders, previous: undefined },
      { kind: 'insert', relation: orders, after: ['1', 'a'] },
      {
        kind: 'update',
        relation: orders,
        before: ['1', null],
        beforeKind: 'key',
        after: ['2', UNCHANGED_TOAST],
      },
      { kind: 'delete', relation: orders, before: ['2', null], beforeKind: 'key' },
    ]);
  });

  it('reports a relation only when it is new or its shape changed', async () => {
    const items = await assemble([
      begin(1, 0x10n),
      ordersRelation(),
      insert(ORDERS, ['1', 'a']),
      commit(0x10n, 0x18n),
      begin(2, 0x20n),
      ordersRelation(),
      insert(ORDERS, ['2', 'b']),
      commit(0x20n, 0x28n),
      begin(3, 0x30n),
      relation(ORDERS, 'orders', [
        ['id', 20, true],
        ['body', 25, false],
        ['added', 1700, false],
      ]),
      insert(ORDERS, ['3', 'c', '1.5']),
      commit(0x30n, 0x38n),
    ]);
    const txs = chunks(items);
    expect(txs.map((t) => summary(t.changes))).toEqual([
      ['relation orders', 'insert orders 1'],
      ['insert orders 2'],
      ['relation orders', 'insert orders 3'],
    ]);
    const changed = txs[2]?.changes[0];
    expect(changed?.kind === 'relation' && changed.previous?.columns.length).toBe(2);
  });

  it('splits a large transaction into bounded chunks; only the last is final and has the end LSN', async () => {
    const rows = Array.from({ length: 2_500 }, (_, i) => insert(ORDERS, [String(i), 'x']));
    const items = await assemble([begin(9, 0x9000n), ordersRelation(), ...rows, commit(0x9000n, 0x9100n)], {
      maxChunkChanges: 1_000,
    });
    const txs = chunks(items);
    expect(txs.map((t) => [t.changes.length, t.final, t.endLsn])).toEqual([
      [1_000, false, undefined],
      [1_000, false, undefined],
      [501, true, 0x9100n],
    ]);
    expect(txs.every((t) => t.commitLsn === 0x9000n && t.xid === 9)).toBe(true);
    const inserted = txs.flatMap((t) => t.changes).filter((c) => c.kind === 'insert');
    expect(inserted.map((c) => c.kind === 'insert' && c.after[0])).toEqual(rows.map((_, i) => String(i)));
  });

  it('bounds chunks by bytes as well', async () => {
    const big = 'x'.repeat(100_000);
    const rows = Array.from({ length: 10 }, (_, i) => insert(ORDERS, [String(i), big]));
    const items = await assemble([begin(9, 0x90n), ordersRelation(), ...rows, commit(0x90n, 0x98n)], {
      maxChunkBytes: 250_000,
    });
    expect(chunks(items).map((t) => t.changes.length)).toEqual([4, 3, 3, 1]);
  });

  it('expands a truncate of several relations into one change per relation', async () => {
    const items = await assemble([
      begin(5, 0x50n),
      ordersRelation(),
      itemsRelation(),
      Bytes.of('T').int32(2).int8(1).int32(ORDERS).int32(ITEMS).done(),
      commit(0x50n, 0x58n),
    ]);
    const changes = chunks(items)[0]?.changes ?? [];
    expect(summary(changes)).toEqual([
      'relation orders',
      'relation items',
      'truncate orders',
      'truncate items',
    ]);
    expect(changes[2]).toMatchObject({ cascade: true, restartIdentity: false });
  });

  it('passes transactional messages and the origin through, and skips non-transactional messages', async () => {
    const message = (transactional: boolean) =>
      Bytes.of('M')
        .int8(transactional ? 1 : 0)
        .int64(0x44n)
        .string('marker')
        .int32(0)
        .done();
    const items = await assemble([
      message(false),
      begin(6, 0x60n),
      Bytes.of('O').int64(0x1n).string('pg_16400').done(),
      message(true),
      commit(0x60n, 0x68n),
    ]);
    expect(chunks(items)).toHaveLength(1);
    expect(chunks(items)[0]).toMatchObject({
      origin: 'pg_16400',
      changes: [{ kind: 'message', prefix: 'marker' }],
    });
  });

  it('yields progress for keepalives between transactions only', async () => {
    const items = await assemble([
      KEEPALIVE,
      begin(1, 0x10n),
      KEEPALIVE,
      commit(0x10n, 0x18n),
      streamStart(2, true),
      KEEPALIVE,
      streamStop(),
      KEEPALIVE,
    ]);
    expect(items.map((i) => i.kind)).toEqual(['progress', 'transaction', 'progress']);
  });

  it('refuses a change of a relation it was never told about', async () => {
    await expect(assemble([begin(1, 0x10n), insert(ORDERS, ['1', 'a'])])).rejects.toThrow(
      /relation OID 16385 before its Relation message/,
    );
    await expect(assemble([begin(1, 0x10n), ordersRelation(), insert(ORDERS, ['1'])])).rejects.toThrow(
      /1 columns for shop.orders, which has 2/,
    );
    await expect(assemble([commit(1n, 2n)])).rejects.toBeInstanceOf(TributaryError);
  });
});

describe('TransactionAssembler: streamed transactions', () => {
  it('spools interleaved stream blocks and replays each transaction at its commit, in commit order', async () => {
    const A = 1_001;
    const B = 1_002;
    const items = await assemble([
      streamStart(A, true),
      ordersRelation(A),
      insert(ORDERS, ['a1', 'x'], A),
      insert(ORDERS, ['a2', 'x'], A),
      streamStop(),
      streamStart(B, true),
      itemsRelation(B),
      insert(ITEMS, ['b1'], B),
      streamStop(),
      // A small transaction committing while both are in progress is passed on as is.
      begin(1_003, 0x7000n),
      itemsRelation(),
      insert(ITEMS, ['c1']),
      commit(0x7000n, 0x7008n),
      streamStart(A, false),
      insert(ORDERS, ['a3', 'x'], A),
      streamStop(),
      streamCommit(B, 0x7100n, 0x7108n),
      streamStart(A, false),
      Bytes.of('D', A).int32(ORDERS).char('K').tuple('a1', null).done(),
      streamStop(),
      streamCommit(A, 0x7200n, 0x7208n),
    ]);
    const txs = chunks(items);
    expect(txs.map((t) => [t.xid, t.streamed, t.final, t.commitLsn, t.endLsn])).toEqual([
      [1_003, false, true, 0x7000n, 0x7008n],
      [B, true, true, 0x7100n, 0x7108n],
      [A, true, true, 0x7200n, 0x7208n],
    ]);
    expect(txs.map((t) => summary(t.changes))).toEqual([
      ['relation items', 'insert items c1'],
      // items was already known with this shape from the small transaction.
      ['insert items b1'],
      ['relation orders', 'insert orders a1', 'insert orders a2', 'insert orders a3', 'delete orders a1'],
    ]);
    expect(await readdir(spoolDir)).toEqual([]);
  });

  it('drops an aborted streamed transaction and its spool', async () => {
    const items = await assemble([
      streamStart(5, true),
      ordersRelation(5),
      insert(ORDERS, ['1', 'x'], 5),
      streamStop(),
      streamAbort(5, 5),
      KEEPALIVE,
    ]);
    expect(items.map((i) => i.kind)).toEqual(['progress']);
    expect(await readdir(spoolDir)).toEqual([]);
  });

  it('drops only an aborted subtransaction (and its children), keeping shapes it announced', async () => {
    const T = 2_000;
    const items = await assemble([
      streamStart(T, true),
      ordersRelation(T),
      insert(ORDERS, ['t1', 'x'], T),
      // SAVEPOINT s1: the first change of a table seen only inside it brings its Relation message.
      itemsRelation(2_001),
      insert(ITEMS, ['s1'], 2_001),
      // SAVEPOINT s2 inside s1.
      insert(ORDERS, ['s2', 'x'], 2_002),
      streamStop(),
      // ROLLBACK TO s1: the server sends an abort for each.
      streamAbort(T, 2_002),
      streamAbort(T, 2_001),
      // A subtransaction without spooled changes is nothing to drop.
      streamAbort(T, 2_999),
      streamStart(T, false),
      insert(ITEMS, ['t2'], T),
      insert(ORDERS, ['s3', 'x'], 2_003),
      streamStop(),
      streamCommit(T, 0x8000n, 0x8008n),
    ]);
    expect(chunks(items).map((t) => summary(t.changes))).toEqual([
      ['relation orders', 'insert orders t1', 'relation items', 'insert items t2', 'insert orders s3'],
    ]);
  });

  it('replays a large streamed transaction in bounded chunks, records spanning read buffers intact', async () => {
    const T = 3_000;
    const body = (i: number) => `${i}:${'y'.repeat(70_000 + (i % 7) * 1_111)}`;
    const blocks: Uint8Array[] = [];
    for (let block = 0; block < 6; block++) {
      blocks.push(streamStart(T, block === 0));
      if (block === 0) blocks.push(ordersRelation(T));
      for (let i = block * 50; i < (block + 1) * 50; i++)
        blocks.push(insert(ORDERS, [String(i), body(i)], T));
      blocks.push(streamStop());
    }
    const items = await assemble([...blocks, streamCommit(T, 0x9000n, 0x9008n)], { maxChunkChanges: 64 });
    const txs = chunks(items);
    expect(txs.every((t) => t.changes.length <= 64 && t.endLsn === 0x9008n && t.streamed)).toBe(true);
    expect(txs.map((t) => t.final)).toEqual([...txs.slice(1).map(() => false), true]);
    const rows = txs.flatMap((t) => t.changes).filter((c) => c.kind === 'insert');
    expect(rows).toHaveLength(300);
    rows.forEach((c, i) => {
      expect(c.kind === 'insert' && c.after).toEqual([String(i), body(i)]);
    });
  });

  it('yields a final empty chunk when every change was rolled back, so the position still advances', async () => {
    const items = await assemble([
      streamStart(4, true),
      ordersRelation(4),
      insert(ORDERS, ['1', 'x'], 41),
      streamStop(),
      streamAbort(4, 41),
      streamCommit(4, 0x40n, 0x48n),
    ]);
    expect(chunks(items)).toMatchObject([{ final: true, endLsn: 0x48n, changes: [{ kind: 'relation' }] }]);
  });

  it('refuses stream segments it cannot place', async () => {
    await expect(assemble([streamStart(7, false)])).rejects.toThrow(/later segment of unknown xid 7/);
    await expect(assemble([streamStart(7, true), streamStop(), streamStart(7, true)])).rejects.toThrow(
      /second first segment/,
    );
    await expect(assemble([streamCommit(8, 1n, 2n)])).rejects.toThrow(/unknown xid 8/);
  });

  it('clears spool files of an earlier run and of unfinished transactions', async () => {
    await writeFile(join(spoolDir, '77.spool'), 'left over');
    await writeFile(join(spoolDir, 'keep.txt'), 'not ours');
    const assembler = await TransactionAssembler.create({ spoolDir });
    expect(await readdir(spoolDir)).toEqual(['keep.txt']);
    const unfinished = framesOf([streamStart(9, true), ordersRelation(9), streamStop(), KEEPALIVE]);
    for await (const item of assembler.assemble(unfinished)) {
      expect(item.kind).toBe('progress');
      expect((await readdir(spoolDir)).sort()).toEqual(['9.spool', 'keep.txt']);
    }
    // The session is over: the next one streams the transaction again from its start.
    expect(await readdir(spoolDir)).toEqual(['keep.txt']);
  });
});
