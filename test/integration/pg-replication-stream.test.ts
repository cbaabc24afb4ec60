/**
 * The PostgreSQL replication stack against a real server: ReplicationStream over `pg` in replication mode,
 * our pgoutput decoder, and the TransactionAssembler. Runs its own throwaway PostgreSQL, because it needs a
 * tiny logical_decoding_work_mem (so transactions get streamed), a short wal_sender_timeout (so keepalives ask
 * for replies), and it invalidates a slot on purpose.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TributaryError } from '../../src/core/errors.js';
import { formatLsn, parseLsn } from '../../src/sources/postgres/lsn.js';
import { type PgoutputTag, UNCHANGED_TOAST } from '../../src/sources/postgres/pgoutput.js';
import {
  type ReplicationFrame,
  ReplicationStream,
  type ReplicationStreamOptions,
} from '../../src/sources/postgres/replication-stream.js';
import {
  type AssembledItem,
  type DecodedChange,
  TransactionAssembler,
} from '../../src/sources/postgres/transaction-assembler.js';
import { type PostgresServer, startPostgres } from '../../src/testing/postgres-server.js';

let server: PostgresServer;
let admin: pg.Client;
let spoolRoot: string;

beforeAll(async () => {
  server = await startPostgres({ settings: { logical_decoding_work_mem: '64kB', wal_sender_timeout: '2s' } });
  admin = new pg.Client(connection());
  await admin.connect();
  spoolRoot = await mkdtemp(join(tmpdir(), 'tributary-pg-spool-'));
});

afterAll(async () => {
  await admin?.end();
  await server?.stop();
  if (spoolRoot) await rm(spoolRoot, { recursive: true, force: true });
});

function connection(): pg.ClientConfig {
  return {
    host: server.host,
    port: server.port,
    user: server.user,
    password: server.password,
    database: 'postgres',
  };
}

/** A schema with two tables, a publication of both and a fresh slot; returns the slot's start LSN. */
async function prepare(name: string): Promise<bigint> {
  await admin.query(`
    CREATE SCHEMA ${name};
    CREATE TABLE ${name}.orders (id bigint PRIMARY KEY, body text, note text);
    -- Out of line and uncompressed, so an update that leaves body alone sends it as 'unchanged'.
    ALTER TABLE ${name}.orders ALTER COLUMN body SET STORAGE EXTERNAL;
    CREATE TABLE ${name}.items (id int PRIMARY KEY, v text);
    CREATE PUBLICATION ${name}_pub FOR TABLE ${name}.orders, ${name}.items;`);
  const { rows } = await admin.query<{ lsn: string }>(
    `SELECT lsn::text FROM pg_create_logical_replication_slot('${name}_slot', 'pgoutput')`,
  );
  return parseLsn(rows[0]?.lsn ?? '');
}

interface Session {
  readonly stream: ReplicationStream;
  readonly controller: AbortController;
  readonly assembler: TransactionAssembler;
  readonly items: AsyncIterator<AssembledItem>;
  /** pgoutput tags and stream aborts seen, to show which protocol paths a test went through. */
  readonly seen: Map<PgoutputTag, number>;
  readonly subtransactionAborts: number[];
}

async function open(
  name: string,
  startLsn: bigint,
  options: Partial<ReplicationStreamOptions> = {},
): Promise<Session> {
  // @types/pg leaves out `replication`, which pg passes to the server in the startup message.
  const config: pg.ClientConfig & { replication: 'database' } = { ...connection(), replication: 'database' };
  const client = new pg.Client(config);
  await client.connect();
  const controller = new AbortController();
  const stream = new ReplicationStream(client, {
    slot: `${name}_slot`,
    publications: [`${name}_pub`],
    startLsn,
    statusIntervalMs: 100,
    label: `test server ${name}`,
    signal: controller.signal,
    ...options,
  });
  await stream.start();
  const assembler = await TransactionAssembler.create({
    spoolDir: join(spoolRoot, name),
    maxChunkChanges: 500,
  });
  const seen = new Map<PgoutputTag, number>();
  const subtransactionAborts: number[] = [];
  async function* tap(frames: AsyncIterable<ReplicationFrame>): AsyncGenerator<ReplicationFrame> {
    for await (const frame of frames) {
      if (frame.kind === 'xlog') {
        const m = frame.message;
        seen.set(m.tag, (seen.get(m.tag) ?? 0) + 1);
        if (m.tag === 'streamAbort' && m.xid !== m.subxid) subtransactionAborts.push(m.subxid);
      }
      yield frame;
    }
  }
  const items = assembler.assemble(tap(stream))[Symbol.asyncIterator]();
  return { stream, controller, assembler, items, seen, subtransactionAborts };
}

