/**
 * The streaming replication sub-protocol over a `pg` Client in `replication: 'database'` mode: START_REPLICATION
 * with pgoutput, XLogData and keepalive frames in, Standby Status Updates out.
 *
 * The safety invariant: the only LSN ever reported to the server (as write, flush and apply alike) is the one
 * the caller passed to {@link ReplicationStream.confirm} (or the start LSN). The server advances the slot's
 * confirmed_flush_lsn to what we report and may then recycle the WAL before it, so reporting anything that is
 * not yet durable in staging would lose those changes on a crash. In particular, a keepalive is answered
 * with the confirmed LSN, never with the keepalive's own position (which is what naive clients send).
 *
 * Why the shape: `pg` pushes CopyData from a socket; the consumer pulls frames. A queue bounded in bytes sits
 * between them and the socket is paused while it is full, so a slow consumer makes the server wait instead
 * of this process buffering the WAL. Status updates run on their own timer, so a paused socket does not
 * starve the server of replies and trip wal_sender_timeout.
 *
 * `pg` has no replication API; what it offers is enough: the START_REPLICATION query stays pending for as
 * long as the stream runs, the connection emits `replicationStart` (CopyBothResponse) and `copyData`, and
 * `connection.sendCopyFromChunk` / `endCopyFrom` send CopyData / CopyDone.
 */

import Denque from 'denque';
import type { Client } from 'pg';
import { messageOf, TributaryError } from '../../core/errors.js';
import { quotePgIdent, quotePgString } from './connect.js';
import { formatLsn, parseLsn } from './lsn.js';
import {
  decodePgoutput,
  type PgoutputMessage,
  pgTimestampToUnixMicros,
  unixMicrosToPgTimestamp,
} from './pgoutput.js';

export type ReplicationFrame =
  | {
      readonly kind: 'xlog';
      /** For pgoutput both are the LSN of the decoded record; on a Commit, its end LSN. */
      readonly walStart: bigint;
      readonly walEnd: bigint;
      /** Server clock, microseconds since the Unix epoch. */
      readonly sendTime: bigint;
      readonly message: PgoutputMessage;
      /** The undecoded pgoutput message, for spooling; decode again with `inStream: message was in a stream`. */
      readonly raw: Uint8Array;
    }
  | {
      readonly kind: 'keepalive';
      /** The server has sent everything before this LSN. */
      readonly walEnd: bigint;
      readonly sendTime: bigint;
      readonly replyRequested: boolean;
    };

export interface ReplicationStreamOptions {
  readonly slot: string;
  readonly publications: readonly string[];
  /**
   * Where to resume: the end LSN of the last transaction durable in staging (0n: the slot's confirmed_flush).
   * It counts as confirmed: it is reported until {@link ReplicationStream.confirm} moves it on.
   */
  readonly startLsn: bigint;
  /** pgoutput protocol version. 2 (PostgreSQL 14+) allows streaming of large in-progress transactions. */
  readonly protocolVersion?: 1 | 2;
  /** Ask for in-progress transactions larger than logical_decoding_work_mem to be streamed (v2 only). */
  readonly streaming?: boolean;
  /** Ask for pg_logical_emit_message() messages. */
  readonly messages?: boolean;
  /** Interval of unsolicited status updates. Well below the server's wal_sender_timeout (60 s by default). */
  readonly statusIntervalMs?: number;
  /** The socket is paused while more than this many bytes of frames wait for the consumer. */
  readonly highWaterBytes?: number;
  /** Before starting, check that the slot exists, is usable, and has not been confirmed past startLsn. */
  readonly checkSlot?: boolean;
  /** Names the source in messages, e.g. `connection "pg" (db.example:5432)`. */
  readonly label?: string;
  /** Aborting stops the stream: a final status update, CopyDone, then the client is ended. */
  readonly signal: AbortSignal;
}

/** What we use of pg's internal Connection beyond its typings (pg 8.x). */
interface CopyConnection {
  on(event: 'copyData', listener: (message: { chunk: Buffer }) => void): unknown;
  once(event: 'replicationStart', listener: () => void): unknown;
  removeListener(event: string, listener: (...args: never[]) => void): unknown;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
  readonly stream: { pause(): unknown; resume(): unknown };
}

type Item = { readonly chunk: Buffer } | KeepaliveItem;
interface KeepaliveItem {
  walEnd: bigint;
  sendTime: bigint;
  replyRequested: boolean;
}

const DEFAULT_STATUS_INTERVAL_MS = 10_000;
const DEFAULT_HIGH_WATER_BYTES = 16 * 1024 * 1024;
/** How long a clean stop waits for the server to acknowledge CopyDone before ending the connection. */
const CLOSE_GRACE_MS = 5_000;

