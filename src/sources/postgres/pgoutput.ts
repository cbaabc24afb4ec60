/**
 * A pure decoder of pgoutput, PostgreSQL's built-in logical decoding output (protocol versions 1 and 2; see
 * "Logical Replication Message Formats" in the PostgreSQL 15 manual). One call decodes one message: the
 * payload of one XLogData frame.
 *
 * Choices that matter downstream:
 * - LSNs are bigints, and timestamps are bigint microseconds since the Unix epoch: PostgreSQL keeps
 *   microseconds, which a JS Date would round away.
 * - Column values stay exactly as sent: text is the type's output function's text (never converted here),
 *   binary is a copy of the bytes, and an unchanged TOASTed value (whose value the server does not send) is
 *   the {@link UNCHANGED_TOAST} marker, never confused with SQL NULL.
 * - Protocol v2 prefixes R, Y, I, U, D, T and M with the (sub)transaction's xid only inside a stream block
 *   (between Stream Start and Stream Stop). Nothing in the message says so, so the caller, who saw the
 *   Stream Start, passes `inStream`.
 */
import { TributaryError } from '../../core/errors.js';

/** Marks a TOASTed column whose value did not change and so was not sent ('u' in TupleData). */
export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged TOAST value');

/** One column of a tuple: text form, binary form, SQL NULL, or "unchanged and not sent". */
export type PgColumnValue = string | Uint8Array | null | typeof UNCHANGED_TOAST;

/** A tuple's columns, in the relation's column order. */
export type TupleData = readonly PgColumnValue[];

/** REPLICA IDENTITY of a relation: which old values UPDATE and DELETE carry. */
export type ReplicaIdentity = 'default' | 'nothing' | 'full' | 'index';

export interface RelationColumn {
  readonly name: string;
  readonly typeOid: number;
  /** Type modifier, e.g. varchar's length + 4; -1 when the type has none. */
  readonly typmod: number;
  /** Part of the replica identity key. */
  readonly isKey: boolean;
}

/**
 * The old tuple of an UPDATE or DELETE: `key` holds only the replica identity columns (the others are
 * NULL), `old` the whole row (REPLICA IDENTITY FULL).
 */
export type OldTupleKind = 'key' | 'old';

export type PgoutputMessage =
  | {
      readonly tag: 'begin';
      /** LSN of the commit record: known up front because the server sends a transaction once it committed. */
      readonly finalLsn: bigint;
      readonly commitTime: bigint;
      readonly xid: number;
    }
  | {
      readonly tag: 'commit';
      readonly flags: number;
      readonly commitLsn: bigint;
      /** End of the commit record: the position to resume after this transaction. */
      readonly endLsn: bigint;
      readonly commitTime: bigint;
    }
  | { readonly tag: 'origin'; readonly originLsn: bigint; readonly name: string }
  | {
      readonly tag: 'relation';
      readonly xid: number | undefined;
      readonly relationOid: number;
      /** The schema; PostgreSQL sends '' for pg_catalog, and so do we. */
      readonly namespace: string;
      readonly name: string;
      readonly replicaIdentity: ReplicaIdentity;
      readonly columns: readonly RelationColumn[];
    }
  | {
      readonly tag: 'type';
      readonly xid: number | undefined;
      readonly typeOid: number;
      readonly namespace: string;
      readonly name: string;
    }
  | {
      readonly tag: 'insert';
      readonly xid: number | undefined;
      readonly relationOid: number;
      readonly newTuple: TupleData;
    }
  | {
      readonly tag: 'update';
      readonly xid: number | undefined;
      readonly relationOid: number;
      /** Absent when the key did not change and the identity is not FULL. */
      readonly oldKind: OldTupleKind | undefined;
      readonly oldTuple: TupleData | undefined;
      readonly newTuple: TupleData;
    }
  | {
      readonly tag: 'delete';
      readonly xid: number | undefined;
      readonly relationOid: number;
      readonly oldKind: OldTupleKind;
      readonly oldTuple: TupleData;
    }
  | {
      readonly tag: 'truncate';
      readonly xid: number | undefined;
      readonly cascade: boolean;
      readonly restartIdentity: boolean;
      readonly relationOids: readonly number[];
    }
  | {
      readonly tag: 'message';
      readonly xid: number | undefined;
      readonly transactional: boolean;
      readonly lsn: bigint;
      readonly prefix: string;
      readonly content: Uint8Array;
    }
  | { readonly tag: 'streamStart'; readonly xid: number; readonly firstSegment: boolean }
  | { readonly tag: 'streamStop' }
  | {
      readonly tag: 'streamCommit';
      readonly xid: number;
      readonly flags: number;
      readonly commitLsn: bigint;
      readonly endLsn: bigint;
      readonly commitTime: bigint;
    }
  | {
      readonly tag: 'streamAbort';
      readonly xid: number;
      /** Equal to `xid` when the whole transaction aborted; else only this subtransaction's changes go. */
      readonly subxid: number;
    };