async function stop(session: Session): Promise<void> {
  session.controller.abort();
  await session.items.next().catch(() => undefined);
  await session.stream.close();
  await session.assembler.close();
}

interface Transaction {
  readonly xid: number;
  readonly streamed: boolean;
  readonly commitLsn: bigint;
  readonly endLsn: bigint;
  readonly chunks: number;
  readonly changes: DecodedChange[];
}

/** The next `count` whole transactions; `afterChunk` runs after every chunk (a slow consumer, say). */
async function take(
  session: Session,
  count: number,
  afterChunk?: () => Promise<void>,
): Promise<Transaction[]> {
  const out: Transaction[] = [];
  let changes: DecodedChange[] = [];
  let chunks = 0;
  while (out.length < count) {
    const next = await session.items.next();
    if (next.done) throw new Error('the stream ended');
    const item = next.value;
    if (item.kind === 'progress') continue;
    changes.push(...item.changes);
    chunks++;
    await afterChunk?.();
    if (!item.final) continue;
    if (item.endLsn === undefined) throw new Error('a final chunk without an end LSN');
    out.push({
      xid: item.xid,
      streamed: item.streamed,
      commitLsn: item.commitLsn,
      endLsn: item.endLsn,
      chunks,
      changes,
    });
    changes = [];
    chunks = 0;
  }
  return out;
}

function summary(changes: readonly DecodedChange[]): string[] {
  const show = (v: unknown) =>
    v === UNCHANGED_TOAST
      ? '<unchanged>'
      : typeof v === 'string' && v.length > 12
        ? `<${v.length} chars>`
        : String(v);
  return changes.map((c) => {
    const name = `${c.kind} ${'relation' in c ? c.relation.name : ''}`;
    switch (c.kind) {
      case 'insert':
        return `${name} ${c.after.map(show).join(',')}`;
      case 'update':
        return `${name} ${c.beforeKind ?? '-'}:${c.before?.map(show).join(',') ?? ''} ${c.after.map(show).join(',')}`;
      case 'delete':
        return `${name} ${c.beforeKind}:${c.before.map(show).join(',')}`;
      case 'truncate':
        return `${name} cascade=${c.cascade} restart=${c.restartIdentity}`;
      default:
        return name;
    }
  });
}

async function slotState(slot: string): Promise<{ confirmed: bigint; active: boolean; walStatus: string }> {
  const { rows } = await admin.query<{ c: string; active: boolean; wal_status: string }>(
    `SELECT confirmed_flush_lsn::text AS c, active, wal_status FROM pg_replication_slots WHERE slot_name = $1`,
    [slot],
  );
  const row = rows[0];
  if (!row) throw new Error(`no slot ${slot}`);
  return { confirmed: parseLsn(row.c), active: row.active, walStatus: row.wal_status };
}

