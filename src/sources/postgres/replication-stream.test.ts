import { EventEmitter } from 'node:events';
import type { Client } from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { TributaryError } from '../../core/errors.js';
import { parseLsn } from './lsn.js';
import {
  classifyReplicationError,
  type ReplicationFrame,
  ReplicationStream,
  type ReplicationStreamOptions,
} from './replication-stream.js';

const PG_EPOCH_US = 946_684_800_000_000n;

/** pg's Connection as far as the stream uses it: events in, CopyData/CopyDone out, a pausable socket. */
class FakeConnection extends EventEmitter {
  readonly sent: Buffer[] = [];
  copyDone = 0;
  paused = false;
  pauses = 0;
  onCopyDone: (() => void) | undefined;
  readonly stream = {
    pause: () => {
      this.paused = true;
      this.pauses++;
    },
    resume: () => {
      this.paused = false;
    },
  };
  sendCopyFromChunk(chunk: Buffer): void {
    this.sent.push(Buffer.from(chunk));
  }
  endCopyFrom(): void {
    this.copyDone++;
    this.onCopyDone?.();
  }
  /** Standby status updates sent so far, decoded. */
  statusUpdates(): Array<{ write: bigint; flush: bigint; apply: bigint; clientTime: bigint }> {
    return this.sent
      .filter((b) => b[0] === 0x72)
      .map((b) => ({
        write: b.readBigUInt64BE(1),
        flush: b.readBigUInt64BE(9),
        apply: b.readBigUInt64BE(17),
        clientTime: b.readBigInt64BE(25),
      }));
  }
}

class FakeClient extends EventEmitter {
  readonly connection = new FakeConnection();
  readonly queries: string[] = [];
  slotRow: Record<string, unknown> | undefined = {
    slot_type: 'logical',
    plugin: 'pgoutput',
    database: 'app',
    current_database: 'app',
    confirmed: '0/1000',
    wal_status: 'reserved',
  };
  ended = false;
  #replication: { resolve: () => void; reject: (error: unknown) => void } | undefined;

  constructor() {
    super();
    // The server acknowledges CopyDone with its own, then CommandComplete: the query resolves.
    this.connection.onCopyDone = () => this.#replication?.resolve();
  }

  query(text: string): Promise<unknown> {
    this.queries.push(text);
    if (text.startsWith('SELECT')) return Promise.resolve({ rows: this.slotRow ? [this.slotRow] : [] });
    return new Promise((resolve, reject) => {
      this.#replication = { resolve: () => resolve({ rows: [] }), reject };
      setImmediate(() => this.connection.emit('replicationStart'));
    });
  }

  failReplication(error: unknown): void {
    this.#replication?.reject(error);
  }

  endReplication(): void {
    this.#replication?.resolve();
  }

  end(): Promise<void> {
    this.ended = true;
    this.#replication?.reject(new Error('Connection terminated'));
    return Promise.resolve();
  }

  xlog(walStart: bigint, message: Uint8Array): Buffer {
    const frame = Buffer.alloc(25 + message.length);
    frame.write('w', 0, 'latin1');
    frame.writeBigUInt64BE(walStart, 1);
    frame.writeBigUInt64BE(walStart, 9);
    frame.writeBigInt64BE(5n, 17);
    Buffer.from(message).copy(frame, 25);
    this.connection.emit('copyData', { chunk: frame });
    return frame;
  }

  keepalive(walEnd: bigint, replyRequested: boolean): void {
    const frame = Buffer.alloc(18);
    frame.write('k', 0, 'latin1');
    frame.writeBigUInt64BE(walEnd, 1);
    frame.writeBigInt64BE(7n, 9);
    frame.writeUInt8(replyRequested ? 1 : 0, 17);
    this.connection.emit('copyData', { chunk: frame });
  }
}

const begin = (xid: number) => {
  const b = Buffer.alloc(21);
  b.write('B', 0, 'latin1');
  b.writeBigUInt64BE(0x2000n, 1);
  b.writeBigInt64BE(0n, 9);
  b.writeUInt32BE(xid, 17);
  return b;
};
const commit = (endLsn: bigint) => {
  const b = Buffer.alloc(26);
  b.write('C', 0, 'latin1');
  b.writeBigUInt64BE(endLsn - 8n, 2);
  b.writeBigUInt64BE(endLsn, 10);
  return b;
};
const streamStart = (xid: number) => Buffer.from([0x53, 0, 0, xid >> 8, xid & 0xff, 1]);
const streamedInsert = (xid: number) =>
  Buffer.from([0x49, 0, 0, xid >> 8, xid & 0xff, 0, 0, 0x40, 0x01, 0x4e, 0, 1, 0x74, 0, 0, 0, 1, 0x37]);