export type PgoutputTag = PgoutputMessage['tag'];

export interface DecodeOptions {
  /** True between Stream Start and Stream Stop, where v2 prefixes data messages with an xid. */
  readonly inStream: boolean;
}

/** Microseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01. */
const PG_EPOCH_OFFSET_US = 946_684_800_000_000n;

/** Turns PostgreSQL's microseconds since 2000-01-01 into microseconds since the Unix epoch. */
export function pgTimestampToUnixMicros(pgMicros: bigint): bigint {
  return pgMicros + PG_EPOCH_OFFSET_US;
}

/** The inverse, for status updates the client sends. */
export function unixMicrosToPgTimestamp(unixMicros: bigint): bigint {
  return unixMicros - PG_EPOCH_OFFSET_US;
}

/** Decodes one pgoutput message. Throws TributaryError INTERNAL on a message it cannot read. */
export function decodePgoutput(bytes: Uint8Array, options: DecodeOptions): PgoutputMessage {
  const r = new Reader(bytes);
  let tag = '?';
  try {
    tag = String.fromCharCode(r.byte());
    const message = decodeBody(tag, r, options.inStream);
    // Leftover bytes mean we misread the message (most likely `inStream` was wrong), except where newer
    // servers append fields.
    if (r.remaining() !== 0 && !OPEN_ENDED.has(tag)) r.fail(`${r.remaining()} unread bytes`);
    return message;
  } catch (error) {
    if (error instanceof TributaryError) throw error;
    throw r.error(tag, error instanceof Error ? error.message : String(error));
  }
}

/** Messages PostgreSQL 16+ extends at the end (Stream Abort gains an LSN and time in protocol v4). */
const OPEN_ENDED = new Set(['A']);

function decodeBody(tag: string, r: Reader, inStream: boolean): PgoutputMessage {
  // Only data messages carry the streamed xid; the control messages have a fixed layout.
  const streamXid = () => (inStream ? r.uint32() : undefined);
  switch (tag) {
    case 'B':
      return { tag: 'begin', finalLsn: r.lsn(), commitTime: r.timestamp(), xid: r.uint32() };
    case 'C':
      return {
        tag: 'commit',
        flags: r.byte(),
        commitLsn: r.lsn(),
        endLsn: r.lsn(),
        commitTime: r.timestamp(),
      };
    case 'O':
      return { tag: 'origin', originLsn: r.lsn(), name: r.cstring() };
    case 'R': {
      const xid = streamXid();
      const relationOid = r.uint32();
      const namespace = r.cstring();
      const name = r.cstring();
      const replicaIdentity = replicaIdentityOf(r);
      const count = r.int16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < count; i++) {
        const flags = r.byte();
        columns.push({ isKey: (flags & 1) !== 0, name: r.cstring(), typeOid: r.uint32(), typmod: r.int32() });
      }
      return { tag: 'relation', xid, relationOid, namespace, name, replicaIdentity, columns };
    }
    case 'Y':
      return {
        tag: 'type',
        xid: streamXid(),
        typeOid: r.uint32(),
        namespace: r.cstring(),
        name: r.cstring(),
      };
    case 'I': {
      const xid = streamXid();
      const relationOid = r.uint32();
      r.expect('N');
      return { tag: 'insert', xid, relationOid, newTuple: r.tuple() };
    }
    case 'U': {
      const xid = streamXid();
      const relationOid = r.uint32();
      let oldKind: OldTupleKind | undefined;
      let oldTuple: TupleData | undefined;
      const marker = String.fromCharCode(r.byte());
      if (marker === 'K' || marker === 'O') {
        oldKind = marker === 'K' ? 'key' : 'old';
        oldTuple = r.tuple();
        r.expect('N');
      } else if (marker !== 'N') {
        r.fail(`expected 'K', 'O' or 'N', found '${marker}'`);
      }
      return { tag: 'update', xid, relationOid, oldKind, oldTuple, newTuple: r.tuple() };
    }
    case 'D': {
      const xid = streamXid();
      const relationOid = r.uint32();
      const marker = String.fromCharCode(r.byte());
      if (marker !== 'K' && marker !== 'O') r.fail(`expected 'K' or 'O', found '${marker}'`);
      return {
        tag: 'delete',
        xid,
        relationOid,
        oldKind: marker === 'K' ? 'key' : 'old',
        oldTuple: r.tuple(),
      };
    }
    case 'T': {
      const xid = streamXid();
      const count = r.int32();
      const options = r.byte();
      const relationOids: number[] = [];
      for (let i = 0; i < count; i++) relationOids.push(r.uint32());
      return {
        tag: 'truncate',
        xid,
        cascade: (options & 1) !== 0,
        restartIdentity: (options & 2) !== 0,
        relationOids,
      };
    }
    case 'M': {
      const xid = streamXid();
      const transactional = (r.byte() & 1) !== 0;
      const lsn = r.lsn();
      const prefix = r.cstring();
      const content = r.bytes(r.int32());
      return { tag: 'message', xid, transactional, lsn, prefix, content };
    }
    case 'S':
      return { tag: 'streamStart', xid: r.uint32(), firstSegment: r.byte() === 1 };
    case 'E':
      return { tag: 'streamStop' };
    case 'c':
      return {
        tag: 'streamCommit',
        xid: r.uint32(),
        flags: r.byte(),
        commitLsn: r.lsn(),
        endLsn: r.lsn(),
        commitTime: r.timestamp(),
      };
    case 'A':
      return { tag: 'streamAbort', xid: r.uint32(), subxid: r.uint32() };
    default:
      // Two-phase (b, P, K, r, p) and anything newer is only sent when asked for, and we never ask.
      return r.fail('unknown message type');
  }
}

