import { describe, expect, it } from 'vitest';
import { TributaryError } from '../../core/errors.js';
import {
  decodePgoutput,
  pgTimestampToUnixMicros,
  UNCHANGED_TOAST,
  unixMicrosToPgTimestamp,
} from './pgoutput.js';

/** Builds messages byte by byte, as "Logical Replication Message Formats" lays them out. */
class Bytes {
  readonly #parts: Buffer[] = [];

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
    if (v > 0x7fff_ffff) b.writeUInt32BE(v);
    else b.writeInt32BE(v);
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
  raw(bytes: Uint8Array): this {
    this.#parts.push(Buffer.from(bytes));
    return this;
  }
  /** TupleData: 'n' null, 'u' unchanged, 't' text, 'b' binary. */
  tuple(...columns: Array<null | 'unchanged' | string | Uint8Array>): this {
    this.int16(columns.length);
    for (const c of columns) {
      if (c === null) this.char('n');
      else if (c === 'unchanged') this.char('u');
      else if (typeof c === 'string') {
        const text = Buffer.from(c, 'utf8');
        this.char('t').int32(text.length).raw(text);
      } else this.char('b').int32(c.length).raw(c);
    }
    return this;
  }
  done(): Uint8Array {
    return Buffer.concat(this.#parts);
  }
}

const at = (text: string) => new Bytes().char(text);
const flat = { inStream: false };
const streamed = { inStream: true };

// 2024-05-06T07:08:09.123456Z in both epochs.
const UNIX_US = 1_714_979_289_123_456n;
const PG_US = UNIX_US - 946_684_800_000_000n;

describe('decodePgoutput: transaction framing', () => {
  it('decodes Begin with the commit LSN, a microsecond commit time and the xid', () => {
    const bytes = at('B').int64(0x16_b374_d848n).int64(PG_US).int32(0xfffffffe).done();
    expect(decodePgoutput(bytes, flat)).toEqual({
      tag: 'begin',
      finalLsn: 0x16_b374_d848n,
      commitTime: UNIX_US,
      xid: 0xfffffffe,
    });
  });

  it('decodes Commit with the end LSN that is the resume position', () => {
    const bytes = at('C').int8(0).int64(0x100n).int64(0x130n).int64(PG_US).done();
    expect(decodePgoutput(bytes, flat)).toEqual({
      tag: 'commit',
      flags: 0,
      commitLsn: 0x100n,
      endLsn: 0x130n,
      commitTime: UNIX_US,
    });
  });

  it('decodes Origin', () => {
    const bytes = at('O').int64(0x42n).string('pg_16390').done();
    expect(decodePgoutput(bytes, flat)).toEqual({ tag: 'origin', originLsn: 0x42n, name: 'pg_16390' });
  });

  it('converts between the PostgreSQL and Unix epochs', () => {
    expect(pgTimestampToUnixMicros(0n)).toBe(946_684_800_000_000n);
    expect(unixMicrosToPgTimestamp(pgTimestampToUnixMicros(PG_US))).toBe(PG_US);
    expect(new Date(Number(UNIX_US / 1000n)).toISOString()).toBe('2024-05-06T07:08:09.123Z');
  });
});

describe('decodePgoutput: schema messages', () => {
  const relation = (b: Bytes) =>
    b
      .int32(16_385)
      .string('shop')
      .string('örders')
      .char('d')
      .int16(3)
      .int8(1)
      .string('id')
      .int32(20)
      .int32(-1)
      .int8(0)
      .string('note')
      .int32(1043)
      .int32(104)
      .int8(0)
      .string('body')
      .int32(25)
      .int32(-1);

  const expected = {
    tag: 'relation',
    relationOid: 16_385,
    namespace: 'shop',
    name: 'örders',
    replicaIdentity: 'default',
    columns: [
      { name: 'id', typeOid: 20, typmod: -1, isKey: true },
      { name: 'note', typeOid: 1043, typmod: 104, isKey: false },
      { name: 'body', typeOid: 25, typmod: -1, isKey: false },
    ],
  };

  it('decodes Relation with key flags, type OIDs and modifiers', () => {
    expect(decodePgoutput(relation(at('R')).done(), flat)).toEqual({ ...expected, xid: undefined });
  });

  it('decodes every replica identity setting', () => {
    const identity = (c: string) =>
      decodePgoutput(at('R').int32(1).string('').string('t').char(c).int16(0).done(), flat);
    expect(identity('n')).toMatchObject({ replicaIdentity: 'nothing', namespace: '' });
    expect(identity('f')).toMatchObject({ replicaIdentity: 'full' });
    expect(identity('i')).toMatchObject({ replicaIdentity: 'index' });
    expect(() => identity('x')).toThrow(/replica identity/);
  });

  it('decodes Type', () => {
    const bytes = at('Y').int32(16_400).string('shop').string('mood').done();
    expect(decodePgoutput(bytes, flat)).toEqual({
      tag: 'type',
      xid: undefined,
      typeOid: 16_400,
      namespace: 'shop',
      name: 'mood',
    });
  });

  it('reads the leading xid of Relation and Type inside a stream block', () => {
    expect(decodePgoutput(relation(at('R').int32(777)).done(), streamed)).toEqual({ ...expected, xid: 777 });
    const type = at('Y').int32(778).int32(16_400).string('shop').string('mood').done();
    expect(decodePgoutput(type, streamed)).toMatchObject({ xid: 778, typeOid: 16_400, name: 'mood' });
  });
});

describe('decodePgoutput: row changes', () => {
  it('decodes Insert with text, null and binary columns', () => {
    const bytes = at('I')
      .int32(16_385)
      .char('N')
      .tuple('42', null, new Uint8Array([0, 255, 7]), 'ünïcode ✓')
      .done();
    expect(decodePgoutput(bytes, flat)).toEqual({
      tag: 'insert',
      xid: undefined,
      relationOid: 16_385,
      newTuple: ['42', null, new Uint8Array([0, 255, 7]), 'ünïcode ✓'],
    });
  });

  it('keeps an empty string apart from NULL', () => {
    const bytes = at('I').int32(1).char('N').tuple('', null).done();
    expect(decodePgoutput(bytes, flat)).toMatchObject({ newTuple: ['', null] });
  });

  it('decodes Update without an old tuple', () => {
    const bytes = at('U').int32(16_385).char('N').tuple('1', 'new').done();
    expect(decodePgoutput(bytes, flat)).toEqual({
      tag: 'update',
      xid: undefined,
      relationOid: 16_385,
      oldKind: undefined,
      oldTuple: undefined,
      newTuple: ['1', 'new'],
    });
  });

  it('decodes Update with an old key tuple and an unchanged TOASTed column', () => {
    const bytes = at('U')
      .int32(16_385)
      .char('K')
      .tuple('1', null, null)
      .char('N')
      .tuple('2', 'changed', 'unchanged')
      .done();
    const message = decodePgoutput(bytes, flat);
    expect(message).toEqual({
      tag: 'update',
      xid: undefined,
      relationOid: 16_385,
      oldKind: 'key',
      oldTuple: ['1', null, null],
      newTuple: ['2', 'changed', UNCHANGED_TOAST],
    });
    if (message.tag !== 'update') throw new Error('not an update');
    expect(message.newTuple[2]).not.toBeNull();
  });

  it('decodes Update with a full old tuple (REPLICA IDENTITY FULL)', () => {
    const bytes = at('U').int32(9).char('O').tuple('1', 'old').char('N').tuple('1', 'new').done();
    expect(decodePgoutput(bytes, flat)).toMatchObject({
      oldKind: 'old',
      oldTuple: ['1', 'old'],
      newTuple: ['1', 'new'],
    });
  });

  it('decodes Delete with a key or a full old tuple', () => {
    expect(decodePgoutput(at('D').int32(9).char('K').tuple('5', null).done(), flat)).toEqual({
      tag: 'delete',
      xid: undefined,
      relationOid: 9,
      oldKind: 'key',
      oldTuple: ['5', null],
    });
    expect(decodePgoutput(at('D').int32(9).char('O').tuple('5', 'x').done(), flat)).toMatchObject({
      oldKind: 'old',
      oldTuple: ['5', 'x'],
    });
  });

  it('decodes Truncate of several relations with its options', () => {
    const bytes = at('T').int32(3).int8(3).int32(16_385).int32(16_390).int32(0x8000_0001).done();
    expect(decodePgoutput(bytes, flat)).toEqual({
      tag: 'truncate',
      xid: undefined,
      cascade: true,
      restartIdentity: true,
      relationOids: [16_385, 16_390, 0x8000_0001],
    });
    expect(decodePgoutput(at('T').int32(1).int8(2).int32(5).done(), flat)).toMatchObject({
      cascade: false,
      restartIdentity: true,
    });
    expect(decodePgoutput(at('T').int32(1).int8(0).int32(5).done(), flat)).toMatchObject({
      cascade: false,
      restartIdentity: false,
    });
  });

  it('reads the leading (sub)transaction xid of changes inside a stream block', () => {
    expect(decodePgoutput(at('I').int32(801).int32(9).char('N').tuple('1').done(), streamed)).toMatchObject({
      tag: 'insert',
      xid: 801,
      relationOid: 9,
    });
    const update = at('U').int32(802).int32(9).char('K').tuple('1').char('N').tuple('unchanged').done();
    expect(decodePgoutput(update, streamed)).toMatchObject({
      xid: 802,
      oldKind: 'key',
      oldTuple: ['1'],
      newTuple: [UNCHANGED_TOAST],
    });
    expect(decodePgoutput(at('D').int32(803).int32(9).char('O').tuple('1').done(), streamed)).toMatchObject({
      xid: 803,
      oldKind: 'old',
    });
    const truncate = at('T').int32(804).int32(2).int8(1).int32(9).int32(10).done();
    expect(decodePgoutput(truncate, streamed)).toEqual({
      tag: 'truncate',
      xid: 804,
      cascade: true,
      restartIdentity: false,
      relationOids: [9, 10],
    });
  });
});

describe('decodePgoutput: logical decoding messages', () => {
  const content = Buffer.from('hello\0world');

  it('decodes a transactional message', () => {
    const bytes = at('M').int8(1).int64(0x55n).string('tributary').int32(content.length).raw(content).done();
    expect(decodePgoutput(bytes, flat)).toEqual({
      tag: 'message',
      xid: undefined,
      transactional: true,
      lsn: 0x55n,
      prefix: 'tributary',
      content: new Uint8Array(content),
    });
  });

  it('decodes a non-transactional message and a streamed one', () => {
    const bytes = at('M').int8(0).int64(1n).string('p').int32(0).done();
    expect(decodePgoutput(bytes, flat)).toMatchObject({ transactional: false, content: new Uint8Array() });
    const inStream = at('M').int32(900).int8(1).int64(2n).string('p').int32(2).raw(Buffer.from('ab')).done();
    expect(decodePgoutput(inStream, streamed)).toMatchObject({ xid: 900, transactional: true, lsn: 2n });
  });
});

describe('decodePgoutput: streaming control messages', () => {
  it('decodes Stream Start for first and later segments', () => {
    expect(decodePgoutput(at('S').int32(900).int8(1).done(), flat)).toEqual({
      tag: 'streamStart',
      xid: 900,
      firstSegment: true,
    });
    expect(decodePgoutput(at('S').int32(900).int8(0).done(), streamed)).toMatchObject({
      firstSegment: false,
    });
  });

  it('decodes Stream Stop', () => {
    expect(decodePgoutput(at('E').done(), streamed)).toEqual({ tag: 'streamStop' });
  });

  it('decodes Stream Commit', () => {
    const bytes = at('c').int32(900).int8(0).int64(0x200n).int64(0x228n).int64(PG_US).done();
    expect(decodePgoutput(bytes, flat)).toEqual({
      tag: 'streamCommit',
      xid: 900,
      flags: 0,
      commitLsn: 0x200n,
      endLsn: 0x228n,
      commitTime: UNIX_US,
    });
  });

  it('decodes Stream Abort of a transaction and of a subtransaction', () => {
    expect(decodePgoutput(at('A').int32(900).int32(900).done(), flat)).toEqual({
      tag: 'streamAbort',
      xid: 900,
      subxid: 900,
    });
    expect(decodePgoutput(at('A').int32(900).int32(901).done(), flat)).toMatchObject({ subxid: 901 });
    // Protocol v4 (PostgreSQL 16+) appends the abort LSN and time; they are not needed and are skipped.
    const v4 = at('A').int32(900).int32(901).int64(5n).int64(PG_US).done();
    expect(decodePgoutput(v4, flat)).toEqual({ tag: 'streamAbort', xid: 900, subxid: 901 });
  });
});

describe('decodePgoutput: malformed input', () => {
  const fails = (bytes: Uint8Array, pattern: RegExp, inStream = false) => {
    try {
      decodePgoutput(bytes, { inStream });
      expect.unreachable('decoded a malformed message');
    } catch (error) {
      expect(error).toBeInstanceOf(TributaryError);
      expect((error as TributaryError).code).toBe('INTERNAL');
      expect((error as TributaryError).message).toMatch(pattern);
      expect((error as TributaryError).hint).toBeTruthy();
    }
  };

  it('reports truncated messages, unknown tags and bad markers', () => {
    fails(new Uint8Array(), /ends early/);
    fails(at('B').int64(1n).done(), /type 'B'.*ends early/);
    fails(at('Z').done(), /unknown message type/);
    fails(at('I').int32(1).char('X').done(), /expected 'N'/);
    fails(at('D').int32(1).char('N').tuple('1').done(), /expected 'K' or 'O'/);
    fails(at('I').int32(1).char('N').int16(1).char('q').done(), /unknown column kind 'q'/);
    fails(at('O').int64(1n).raw(Buffer.from('no terminator')).done(), /unterminated string/);
  });

  it('notices a stream xid that was not expected', () => {
    fails(at('I').int32(801).int32(9).char('N').tuple('1').done(), /./, false);
    fails(at('C').int8(0).int64(1n).int64(2n).int64(3n).int8(0).done(), /unread bytes/);
  });
});