/** Polls the slot while `work` runs; fails if confirmed_flush_lsn ever passes what `confirmed()` says. */
async function watchingSlot<T>(
  slot: string,
  confirmed: () => bigint,
  work: () => Promise<T>,
): Promise<[T, number]> {
  let running = true;
  let polls = 0;
  const violations: string[] = [];
  const poller = (async () => {
    while (running) {
      // Read the bound before the slot: confirm() only grows, so a slot value above it is a real violation.
      const bound = confirmed();
      const { confirmed: atServer } = await slotState(slot);
      if (atServer > bound) violations.push(`${formatLsn(atServer)} > ${formatLsn(bound)}`);
      polls++;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  try {
    return [await work(), polls];
  } finally {
    running = false;
    await poller;
    expect(violations).toEqual([]);
  }
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('PostgreSQL logical replication', () => {
  it('decodes inserts, updates (key change, unchanged TOAST), deletes and a truncate of several tables', async () => {
    const start = await prepare('basic');
    const toasted = Array.from({ length: 2_000 }, (_, i) => `${i}:${(i * 7_919) % 1_000}`).join('|');
    await admin.query(`INSERT INTO basic.orders VALUES (1, 'one', 'n1'), (2, 'two', NULL)`);
    await admin.query(`INSERT INTO basic.orders VALUES (3, $1, 'toast')`, [toasted]);
    await admin.query(`UPDATE basic.orders SET note = 'changed' WHERE id = 3`);
    await admin.query(`UPDATE basic.orders SET id = 20 WHERE id = 2`);
    await admin.query(`DELETE FROM basic.orders WHERE id = 1`);
    await admin.query(`INSERT INTO basic.items VALUES (1, 'a')`);
    await admin.query(`TRUNCATE basic.orders, basic.items RESTART IDENTITY`);

    const session = await open('basic', start);
    try {
      const txs = await take(session, 7);
      expect(txs.map((t) => summary(t.changes))).toEqual([
        ['relation orders', 'insert orders 1,one,n1', 'insert orders 2,two,null'],
        [`insert orders 3,<${toasted.length} chars>,toast`],
        ['update orders -: 3,<unchanged>,changed'],
        ['update orders key:2,null,null 20,two,null'],
        ['delete orders key:1,null,null'],
        ['relation items', 'insert items 1,a'],
        ['truncate orders cascade=false restart=true', 'truncate items cascade=false restart=true'],
      ]);
      expect(txs.every((t) => !t.streamed && t.endLsn > t.commitLsn)).toBe(true);
      const orders = txs[0]?.changes[0];
      expect(orders?.kind === 'relation' && orders.relation).toMatchObject({
        namespace: 'basic',
        name: 'orders',
        replicaIdentity: 'default',
        columns: [
          { name: 'id', typeOid: 20, typmod: -1, isKey: true },
          { name: 'body', typeOid: 25, isKey: false },
          { name: 'note', typeOid: 25, isKey: false },
        ],
      });
      // The update's body really was left out by the server, not sent as NULL.
      const update = txs[2]?.changes[0];
      expect(update?.kind === 'update' && update.after[1]).toBe(UNCHANGED_TOAST);
    } finally {
      await stop(session);
    }
  });

  it('receives a transaction over logical_decoding_work_mem streamed and reproduces it exactly', async () => {
    const start = await prepare('big');
    await admin.query('BEGIN');
    await admin.query(
      `INSERT INTO big.orders SELECT g, repeat(md5(g::text), 4), 'big' FROM generate_series(1000, 5999) g`,
    );
    await admin.query('SAVEPOINT s1');
    await admin.query(
      `INSERT INTO big.orders SELECT g, repeat(md5(g::text), 4), 'rolled back' FROM generate_series(10000, 12999) g`,
    );
    await admin.query('ROLLBACK TO SAVEPOINT s1');
    await admin.query(`UPDATE big.orders SET note = 'updated' WHERE id BETWEEN 1000 AND 1999`);
    await admin.query(`DELETE FROM big.orders WHERE id BETWEEN 5000 AND 5099`);
    await admin.query('COMMIT');
    const expected = await admin.query<{ id: string; body: string; note: string }>(
      'SELECT id::text, body, note FROM big.orders ORDER BY id',
    );
    // A large transaction that rolls back entirely, then a small one to know the end was reached.
    await admin.query('BEGIN');
    await admin.query(
      `INSERT INTO big.orders SELECT g, repeat(md5(g::text), 4), 'aborted' FROM generate_series(20000, 24999) g`,
    );
    await admin.query('ROLLBACK');
    await admin.query(`INSERT INTO big.items VALUES (1, 'marker')`);

    const session = await open('big', start, { highWaterBytes: 64 * 1024 });
    let confirmed = start;
    try {
      const [txs, polls] = await watchingSlot(
        'big_slot',
        () => confirmed,
        async () => {
          // A slow consumer that makes each transaction durable one transaction late.
          const got: Transaction[] = [];
          while (got.length < 2) {
            const [tx] = await take(session, 1, () => new Promise((resolve) => setTimeout(resolve, 2)));
            if (!tx) break;
            const previous = got.at(-1);
            if (previous) {
              session.stream.confirm(previous.endLsn);
              confirmed = previous.endLsn;
            }
            got.push(tx);
          }
          await new Promise((resolve) => setTimeout(resolve, 300));
          return got;
        },
      );
      expect(polls).toBeGreaterThan(10);
      const [big, marker] = txs;
      expect(big?.streamed).toBe(true);
      expect(big?.chunks).toBeGreaterThan(10);
      expect(session.seen.get('streamStart')).toBeGreaterThan(1);
      // The rolled-back savepoint had been streamed and then aborted on its own; the full rollback too.
      expect(session.subtransactionAborts.length).toBeGreaterThanOrEqual(1);
      expect(session.seen.get('streamAbort')).toBeGreaterThanOrEqual(2);
      expect(summary(marker?.changes ?? [])).toEqual(['relation items', 'insert items 1,marker']);

      // Replaying the changes in order yields exactly the committed table.
      const table = new Map<string, readonly unknown[]>();
      for (const c of big?.changes ?? []) {
        if (c.kind === 'insert' || c.kind === 'update') table.set(String(c.after[0]), c.after);
        if (c.kind === 'delete') table.delete(String(c.before[0]));
      }
      const rows = [...table.values()].sort((a, b) => Number(a[0]) - Number(b[0]));
      expect(rows).toEqual(expected.rows.map((r) => [r.id, r.body, r.note]));
      expect(big?.changes.filter((c) => c.kind === 'insert')).toHaveLength(5_000);
      expect(big?.changes.filter((c) => c.kind === 'update')).toHaveLength(1_000);
      expect(big?.changes.filter((c) => c.kind === 'delete')).toHaveLength(100);

      // Nothing was confirmed past the big transaction's end; the marker is still unconfirmed.
      expect((await slotState('big_slot')).confirmed).toBe(big?.endLsn);
    } finally {
      await stop(session);
    }
  });

  it('answers keepalives with the confirmed LSN only, and stays connected on those replies alone', async () => {
    const start = await prepare('quiet');
    for (let i = 1; i <= 3; i++) await admin.query(`INSERT INTO quiet.items VALUES (${i}, 'v')`);
    // No timed updates: only replies to the server's keepalives (sent after wal_sender_timeout / 2 = 1 s).
    const session = await open('quiet', start, { statusIntervalMs: 600_000 });
    let confirmed = start;
    try {
      await watchingSlot(
        'quiet_slot',
        () => confirmed,
        async () => {
          const [first] = await take(session, 3);
          if (!first) throw new Error('no transaction');
          session.stream.confirm(first.endLsn);
          confirmed = first.endLsn;
          // Keepalives arrive and are turned into progress items; none of them moves the slot.
          for (let progress = 0; progress < 3; ) {
            const next = await session.items.next();
            if (!next.done && next.value.kind === 'progress') progress++;
          }
          await until('the slot to reach the confirmed LSN', async () =>
            (await slotState('quiet_slot')).confirmed === first.endLsn ? true : undefined,
          );
        },
      );
      // Still the same walsender well past wal_sender_timeout (2 s), kept alive by those replies alone.
      const pid = async () =>
        (
          await admin.query<{ pid: number }>(
            `SELECT active_pid AS pid FROM pg_replication_slots WHERE slot_name = 'quiet_slot'`,
          )
        ).rows[0]?.pid;
      const before = await pid();
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      expect(await pid()).toBe(before);
      expect(before).toBeTypeOf('number');
      expect((await slotState('quiet_slot')).confirmed).toBe(confirmed);
      await admin.query(`INSERT INTO quiet.items VALUES (4, 'late')`);
      const [late] = await take(session, 1);
      expect(summary(late?.changes ?? [])).toEqual(['insert items 4,late']);
    } finally {
      await stop(session);
    }
  });

  it('sends again, after a restart, everything that was not confirmed; stops cleanly on abort', async () => {
    const start = await prepare('again');
    for (let i = 1; i <= 3; i++) await admin.query(`INSERT INTO again.items VALUES (${i}, 'v')`);
    const first = await open('again', start);
    const txs = await take(first, 3);
    const [t1, t2, t3] = txs;
    if (!t1 || !t2 || !t3) throw new Error('missing transactions');
    first.stream.confirm(t1.endLsn);
    await stop(first);
    const stopped = await until('the slot to be released', async () => {
      const state = await slotState('again_slot');
      return state.active ? undefined : state;
    });
    expect(stopped.confirmed).toBe(t1.endLsn);

    const second = await open('again', t1.endLsn);
    try {
      const again = await take(second, 2);
      expect(again.map((t) => [t.xid, t.endLsn])).toEqual([
        [t2.xid, t2.endLsn],
        [t3.xid, t3.endLsn],
      ]);
    } finally {
      await stop(second);
    }
  });

  it('turns a terminated walsender into a transient SOURCE_UNREACHABLE', async () => {
    const start = await prepare('cut');
    const session = await open('cut', start);
    try {
      // Keepalives become progress items; the loop ends with the failure.
      const drained = (async () => {
        for (;;) if ((await session.items.next()).done) return undefined;
      })().catch((e: unknown) => e);
      await until('the walsender to be active', async () =>
        (await slotState('cut_slot')).active ? true : undefined,
      );
      await admin.query(
        `SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = 'cut_slot'`,
      );
      const error = await drained;
      expect(error).toBeInstanceOf(TributaryError);
      expect(error).toMatchObject({ code: 'SOURCE_UNREACHABLE', retry: 'transient' });
      expect((error as TributaryError).message).toMatch(
        /terminating connection due to administrator command/,
      );
    } finally {
      await stop(session);
    }
  });

  it('reports a missing slot as SOURCE_HISTORY_LOST, whether found by the check or by the server', async () => {
    await prepare('gone');
    await admin.query(`SELECT pg_drop_replication_slot('gone_slot')`);
    for (const checkSlot of [true, false]) {
      const error = await open('gone', 0n, { checkSlot }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(TributaryError);
      expect(error).toMatchObject({ code: 'SOURCE_HISTORY_LOST', retry: 'resnapshot' });
      expect((error as TributaryError).hint).toMatch(/full refresh/);
    }
  });

  it('reports an invalidated slot (WAL removed past max_slot_wal_keep_size) as SOURCE_HISTORY_LOST', async () => {
    const start = await prepare('lost');
    await admin.query(`ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'`);
    await admin.query('SELECT pg_reload_conf()');
    try {
      await until('the slot to be invalidated', async () => {
        await admin.query(`INSERT INTO lost.items SELECT coalesce(max(id), 0) + 1, 'x' FROM lost.items`);
        await admin.query('SELECT pg_switch_wal()');
        await admin.query('CHECKPOINT');
        return (await slotState('lost_slot')).walStatus === 'lost' ? true : undefined;
      });
      for (const checkSlot of [true, false]) {
        const error = await open('lost', start, { checkSlot }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toMatchObject({ code: 'SOURCE_HISTORY_LOST', retry: 'resnapshot' });
        expect((error as TributaryError).message).toMatch(/lost_slot/);
        expect((error as TributaryError).hint).toMatch(/full refresh/);
      }
    } finally {
      await admin.query('ALTER SYSTEM RESET max_slot_wal_keep_size');
      await admin.query('SELECT pg_reload_conf()');
    }
  });
});