function replicaIdentityOf(r: Reader): ReplicaIdentity {
  const c = String.fromCharCode(r.byte());
  switch (c) {
    case 'd':
      return 'default';
    case 'n':
      return 'nothing';
    case 'f':
      return 'full';
    case 'i':
      return 'index';
    default:
      return r.fail(`unknown replica identity '${c}'`);
  }
}

class DecodeFailure extends Error {}

/** A bounds-checked cursor; every read past the end fails with the offset, for the error message. */
class Reader {
  readonly #buf: Buffer;
  #at = 0;

  constructor(bytes: Uint8Array) {
    this.#buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  remaining(): number {
    return this.#buf.length - this.#at;
  }

  byte(): number {
    this.#need(1);
    return this.#buf.readUInt8(this.#at++);
  }

  int16(): number {
    this.#need(2);
    const v = this.#buf.readInt16BE(this.#at);
    this.#at += 2;
    return v;
  }

  int32(): number {
    this.#need(4);
    const v = this.#buf.readInt32BE(this.#at);
    this.#at += 4;
    return v;
  }

  /** Xids and OIDs are unsigned 32-bit. */
  uint32(): number {
    this.#need(4);
    const v = this.#buf.readUInt32BE(this.#at);
    this.#at += 4;
    return v;
  }

  lsn(): bigint {
    this.#need(8);
    const v = this.#buf.readBigUInt64BE(this.#at);
    this.#at += 8;
    return v;
  }

  timestamp(): bigint {
    this.#need(8);
    const v = this.#buf.readBigInt64BE(this.#at);
    this.#at += 8;
    return pgTimestampToUnixMicros(v);
  }

  cstring(): string {
    const end = this.#buf.indexOf(0, this.#at);
    if (end < 0) this.fail('unterminated string');
    const s = this.#buf.toString('utf8', this.#at, end);
    this.#at = end + 1;
    return s;
  }

  /** A copy, so a decoded value does not pin the whole network chunk it came in. */
  bytes(length: number): Uint8Array {
    if (length < 0) this.fail(`negative length ${length}`);
    this.#need(length);
    const v = new Uint8Array(this.#buf.subarray(this.#at, this.#at + length));
    this.#at += length;
    return v;
  }

  expect(marker: string): void {
    const c = String.fromCharCode(this.byte());
    if (c !== marker) this.fail(`expected '${marker}', found '${c}'`);
  }

  tuple(): TupleData {
    const count = this.int16();
    const values: PgColumnValue[] = new Array(count);
    for (let i = 0; i < count; i++) {
      const kind = String.fromCharCode(this.byte());
      switch (kind) {
        case 'n':
          values[i] = null;
          break;
        case 'u':
          values[i] = UNCHANGED_TOAST;
          break;
        case 't': {
          const length = this.int32();
          if (length < 0) this.fail(`negative length ${length}`);
          this.#need(length);
          values[i] = this.#buf.toString('utf8', this.#at, this.#at + length);
          this.#at += length;
          break;
        }
        case 'b':
          values[i] = this.bytes(this.int32());
          break;
        default:
          this.fail(`unknown column kind '${kind}' in column ${i + 1}`);
      }
    }
    return values;
  }

  fail(what: string): never {
    throw new DecodeFailure(`${what} at byte ${this.#at}`);
  }

  error(tag: string, detail: string): TributaryError {
    return new TributaryError(
      'INTERNAL',
      `Cannot decode a pgoutput message of type '${tag}' (${this.#buf.length} bytes): ${detail}.`,
      {
        hint: 'The server sent a logical replication message this version of Tributary does not understand; report it with the PostgreSQL version and the publication options.',
      },
    );
  }

  #need(n: number): void {
    if (this.#at + n > this.#buf.length) this.fail(`message ends early (needs ${n} more bytes)`);
  }
}