/**
 * One replication session. Owns the client from construction: {@link close} (or finishing the iteration,
 * or the signal) ends it. Use: `await stream.start()`, then `for await (const frame of stream)`, calling
 * `confirm(lsn)` whenever staging has made everything up to `lsn` durable.
 */
export class ReplicationStream implements AsyncIterable<ReplicationFrame>, AsyncDisposable {
  readonly #client: Client;
  readonly #connection: CopyConnection;
  readonly #options: ReplicationStreamOptions;
  readonly #label: string;
  readonly #highWater: number;
  /**
   * A deque, not an array: near the high-water mark it holds ~100k small frames, and Array#shift on an
   * array that large is linear (it moved the rest of the queue on every frame: 69% of a PostgreSQL catch-up's
   * CPU in a profile, bench/results and docs/benchmarks.md).
   */
  readonly #queue = new Denque<Item>();
  #queuedBytes = 0;
  #paused = false;
  #wake: (() => void) | undefined;
  #confirmed: bigint;
  /** The highest LSN handed to the consumer: nothing beyond it can have been made durable. */
  #delivered: bigint;
  #inStream = false;
  #state: 'new' | 'starting' | 'streaming' | 'closing' = 'new';
  #failure: TributaryError | undefined;
  #query: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #closed: Promise<void> | undefined;