const streams: ReplicationStream[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) await s.close();
});

function setup(options: Partial<ReplicationStreamOptions> = {}) {
  const client = new FakeClient();
  const controller = new AbortController();
  const stream = new ReplicationStream(client as unknown as Client, {
    slot: 'tributary_slot',
    publications: ['tributary_pub'],
    startLsn: 0x1000n,
    signal: controller.signal,
    ...options,
  });
  streams.push(stream);
  return { client, controller, stream, frames: stream.frames() };
}

async function next(frames: AsyncIterator<ReplicationFrame>): Promise<ReplicationFrame> {
  const result = await frames.next();
  if (result.done) throw new Error('stream ended');
  return result.value;
}

async function rejection(promise: Promise<unknown>): Promise<TributaryError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(TributaryError);
    return error as TributaryError;
  }
  throw new Error('did not fail');
}

describe('ReplicationStream: starting', () => {
  it('builds START_REPLICATION with quoted names and the requested options', () => {
    const { stream } = setup({
      slot: 'odd"slot',
      publications: ['pub', "it's"],
      startLsn: parseLsn('16/B374D848'),
    });
    expect(stream.startCommand()).toBe(
      `START_REPLICATION SLOT "odd""slot" LOGICAL 16/B374D848 (proto_version '2', publication_names '"pub","it''s"', streaming 'on', messages 'true')`,
    );
    const v1 = setup({ protocolVersion: 1, messages: false }).stream;
    expect(v1.startCommand()).toBe(
      `START_REPLICATION SLOT "tributary_slot" LOGICAL 0/1000 (proto_version '1', publication_names '"tributary_pub"')`,
    );
  });

  it('checks the slot first, then starts', async () => {
    const { client, stream } = setup();
    await stream.start();
    expect(client.queries[0]).toMatch(/FROM pg_replication_slots s WHERE slot_name = 'tributary_slot'/);
    expect(client.queries[1]).toMatch(/^START_REPLICATION/);
  });

  it('fails with SOURCE_HISTORY_LOST (resnapshot) when the slot is gone, lost, or confirmed past the start', async () => {
    const missing = setup();
    missing.client.slotRow = undefined;
    const e1 = await rejection(missing.stream.start());
    expect([e1.code, e1.retry]).toEqual(['SOURCE_HISTORY_LOST', 'resnapshot']);
    expect(e1.hint).toMatch(/full refresh/);
    expect(missing.client.ended).toBe(true);

    const lost = setup();
    lost.client.slotRow = { ...lost.client.slotRow, wal_status: 'lost' };
    expect((await rejection(lost.stream.start())).code).toBe('SOURCE_HISTORY_LOST');

    const ahead = setup();
    ahead.client.slotRow = { ...ahead.client.slotRow, confirmed: '0/2000' };
    const e3 = await rejection(ahead.stream.start());
    expect(e3.code).toBe('SOURCE_HISTORY_LOST');
    expect(e3.message).toMatch(/confirmed up to 0\/2000, past the saved position 0\/1000/);
    expect(ahead.client.queries).toHaveLength(1);
  });

  it('refuses a slot of another plugin or database', async () => {
    const wrongPlugin = setup();
    wrongPlugin.client.slotRow = { ...wrongPlugin.client.slotRow, plugin: 'wal2json' };
    expect((await rejection(wrongPlugin.stream.start())).code).toBe('SOURCE_MISCONFIGURED');
    const wrongDb = setup();
    wrongDb.client.slotRow = { ...wrongDb.client.slotRow, database: 'other' };
    expect((await rejection(wrongDb.stream.start())).message).toMatch(/belongs to database "other"/);
  });

  it('ends the client it owns when aborted before or while starting', async () => {
    const before = setup();
    before.controller.abort();
    await expect(before.stream.start()).rejects.toMatchObject({ name: 'AbortError' });
    expect(before.client.ended).toBe(true);
    expect(before.client.queries).toEqual([]);

    const during = setup();
    const starting = during.stream.start();
    during.controller.abort();
    await expect(starting).rejects.toMatchObject({ name: 'AbortError' });
    expect(during.client.ended).toBe(true);
  });

  it('classifies a START_REPLICATION the server refuses', async () => {
    const { client, stream } = setup({ checkSlot: false });
    client.query = (text: string) => {
      client.queries.push(text);
      return Promise.reject(
        Object.assign(new Error('replication slot "tributary_slot" does not exist'), { code: '42704' }),
      );
    };
    const error = await rejection(stream.start());
    expect([error.code, error.retry]).toEqual(['SOURCE_HISTORY_LOST', 'resnapshot']);
    expect(client.queries).toEqual([expect.stringMatching(/^START_REPLICATION/)]);
  });
});

