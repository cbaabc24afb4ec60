/**
 * Turns the pgoutput message sequence into source transactions, in commit order, without ever holding a
 * whole transaction in memory.
 *
 * - A regular transaction (Begin … Commit) is sent by the server only once it committed, so it is passed on
 *   as it arrives, in chunks of bounded size; only the last chunk (`final`) carries the end LSN, which is the
 *   position to resume after it.
 * - A streamed transaction (protocol v2: Stream Start … Stream Stop blocks, interleaved with other
 *   transactions, ended by Stream Commit or Stream Abort) is spooled to a file per top-level xid and replayed
 *   in order on Stream Commit, so its size is bounded by disk, not memory. The spool is a stand-in for
 *   memory, not a log: after a crash the server streams the transaction again from the start, because the
 *   slot is never confirmed past an uncommitted transaction's commit.
 * - A subtransaction abort (Stream Abort with subxid ≠ xid) drops the changes from the subtransaction's first
 *   spooled message to the end of the spool, as PostgreSQL's own apply worker does: while a subtransaction
 *   is open every change of its top-level transaction belongs to it or to its children, and the server
 *   sends the abort before any later change. Relation and Type messages in that range are kept: they
 *   describe shapes, and the server does not send them again within the same transaction.
 *
 * Relation messages maintain the relation cache (by OID); whenever one introduces or changes a shape, a
 * `relation` item appears in the transaction's changes at that point so the caller can emit a schema event
 * before the rows that use it. Column values stay in the decoder's form (text, binary, NULL or
 * {@link UNCHANGED_TOAST}); turning them into typed values is the caller's job.
 */
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TributaryError } from '../../core/errors.js';
import {
  decodePgoutput,
  type OldTupleKind,
  type PgoutputMessage,
  type RelationColumn,
  type ReplicaIdentity,
  type TupleData,
} from './pgoutput.js';
import type { ReplicationFrame } from './replication-stream.js';

export interface RelationInfo {
  readonly oid: number;
  /** The schema (`pg_catalog` where the server sends ''). */
  readonly namespace: string;
  readonly name: string;
  readonly replicaIdentity: ReplicaIdentity;
  /** As published: without dropped and generated columns, and limited to a publication's column list. */
  readonly columns: readonly RelationColumn[];
}

/** One item of a transaction, in log order. Tuples follow `relation.columns`. */
export type DecodedChange =
  /** The relation's shape was first seen or changed here; later items of the relation use it. */
  | {
      readonly kind: 'relation';
      readonly relation: RelationInfo;
      readonly previous: RelationInfo | undefined;
    }
  | { readonly kind: 'insert'; readonly relation: RelationInfo; readonly after: TupleData }
  | {
      readonly kind: 'update';
      readonly relation: RelationInfo;
      /** Present when the key changed (`key`: only key columns are set) or the identity is FULL (`old`). */
      readonly before: TupleData | undefined;
      readonly beforeKind: OldTupleKind | undefined;
      /** May hold UNCHANGED_TOAST for TOASTed columns the update did not touch. */
      readonly after: TupleData;
    }
  | {
      readonly kind: 'delete';
      readonly relation: RelationInfo;
      readonly before: TupleData;
      readonly beforeKind: OldTupleKind;
    }
  | {
      readonly kind: 'truncate';
      readonly relation: RelationInfo;
      readonly cascade: boolean;
      readonly restartIdentity: boolean;
    }
  /** A transactional pg_logical_emit_message(). */
  | { readonly kind: 'message'; readonly lsn: bigint; readonly prefix: string; readonly content: Uint8Array };

export interface TransactionChunk {
  readonly kind: 'transaction';
  readonly xid: number;
  /** LSN of the commit record. */
  readonly commitLsn: bigint;
  /** Microseconds since the Unix epoch. */
  readonly commitTime: bigint;
  /** End of the commit record: the resume position. Set on the final chunk (and on all chunks if streamed). */
  readonly endLsn: bigint | undefined;
  /** Replication origin of the transaction, when it was replicated into this server. */
  readonly origin: string | undefined;
  /** True when the server streamed the transaction before it committed (it was replayed from the spool). */
  readonly streamed: boolean;
  readonly changes: readonly DecodedChange[];
  /** The transaction's last chunk: only now may it be made durable as a whole. */
  readonly final: boolean;
}