  constructor(client: Client, options: ReplicationStreamOptions) {
    this.#client = client;
    this.#connection = client.connection as unknown as CopyConnection;
    this.#options = options;
    this.#label = options.label ?? 'the PostgreSQL source';
    this.#highWater = options.highWaterBytes ?? DEFAULT_HIGH_WATER_BYTES;
    this.#confirmed = options.startLsn;
    this.#delivered = options.startLsn;
    // pg emits 'error' on a dropped connection and crashes the process if nobody listens; the same failure
    // also rejects the pending START_REPLICATION query, which is where it is classified.
    client.on('error', this.#onClientError);
  }

  /** The LSN reported to the server. */
  get confirmedLsn(): bigint {
    return this.#confirmed;
  }

  /**
   * Declares everything up to `lsn` durable, so the server may release the WAL before it. Never moves back.
   * Throws INTERNAL for an LSN beyond anything received: that would be a bug, and reporting it would let
   * the server discard changes nobody has seen.
   */
  confirm(lsn: bigint): void {
    if (lsn > this.#delivered) {
      throw new TributaryError(
        'INTERNAL',
        `Asked to confirm LSN ${formatLsn(lsn)} to ${this.#label}, beyond the last one received (${formatLsn(this.#delivered)}).`,
        {
          hint: 'A bug in the caller of ReplicationStream: confirm only end LSNs of transactions made durable.',
        },
      );
    }
    if (lsn > this.#confirmed) this.#confirmed = lsn;
  }

  /** Checks the slot (unless told not to) and starts streaming; resolves once the server has begun. */
  async start(): Promise<void> {
    if (this.#state !== 'new') {
      throw new TributaryError('INTERNAL', 'ReplicationStream.start() called twice.', {
        hint: 'Create a new ReplicationStream (and client) for each replication session.',
      });
    }
    this.#state = 'starting';
    const { signal } = this.#options;
    await this.#stopIfAborted();
    try {
      if (this.#options.checkSlot !== false) await this.#checkSlot();
    } catch (error) {
      await this.close();
      throw this.#classify(error);
    }
    await this.#stopIfAborted();

    this.#connection.on('copyData', this.#onCopyData);
    const begun = new Promise<void>((resolve) => this.#connection.once('replicationStart', resolve));
    this.#query = this.#client.query(this.startCommand()).then(
      () => this.#fail(this.#unexpectedEnd()),
      (error: unknown) => this.#fail(this.#classify(error)),
    );
    signal.addEventListener('abort', this.#onAbort);
    await Promise.race([begun, this.#query]);
    await this.#stopIfAborted();
    if (this.#failure) {
      const failure = this.#failure;
      await this.close();
      throw failure;
    }
    // close() was called while starting.
    if (this.#state !== 'starting') return;
    this.#state = 'streaming';
    this.#timer = setInterval(
      () => this.#sendStatus(),
      this.#options.statusIntervalMs ?? DEFAULT_STATUS_INTERVAL_MS,
    );
    this.#timer.unref();
  }

  /** The START_REPLICATION command, for logs and tests. */
  startCommand(): string {
    const o = this.#options;
    const version = o.protocolVersion ?? 2;
    const publications = o.publications.map(quotePgIdent).join(',');
    const options = [`proto_version '${version}'`, `publication_names ${quotePgString(publications)}`];
    if (version >= 2 && o.streaming !== false) options.push(`streaming 'on'`);
    if (o.messages !== false) options.push(`messages 'true'`);
    return `START_REPLICATION SLOT ${quotePgIdent(o.slot)} LOGICAL ${formatLsn(o.startLsn)} (${options.join(', ')})`;
  }

  [Symbol.asyncIterator](): AsyncIterator<ReplicationFrame> {
    return this.frames();
  }

  /**
   * The frames in server order; iterate once. Ends only by throwing: the signal's reason on abort, else a
   * TributaryError (frames received before a failure are delivered first). Leaving the loop closes the stream.
   */
  async *frames(): AsyncGenerator<ReplicationFrame> {
    try {
      for (;;) {
        this.#options.signal.throwIfAborted();
        const item = this.#queue.shift();
        if (!item) {
          if (this.#failure) throw this.#failure;
          this.#resumeIfDrained();
          await new Promise<void>((resolve) => {
            this.#wake = resolve;
          });
          continue;
        }
        const frame = this.#frameOf(item);
        this.#resumeIfDrained();
        if (frame.walEnd > this.#delivered) this.#delivered = frame.walEnd;
        yield frame;
      }
    } finally {
      await this.close();
    }
  }

  /**
   * Stops: a last status update with the confirmed LSN, CopyDone, a short wait for the server to finish,
   * then ends the client. Idempotent.
   */
  close(): Promise<void> {
    this.#closed ??= this.#shutdown();
    return this.#closed;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #shutdown(): Promise<void> {
    const wasStreaming = this.#state === 'streaming' && this.#failure === undefined;
    this.#state = 'closing';
    clearInterval(this.#timer);
    this.#options.signal.removeEventListener('abort', this.#onAbort);
    this.#notify();
    if (wasStreaming) {
      try {
        this.#sendStatus();
        this.#connection.endCopyFrom();
        // The server's CopyDone and CommandComplete must be read to settle the query.
        this.#connection.stream.resume();
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          this.#query,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, CLOSE_GRACE_MS);
          }),
        ]);
        clearTimeout(timer);
      } catch {
        // The connection is going away anyway; ending it below is all that is left to do.
      }
    }
    this.#connection.removeListener('copyData', this.#onCopyData);
    await this.#client.end().catch(() => undefined);
  }

  async #stopIfAborted(): Promise<void> {
    if (!this.#options.signal.aborted) return;
    await this.close();
    this.#options.signal.throwIfAborted();
  }

  readonly #onAbort = (): void => {
    void this.close();
  };

  readonly #onClientError = (error: unknown): void => {
    this.#fail(this.#classify(error));
  };

  readonly #onCopyData = ({ chunk }: { chunk: Buffer }): void => {
    if (this.#state === 'closing' || this.#failure) return;
    const kind = chunk[0];
    if (kind === 0x6b /* 'k': primary keepalive */) {
      if (chunk.length < 18) {
        this.#fail(this.#malformed(chunk));
        return;
      }
      const keepalive = {
        walEnd: chunk.readBigUInt64BE(1),
        sendTime: pgTimestampToUnixMicros(chunk.readBigInt64BE(9)),
        replyRequested: chunk[17] === 1,
      };
      // Answered here, not by the consumer: a reply only ever carries the confirmed LSN, and the server
      // drops a receiver that stays silent past wal_sender_timeout however far behind it is.
      if (keepalive.replyRequested) this.#sendStatus();
      const last = this.#queue.peekBack();
      if (last && !('chunk' in last)) Object.assign(last, keepalive);
      else this.#queue.push(keepalive);
    } else if (kind === 0x77 /* 'w': XLogData */) {
      if (chunk.length < 26) {
        this.#fail(this.#malformed(chunk));
        return;
      }
      // pg hands out a view of its read buffer, which it reuses for later socket data; queued frames must
      // own their bytes.
      const copy = Buffer.from(chunk);
      this.#queue.push({ chunk: copy });
      this.#queuedBytes += copy.length;
      if (!this.#paused && this.#queuedBytes > this.#highWater) {
        this.#paused = true;
        this.#connection.stream.pause();
      }
    } else {
      this.#fail(this.#malformed(chunk));
      return;
    }
    this.#notify();
  };

  #frameOf(item: Item): ReplicationFrame {
    if (!('chunk' in item)) return { kind: 'keepalive', ...item };
    const { chunk } = item;
    this.#queuedBytes -= chunk.length;
    const raw = chunk.subarray(25);
    const message = decodePgoutput(raw, { inStream: this.#inStream });
    if (message.tag === 'streamStart') this.#inStream = true;
    else if (message.tag === 'streamStop') this.#inStream = false;
    return {
      kind: 'xlog',
      walStart: chunk.readBigUInt64BE(1),
      walEnd: chunk.readBigUInt64BE(9),
      sendTime: pgTimestampToUnixMicros(chunk.readBigInt64BE(17)),
      message,
      raw,
    };
  }

  #resumeIfDrained(): void {
    if (this.#paused && this.#queuedBytes <= this.#highWater / 2) {
      this.#paused = false;
      this.#connection.stream.resume();
    }
  }

  /** Standby Status Update: write, flush and apply are all the confirmed LSN. */
  #sendStatus(): void {
    if (this.#failure) return;
    const update = Buffer.alloc(34);
    update.write('r', 0, 'latin1');
    update.writeBigUInt64BE(this.#confirmed, 1);
    update.writeBigUInt64BE(this.#confirmed, 9);
    update.writeBigUInt64BE(this.#confirmed, 17);
    update.writeBigInt64BE(unixMicrosToPgTimestamp(BigInt(Date.now()) * 1000n), 25);
    update.writeUInt8(0, 33);
    try {
      this.#connection.sendCopyFromChunk(update);
    } catch (error) {
      this.#fail(this.#classify(error));
    }
  }

  #fail(error: TributaryError): void {
    if (this.#state === 'closing' || this.#failure) return;
    this.#failure = error;
    clearInterval(this.#timer);
    this.#notify();
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  async #checkSlot(): Promise<void> {
    const { slot, startLsn } = this.#options;
    const result = await this.#client.query<Record<string, unknown>>(
      `SELECT slot_type, plugin, database, current_database() AS current_database, confirmed_flush_lsn::text AS confirmed, to_jsonb(s) ->> 'wal_status' AS wal_status FROM pg_replication_slots s WHERE slot_name = ${quotePgString(slot)}`,
    );
    const row = result.rows[0];
    if (!row) throw slotMissing(slot, this.#label);
    if (row['slot_type'] !== 'logical' || row['plugin'] !== 'pgoutput') {
      throw new TributaryError(
        'SOURCE_MISCONFIGURED',
        `Replication slot "${slot}" of ${this.#label} is a ${String(row['slot_type'])} slot for plugin ${String(row['plugin'])}, not a logical pgoutput slot.`,
        {
          hint: `Drop it and let Tributary create it, or create it yourself: SELECT pg_create_logical_replication_slot('${slot}', 'pgoutput');`,
        },
      );
    }
    if (row['database'] !== row['current_database']) {
      throw new TributaryError(
        'SOURCE_MISCONFIGURED',
        `Replication slot "${slot}" of ${this.#label} belongs to database "${String(row['database'])}", not "${String(row['current_database'])}".`,
        {
          hint: 'Name the database the slot was created in, or use a different slot name for this database.',
        },
      );
    }
    if (row['wal_status'] === 'lost') throw slotInvalidated(slot, this.#label, 'its wal_status is "lost"');
    const confirmed = typeof row['confirmed'] === 'string' ? parseLsn(row['confirmed']) : 0n;
    if (startLsn !== 0n && confirmed > startLsn) {
      throw new TributaryError(
        'SOURCE_HISTORY_LOST',
        `Replication slot "${slot}" of ${this.#label} has been confirmed up to ${formatLsn(confirmed)}, past the saved position ${formatLsn(startLsn)}: the changes between were handed to another consumer or skipped, and the server no longer sends them.`,
        {
          hint: 'Only a full refresh can recover them. Make sure no other program (pg_recvlogical, a subscription, pg_replication_slot_advance) uses this slot.',
        },
      );
    }
  }

  #classify(error: unknown): TributaryError {
    return classifyReplicationError(error, { slot: this.#options.slot, label: this.#label });
  }

  #unexpectedEnd(): TributaryError {
    return new TributaryError(
      'SOURCE_UNREACHABLE',
      `${capitalize(this.#label)} ended replication unexpectedly.`,
      {
        hint: 'The server stopped sending changes without an error (a shutdown or a replication timeout); Tributary reconnects and resumes from the last durable position.',
      },
    );
  }

  #malformed(chunk: Buffer): TributaryError {
    return new TributaryError(
      'INTERNAL',
      `${capitalize(this.#label)} sent a replication frame Tributary cannot read (type 0x${(chunk[0] ?? 0).toString(16)}, ${chunk.length} bytes).`,
      { hint: 'Report it with the PostgreSQL version; the stream resumes from the last durable position.' },
    );
  }
}

/** Turns a driver or server error of a replication session into a TributaryError. */
export function classifyReplicationError(
  error: unknown,
  context: { readonly slot: string; readonly label: string },
): TributaryError {
  if (error instanceof TributaryError) return error;
  const e = (error ?? {}) as { code?: string; message?: string; detail?: string };
  const code = e.code ?? '';
  const text = `${messageOf(error)}${e.detail ? ` (${e.detail})` : ''}`;
  const { slot, label } = context;
  if (/replication slot .* does not exist/i.test(text)) return slotMissing(slot, label, error);
  if (/can no longer get changes from replication slot|has been invalidated/i.test(text)) {
    return slotInvalidated(slot, label, text, error);
  }
  if (/requested WAL segment .* has already been removed/i.test(text)) {
    return slotInvalidated(slot, label, text, error);
  }
  if (/publication .* does not exist/i.test(text)) {
    return new TributaryError('SOURCE_MISCONFIGURED', `Replication from ${label} failed: ${text}`, {
      hint: 'Create the publication (CREATE PUBLICATION ... FOR TABLE ...). A publication created after the slot is not visible to changes older than itself: recreate the slot after the publication and run a full refresh.',
      cause: error,
    });
  }
  if (code === '55006' || /is active for PID/i.test(text)) {
    return new TributaryError(
      'SOURCE_QUERY_FAILED',
      `Replication slot "${slot}" of ${label} is in use: ${text}`,
      {
        hint: 'Another connection is reading this slot: a previous run still shutting down (retrying will succeed) or another program; stop that program, or give this pipeline its own slot.',
        cause: error,
      },
    );
  }
  if (code === '28P01' || code === '28000') {
    return new TributaryError(
      'SOURCE_AUTH_FAILED',
      `${capitalize(label)} rejected the replication connection: ${text}`,
      {
        hint: 'Check the user name, the password stored in the secret, and that pg_hba.conf has a "replication" line for this user and host.',
        cause: error,
      },
    );
  }
  if (code === '42501') {
    return new TributaryError(
      'SOURCE_PRIVILEGE_MISSING',
      `${capitalize(label)} refused replication: ${text}`,
      {
        hint: 'Grant the CDC user replication: ALTER ROLE <user> WITH REPLICATION;',
        cause: error,
      },
    );
  }
  if (/wal_level/i.test(text)) {
    return new TributaryError('SOURCE_MISCONFIGURED', `${capitalize(label)} cannot decode its log: ${text}`, {
      hint: 'Set wal_level = logical in postgresql.conf and restart the server.',
      cause: error,
    });
  }
  if (
    code.startsWith('08') ||
    code.startsWith('57P') ||
    /^E(CONNRESET|CONNREFUSED|PIPE|TIMEDOUT|HOSTUNREACH|NOTFOUND|AI_AGAIN)$/.test(code) ||
    /connection terminated|terminating (walsender|connection)|replication timeout/i.test(text)
  ) {
    return new TributaryError('SOURCE_UNREACHABLE', `Lost the replication connection to ${label}: ${text}`, {
      hint: 'Tributary reconnects and resumes from the last durable position; if it keeps happening, check the server log and network, and that wal_sender_timeout is not shorter than the status interval.',
      cause: error,
    });
  }
  return new TributaryError('SOURCE_QUERY_FAILED', `Replication from ${label} failed: ${text}`, {
    hint: 'Check the server log around this time for the cause; Tributary retries and resumes from the last durable position.',
    cause: error,
  });
}

function slotMissing(slot: string, label: string, cause?: unknown): TributaryError {
  return new TributaryError('SOURCE_HISTORY_LOST', `Replication slot "${slot}" does not exist on ${label}.`, {
    retry: 'resnapshot',
    hint: 'The slot is what makes the server keep the WAL after the saved position; without it (dropped by hand, or never created on this server, e.g. after a failover) the changes since then are gone, so a full refresh is needed (the slot is created anew).',
    ...(cause === undefined ? {} : { cause }),
  });
}

function slotInvalidated(slot: string, label: string, detail: string, cause?: unknown): TributaryError {
  return new TributaryError(
    'SOURCE_HISTORY_LOST',
    `Replication slot "${slot}" of ${label} can no longer provide changes: ${detail}`,
    {
      retry: 'resnapshot',
      hint: 'The server removed WAL the slot still needed (the slot was invalidated, typically by max_slot_wal_keep_size while the pipeline was behind), so the changes in it are gone and a full refresh is needed (it replaces the slot). Raise max_slot_wal_keep_size, or keep the pipeline running, so it does not happen again.',
      ...(cause === undefined ? {} : { cause }),
    },
  );
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