describe('ReplicationStream: frames', () => {
  it('decodes XLogData and keepalives in order, tracking stream blocks', async () => {
    const { client, stream, frames } = setup();
    await stream.start();
    client.xlog(0x1100n, begin(42));
    client.keepalive(0x1200n, false);
    client.xlog(0x1300n, streamStart(0x77));
    client.xlog(0x1400n, streamedInsert(0x78));
    expect(await next(frames)).toMatchObject({
      kind: 'xlog',
      walStart: 0x1100n,
      walEnd: 0x1100n,
      sendTime: 5n + PG_EPOCH_US,
      message: { tag: 'begin', xid: 42, finalLsn: 0x2000n },
    });
    expect(await next(frames)).toEqual({
      kind: 'keepalive',
      walEnd: 0x1200n,
      sendTime: 7n + PG_EPOCH_US,
      replyRequested: false,
    });
    expect(await next(frames)).toMatchObject({ message: { tag: 'streamStart', xid: 0x77 } });
    const insert = await next(frames);
    expect(insert).toMatchObject({
      message: { tag: 'insert', xid: 0x78, relationOid: 0x4001, newTuple: ['7'] },
    });
    expect(insert.kind === 'xlog' && Buffer.from(insert.raw)).toEqual(streamedInsert(0x78));
  });

  it('owns the bytes of queued frames: pg reuses its read buffer', async () => {
    const { client, stream, frames } = setup();
    await stream.start();
    const sent = client.xlog(0x1100n, begin(42));
    sent.fill(0);
    expect(await next(frames)).toMatchObject({ message: { tag: 'begin', xid: 42 } });
  });

  it('pauses the socket while the queue is over its high water mark and resumes once drained', async () => {
    const { client, stream, frames } = setup({ highWaterBytes: 200 });
    await stream.start();
    for (let i = 0; i < 10; i++) client.xlog(0x1100n + BigInt(i), begin(i));
    expect(client.connection.paused).toBe(true);
    expect(client.connection.pauses).toBe(1);
    // 10 frames of 46 bytes: resumed once no more than half the high water mark (100 bytes) waits.
    for (let i = 0; i < 7; i++) await next(frames);
    expect(client.connection.paused).toBe(true);
    await next(frames);
    expect(client.connection.paused).toBe(false);
  });
});

describe('ReplicationStream: status updates report only the confirmed LSN', () => {
  it('answers a keepalive that asks at once, with the confirmed LSN, never the keepalive position', async () => {
    const { client, stream, frames } = setup();
    await stream.start();
    client.keepalive(0x9000n, true);
    expect(client.connection.statusUpdates()).toMatchObject([
      { write: 0x1000n, flush: 0x1000n, apply: 0x1000n },
    ]);
    const now = BigInt(Date.now()) * 1000n - PG_EPOCH_US;
    const clientTime = client.connection.statusUpdates()[0]?.clientTime ?? 0n;
    expect(clientTime > now - 5_000_000n && clientTime <= now + 5_000_000n).toBe(true);

    client.xlog(0x1100n, begin(1));
    client.xlog(0x1180n, commit(0x1180n));
    await next(frames);
    await next(frames);
    await next(frames);
    stream.confirm(0x1180n);
    client.keepalive(0x9000n, true);
    client.keepalive(0x9100n, false);
    expect(client.connection.statusUpdates().map((u) => u.flush)).toEqual([0x1000n, 0x1180n]);
    expect(stream.confirmedLsn).toBe(0x1180n);
  });

  it('sends status updates on its interval', async () => {
    const { client, stream } = setup({ statusIntervalMs: 20 });
    await stream.start();
    await new Promise((resolve) => setTimeout(resolve, 110));
    const updates = client.connection.statusUpdates();
    expect(updates.length).toBeGreaterThanOrEqual(3);
    expect(updates.every((u) => u.write === 0x1000n && u.flush === 0x1000n && u.apply === 0x1000n)).toBe(
      true,
    );
  });

  it('never moves back, and refuses an LSN beyond anything received', async () => {
    const { client, stream, frames } = setup();
    await stream.start();
    expect(() => stream.confirm(0x1001n)).toThrow(/beyond the last one received \(0\/1000\)/);
    client.xlog(0x1100n, begin(1));
    // Queued but not yet handed to the consumer: still not confirmable.
    expect(() => stream.confirm(0x1100n)).toThrow(TributaryError);
    await next(frames);
    stream.confirm(0x1100n);
    stream.confirm(0x1050n);
    expect(stream.confirmedLsn).toBe(0x1100n);
    client.keepalive(0x1200n, false);
    await next(frames);
    stream.confirm(0x1200n);
    expect(stream.confirmedLsn).toBe(0x1200n);
  });
});