/**
 * A keepalive while no transaction is being received: the server has sent everything before `lsn`. Once
 * every transaction yielded before it is durable, confirming `lsn` lets the slot advance through WAL that
 * holds no published changes (else it would pin WAL on a server whose captured tables are idle).
 */
export interface Progress {
  readonly kind: 'progress';
  readonly lsn: bigint;
}

export type AssembledItem = TransactionChunk | Progress;

export interface TransactionAssemblerOptions {
  /**
   * Where streamed transactions are spooled. Used by this assembler alone: created if missing, and spool
   * files left there by an earlier run are removed.
   */
  readonly spoolDir: string;
  /** Items per chunk. */
  readonly maxChunkChanges?: number;
  /** Approximate wire bytes per chunk, so a few huge rows also make a chunk. */
  readonly maxChunkBytes?: number;
}

const SPOOL_SUFFIX = '.spool';
const SPOOL_WRITE_BUFFER = 1024 * 1024;
const SPOOL_READ_BUFFER = 1024 * 1024;

interface OpenTransaction {
  readonly xid: number;
  readonly commitLsn: bigint;
  readonly commitTime: bigint;
  origin: string | undefined;
  changes: DecodedChange[];
  bytes: number;
}

interface Spool {
  readonly xid: number;
  readonly path: string;
  readonly handle: FileHandle;
  /** Logical size: written plus pending. */
  size: number;
  pending: Buffer[];
  pendingBytes: number;
  /** Offset of each subtransaction's first record, for subtransaction aborts. */
  readonly firstOffset: Map<number, number>;
  /** [start, end) byte ranges whose change records were rolled back. */
  readonly rolledBack: Array<readonly [number, number]>;
  origin: string | undefined;
}

type DataMessage = Extract<
  PgoutputMessage,
  { tag: 'relation' | 'type' | 'insert' | 'update' | 'delete' | 'truncate' | 'message' }
>;

export class TransactionAssembler {
  readonly #spoolDir: string;
  readonly #maxChanges: number;
  readonly #maxBytes: number;
  readonly #relations = new Map<number, RelationInfo>();
  readonly #types = new Map<number, { readonly namespace: string; readonly name: string }>();
  readonly #spools = new Map<number, Spool>();
  /** Relation items seen outside a transaction, handed to the next one. */
  #pendingRelations: DecodedChange[] = [];
  #open: OpenTransaction | undefined;
  /** The top-level xid of the stream block being received. */
  #streamXid: number | undefined;

  private constructor(options: TransactionAssemblerOptions) {
    this.#spoolDir = options.spoolDir;
    this.#maxChanges = options.maxChunkChanges ?? 1000;
    this.#maxBytes = options.maxChunkBytes ?? 4 * 1024 * 1024;
  }

  static async create(options: TransactionAssemblerOptions): Promise<TransactionAssembler> {
    await mkdir(options.spoolDir, { recursive: true });
    for (const name of await readdir(options.spoolDir)) {
      if (name.endsWith(SPOOL_SUFFIX)) await rm(join(options.spoolDir, name), { force: true });
    }
    return new TransactionAssembler(options);
  }

  /** The cached shape of a relation, by OID. */
  relation(oid: number): RelationInfo | undefined {
    return this.#relations.get(oid);
  }

  /** `namespace.name` of a non-built-in type announced by a Type message (enums, domains, ...). */
  typeName(oid: number): { readonly namespace: string; readonly name: string } | undefined {
    return this.#types.get(oid);
  }

  /**
   * Transactions in commit order, as chunks, and progress markers between them. One call per replication
   * session: when it ends (or fails), transactions still being streamed are discarded with their spools,
   * since the next session sends them again from the start.
   */
  async *assemble(frames: AsyncIterable<ReplicationFrame>): AsyncGenerator<AssembledItem> {
    try {
      yield* this.#assemble(frames);
    } finally {
      this.#open = undefined;
      this.#streamXid = undefined;
      this.#pendingRelations = [];
      await this.close();
    }
  }

  async *#assemble(frames: AsyncIterable<ReplicationFrame>): AsyncGenerator<AssembledItem> {
    for await (const frame of frames) {
      if (frame.kind === 'keepalive') {
        if (this.#open === undefined && this.#streamXid === undefined)
          yield { kind: 'progress', lsn: frame.walEnd };
        continue;
      }
      const message = frame.message;
      if (this.#streamXid !== undefined && isData(message)) {
        await this.#spool(this.#streamXid, message, frame.raw);
        continue;
      }
      switch (message.tag) {
        case 'begin':
          if (this.#open) throw protocolError(`Begin of xid ${message.xid} inside xid ${this.#open.xid}`);
          this.#open = {
            xid: message.xid,
            commitLsn: message.finalLsn,
            commitTime: message.commitTime,
            origin: undefined,
            changes: this.#pendingRelations,
            bytes: 0,
          };
          this.#pendingRelations = [];
          break;
        case 'commit': {
          const open = this.#open;
          if (!open) throw protocolError('Commit outside a transaction');
          this.#open = undefined;
          yield {
            kind: 'transaction',
            xid: open.xid,
            commitLsn: message.commitLsn,
            commitTime: message.commitTime,
            endLsn: message.endLsn,
            origin: open.origin,
            streamed: false,
            changes: open.changes,
            final: true,
          };
          break;
        }
        case 'origin':
          if (this.#open) this.#open.origin = message.name;
          else if (this.#streamXid !== undefined) {
            const spool = this.#spools.get(this.#streamXid);
            if (spool) spool.origin = message.name;
          }
          break;
        case 'relation':
        case 'type': {
          const item = this.#learn(message);
          if (!item) break;
          if (this.#open) this.#open.changes.push(item);
          else this.#pendingRelations.push(item);
          break;
        }
        case 'insert':
        case 'update':
        case 'delete':
        case 'truncate':
        case 'message': {
          const open = this.#open;
          if (!open) {
            // Non-transactional messages come outside transactions; nothing here consumes them.
            if (message.tag === 'message' && !message.transactional) break;
            throw protocolError(`${message.tag} outside a transaction`);
          }
          open.changes.push(...this.#changesOf(message));
          open.bytes += frame.raw.length;
          if (open.changes.length >= this.#maxChanges || open.bytes >= this.#maxBytes) {
            yield {
              kind: 'transaction',
              xid: open.xid,
              commitLsn: open.commitLsn,
              commitTime: open.commitTime,
              endLsn: undefined,
              origin: open.origin,
              streamed: false,
              changes: open.changes,
              final: false,
            };
            open.changes = [];
            open.bytes = 0;
          }
          break;
        }
        case 'streamStart': {
          if (this.#streamXid !== undefined)
            throw protocolError(`Stream Start inside the stream of ${this.#streamXid}`);
          if (this.#open) throw protocolError(`Stream Start inside xid ${this.#open.xid}`);
          const known = this.#spools.has(message.xid);
          if (message.firstSegment && known)
            throw protocolError(`a second first segment of xid ${message.xid}`);
          if (!message.firstSegment && !known)
            throw protocolError(`a later segment of unknown xid ${message.xid}`);
          if (!known) this.#spools.set(message.xid, await this.#createSpool(message.xid));
          this.#streamXid = message.xid;
          break;
        }
        case 'streamStop': {
          const xid = this.#streamXid;
          if (xid === undefined) throw protocolError('Stream Stop outside a stream');
          this.#streamXid = undefined;
          const spool = this.#spools.get(xid);
          if (spool) await flush(spool);
          break;
        }
        case 'streamCommit':
          if (this.#streamXid !== undefined) throw protocolError('Stream Commit inside a stream block');
          yield* this.#replay(message);
          break;
        case 'streamAbort':
          if (this.#streamXid !== undefined) throw protocolError('Stream Abort inside a stream block');
          await this.#abort(message.xid, message.subxid);
          break;
      }
    }
  }

  /** Removes the spool files of transactions still in progress (`assemble` does so when it ends). */
  async close(): Promise<void> {
    const spools = [...this.#spools.values()];
    this.#spools.clear();
    for (const spool of spools) await discard(spool);
  }

  /** Updates the caches; a relation item when the shape is new or different. */
  #learn(message: Extract<PgoutputMessage, { tag: 'relation' | 'type' }>): DecodedChange | undefined {
    if (message.tag === 'type') {
      this.#types.set(message.typeOid, { namespace: message.namespace || 'pg_catalog', name: message.name });
      return undefined;
    }
    const relation: RelationInfo = {
      oid: message.relationOid,
      namespace: message.namespace || 'pg_catalog',
      name: message.name,
      replicaIdentity: message.replicaIdentity,
      columns: message.columns,
    };
    const previous = this.#relations.get(relation.oid);
    this.#relations.set(relation.oid, relation);
    if (previous && sameShape(previous, relation)) return undefined;
    return { kind: 'relation', relation, previous };
  }

  #changesOf(message: Exclude<DataMessage, { tag: 'relation' | 'type' }>): DecodedChange[] {
    switch (message.tag) {
      case 'insert': {
        const relation = this.#relationFor(message.relationOid, message.newTuple);
        return [{ kind: 'insert', relation, after: message.newTuple }];
      }
      case 'update': {
        const relation = this.#relationFor(message.relationOid, message.newTuple, message.oldTuple);
        return [
          {
            kind: 'update',
            relation,
            before: message.oldTuple,
            beforeKind: message.oldKind,
            after: message.newTuple,
          },
        ];
      }
      case 'delete': {
        const relation = this.#relationFor(message.relationOid, message.oldTuple);
        return [{ kind: 'delete', relation, before: message.oldTuple, beforeKind: message.oldKind }];
      }
      case 'truncate':
        return message.relationOids.map((oid) => ({
          kind: 'truncate' as const,
          relation: this.#relationFor(oid),
          cascade: message.cascade,
          restartIdentity: message.restartIdentity,
        }));
      case 'message':
        return [{ kind: 'message', lsn: message.lsn, prefix: message.prefix, content: message.content }];
    }
  }

  #relationFor(oid: number, ...tuples: Array<TupleData | undefined>): RelationInfo {
    const relation = this.#relations.get(oid);
    if (!relation) throw protocolError(`a change of relation OID ${oid} before its Relation message`);
    for (const tuple of tuples) {
      if (tuple && tuple.length !== relation.columns.length) {
        throw protocolError(
          `a tuple of ${tuple.length} columns for ${relation.namespace}.${relation.name}, which has ${relation.columns.length}`,
        );
      }
    }
    return relation;
  }

  async #createSpool(xid: number): Promise<Spool> {
    const path = join(this.#spoolDir, `${xid}${SPOOL_SUFFIX}`);
    const handle = await open(path, 'w+');
    return {
      xid,
      path,
      handle,
      size: 0,
      pending: [],
      pendingBytes: 0,
      firstOffset: new Map(),
      rolledBack: [],
      origin: undefined,
    };
  }

  async #spool(topXid: number, message: DataMessage, raw: Uint8Array): Promise<void> {
    const spool = this.#spools.get(topXid);
    if (!spool) throw protocolError(`a streamed change of unknown xid ${topXid}`);
    const subxid = message.xid ?? topXid;
    if (subxid !== topXid && !spool.firstOffset.has(subxid)) spool.firstOffset.set(subxid, spool.size);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(raw.length);
    const body = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
    spool.pending.push(header, body);
    spool.pendingBytes += 4 + raw.length;
    spool.size += 4 + raw.length;
    if (spool.pendingBytes >= SPOOL_WRITE_BUFFER) await flush(spool);
  }

  async #abort(xid: number, subxid: number): Promise<void> {
    const spool = this.#spools.get(xid);
    if (!spool) return;
    if (xid === subxid) {
      this.#spools.delete(xid);
      await discard(spool);
      return;
    }
    const start = spool.firstOffset.get(subxid);
    if (start === undefined) return;
    spool.rolledBack.push([start, spool.size]);
    for (const [other, offset] of spool.firstOffset) if (offset >= start) spool.firstOffset.delete(other);
  }

  async *#replay(
    commit: Extract<PgoutputMessage, { tag: 'streamCommit' }>,
  ): AsyncGenerator<TransactionChunk> {
    const spool = this.#spools.get(commit.xid);
    if (!spool) throw protocolError(`Stream Commit of unknown xid ${commit.xid}`);
    this.#spools.delete(commit.xid);
    const chunk = (changes: DecodedChange[], final: boolean): TransactionChunk => ({
      kind: 'transaction',
      xid: commit.xid,
      commitLsn: commit.commitLsn,
      commitTime: commit.commitTime,
      endLsn: commit.endLsn,
      origin: spool.origin,
      streamed: true,
      changes,
      final,
    });
    try {
      await flush(spool);
      await spool.handle.close();
      let changes: DecodedChange[] = [];
      let bytes = 0;
      for await (const { offset, raw } of readSpool(spool.path)) {
        const message = decodePgoutput(raw, { inStream: true });
        if (!isData(message)) throw protocolError(`a spooled ${message.tag} message in xid ${commit.xid}`);
        if (message.tag === 'relation' || message.tag === 'type') {
          const item = this.#learn(message);
          if (item) changes.push(item);
          continue;
        }
        if (spool.rolledBack.some(([from, to]) => offset >= from && offset < to)) continue;
        changes.push(...this.#changesOf(message));
        bytes += raw.length;
        if (changes.length >= this.#maxChanges || bytes >= this.#maxBytes) {
          yield chunk(changes, false);
          changes = [];
          bytes = 0;
        }
      }
      yield chunk(changes, true);
    } finally {
      await rm(spool.path, { force: true });
    }
  }
}

function isData(message: PgoutputMessage): message is DataMessage {
  switch (message.tag) {
    case 'relation':
    case 'type':
    case 'insert':
    case 'update':
    case 'delete':
    case 'truncate':
    case 'message':
      return true;
    default:
      return false;
  }
}

function sameShape(a: RelationInfo, b: RelationInfo): boolean {
  return (
    a.namespace === b.namespace &&
    a.name === b.name &&
    a.replicaIdentity === b.replicaIdentity &&
    a.columns.length === b.columns.length &&
    a.columns.every((c, i) => {
      const d = b.columns[i];
      return (
        d !== undefined &&
        c.name === d.name &&
        c.typeOid === d.typeOid &&
        c.typmod === d.typmod &&
        c.isKey === d.isKey
      );
    })
  );
}

async function flush(spool: Spool): Promise<void> {
  if (spool.pendingBytes === 0) return;
  const buffers = spool.pending;
  spool.pending = [];
  spool.pendingBytes = 0;
  await spool.handle.writev(buffers);
}

async function discard(spool: Spool): Promise<void> {
  await spool.handle.close().catch(() => undefined);
  await rm(spool.path, { force: true });
}

/** The spool's records with their offsets, reading a bounded buffer at a time. */
async function* readSpool(path: string): AsyncGenerator<{ offset: number; raw: Buffer }> {
  let carry: Buffer = Buffer.alloc(0);
  let base = 0;
  for await (const data of createReadStream(path, { highWaterMark: SPOOL_READ_BUFFER })) {
    let buffer: Buffer = carry.length === 0 ? (data as Buffer) : Buffer.concat([carry, data as Buffer]);
    let at = 0;
    while (buffer.length - at >= 4) {
      const length = buffer.readUInt32BE(at);
      if (buffer.length - at - 4 < length) break;
      yield { offset: base + at, raw: buffer.subarray(at + 4, at + 4 + length) };
      at += 4 + length;
    }
    base += at;
    buffer = buffer.subarray(at);
    carry = buffer;
  }
  if (carry.length !== 0) throw protocolError(`a spool file ${path} that ends inside a record`);
}

function protocolError(what: string): TributaryError {
  return new TributaryError(
    'INTERNAL',
    `Logical replication sent ${what}, which the protocol does not allow.`,
    {
      hint: 'Report it with the PostgreSQL version; the stream resumes from the last durable position on restart.',
    },
  );
}