describe('ReplicationStream: ending', () => {
  it('stops cleanly on abort: a last status update, CopyDone, the client ended', async () => {
    const { client, controller, stream, frames } = setup();
    await stream.start();
    client.xlog(0x1100n, begin(1));
    await next(frames);
    stream.confirm(0x1100n);
    const pending = frames.next();
    controller.abort();
    await expect(pending).rejects.toMatchObject({ name: 'AbortError' });
    expect(client.connection.copyDone).toBe(1);
    expect(client.connection.statusUpdates().at(-1)?.flush).toBe(0x1100n);
    expect(client.ended).toBe(true);
  });

  it('delivers frames received before a failure, then the classified failure', async () => {
    const { client, stream, frames } = setup();
    await stream.start();
    client.xlog(0x1100n, begin(1));
    client.failReplication(
      Object.assign(new Error('requested WAL segment 000000010000000000000003 has already been removed'), {
        code: '58P01',
      }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(await next(frames)).toMatchObject({ message: { tag: 'begin' } });
    const error = await rejection(next(frames));
    expect([error.code, error.retry]).toEqual(['SOURCE_HISTORY_LOST', 'resnapshot']);
    expect(error.hint).toMatch(/full refresh/);
    expect(client.ended).toBe(true);
  });

  it('turns a dropped connection into a transient SOURCE_UNREACHABLE', async () => {
    const { client, stream, frames } = setup();
    await stream.start();
    const pending = next(frames);
    client.emit('error', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
    const error = await rejection(pending);
    expect([error.code, error.retry]).toEqual(['SOURCE_UNREACHABLE', 'transient']);
  });

  it('treats the server ending replication by itself as a transient loss', async () => {
    const { client, stream, frames } = setup();
    await stream.start();
    const pending = next(frames);
    client.endReplication();
    const error = await rejection(pending);
    expect([error.code, error.retry]).toEqual(['SOURCE_UNREACHABLE', 'transient']);
  });
});

describe('classifyReplicationError', () => {
  const context = { slot: 's', label: 'connection "pg" (db:5432)' };
  const classify = (message: string, code?: string) =>
    classifyReplicationError(Object.assign(new Error(message), code === undefined ? {} : { code }), context);

  it('maps server and network failures to codes and retry classes', () => {
    const cases: Array<[string, string | undefined, string, string]> = [
      ['replication slot "s" does not exist', '42704', 'SOURCE_HISTORY_LOST', 'resnapshot'],
      ['can no longer get changes from replication slot "s"', '55000', 'SOURCE_HISTORY_LOST', 'resnapshot'],
      [
        'requested WAL segment 0000000100000000000000A1 has already been removed',
        '58P01',
        'SOURCE_HISTORY_LOST',
        'resnapshot',
      ],
      ['publication "p" does not exist', '42704', 'SOURCE_MISCONFIGURED', 'fatal'],
      ['replication slot "s" is active for PID 4242', '55006', 'SOURCE_QUERY_FAILED', 'transient'],
      ['password authentication failed for user "cdc"', '28P01', 'SOURCE_AUTH_FAILED', 'fatal'],
      [
        'must be superuser or replication role to start walsender',
        '42501',
        'SOURCE_PRIVILEGE_MISSING',
        'fatal',
      ],
      ['logical decoding requires wal_level >= logical', '55000', 'SOURCE_MISCONFIGURED', 'fatal'],
      ['terminating connection due to administrator command', '57P01', 'SOURCE_UNREACHABLE', 'transient'],
      ['Connection terminated unexpectedly', undefined, 'SOURCE_UNREACHABLE', 'transient'],
      ['connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED', 'SOURCE_UNREACHABLE', 'transient'],
      ['something else', 'XX000', 'SOURCE_QUERY_FAILED', 'transient'],
    ];
    for (const [message, code, expected, retry] of cases) {
      const error = classify(message, code);
      expect([message, error.code, error.retry]).toEqual([message, expected, retry]);
      expect(error.message).toMatch(/connection "pg" \(db:5432\)/i);
      expect(error.hint).toBeTruthy();
    }
  });

  it('passes TributaryErrors through', () => {
    const error = new TributaryError('INTERNAL', 'x');
    expect(classifyReplicationError(error, context)).toBe(error);
  });
});
