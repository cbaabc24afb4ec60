/**
 * Streams the binlog with zongji and regroups its events into one ChangeBatch per source transaction.
 *
 * Why the shape: zongji pushes events from a socket; the pipeline pulls batches. An in-memory queue sits
 * between them, and the binlog connection is paused when the queue is long, so a slow consumer never makes
 * the process buffer the whole log. Positions are taken only at commit markers (Xid, COMMIT, DDL): MariaDB
 * writes end_log_pos=0 inside transactions, and a position inside a transaction is not a safe resume point.
 *
 * Each batch's position carries the GTID state after its commit: the start state (from the saved position,
 * or read from the binlog itself) plus the GTID of every transaction seen since. The stream starts either at
 * a file and offset of this server or, after a failover, at a GTID state (see resume-plan.ts).
 */
import ZongJi from '@vlasky/zongji';
import type { ChangeBatch, ChangeEvent } from '../../core/change.js';
import { TributaryError } from '../../core/errors.js';
import type { StreamOptions } from '../../core/ports.js';
import type { Position } from '../../core/position.js';
import { type Row, type TableId, tableKey } from '../../core/table.js';
import {
  type BinlogCoordinates,
  decodeBinlogPosition,
  describeCoordinates,
  encodeBinlogPosition,
  type ServerIdentity,
} from './binlog-position.js';
import { classifyMySqlError, driverOptions, type MySqlEndpoint, verifyPeerIdentity } from './connect.js';
import { GtidState, gtidOrdinal } from './gtid.js';
import type { ResumePlan } from './resume-plan.js';

const HIGH_WATER = 20_000;
const LOW_WATER = 2_000;
/** With a target position, this much silence means everything up to it has been read. */
const IDLE_FINISH_MS = 1_500;

/** The parts of a zongji event the reader uses. */
export interface ZongJiEvent {
  getEventName(): string;
  timestamp: number;
  nextPosition: number;
  tableId?: number;
  tableMap?: Record<number, { parentSchema: string; tableName: string }>;
  rows?: Array<Row | { before: Row; after: Row }>;
  query?: string;
  schema?: string;
  binlogName?: string;
  /** The GTID of the transaction the event belongs to (zongji tracks it even for filtered GTID events). */
  gtid?: string;
  /** previousgtids (MySQL): the GTID set before this binlog file. */
  gtidSet?: string;
  /** mariadbgtidlist (MariaDB): the last GTID per domain and server before this binlog file. */
  gtids?: Array<{ domainId: number; serverId: number; seqNo: number | string }>;
}

type Item = { event: ZongJiEvent; file: string } | { error: unknown };

/** Where a stream starts: a file and offset of this server, or a GTID state (any server of the topology). */
export type BinlogStart = Extract<ResumePlan, { kind: 'file' | 'gtid' }>;

export interface BinlogStreamOptions extends StreamOptions {
  /** The replica server_id the dump connection announces. */
  readonly serverId: number;
  /** The server the stream reads, recorded in every position. */
  readonly server: ServerIdentity;
  /** Builds the zongji client; tests hand in one with a scripted connection. */
  readonly client?: () => ZongJi;
}

/** Every event the reader looks at; zongji drops the rest before decoding them. */
export const BINLOG_EVENTS = [
  'rotate',
  'tablemap',
  'writerows',
  'updaterows',
  'deleterows',
  'xid',
  'query',
  'gtid',
  'mariadbgtid',
  'previousgtids',
  'mariadbgtidlist',
  'xaprepare',
];

export async function* readBinlog(
  endpoint: MySqlEndpoint,
  from: Position,
  start: BinlogStart,
  options: BinlogStreamOptions,
): AsyncIterable<ChangeBatch> {
  const until = options.until;
  if (until !== undefined && from >= until) return;

  const captured = new Set(options.tables.map((t) => tableKey(t.id)));
  const includeSchema: Record<string, string[]> = {};
  for (const t of options.tables) {
    includeSchema[t.id.schema] = [...(includeSchema[t.id.schema] ?? []), t.id.table];
  }
  const assembler = new TransactionAssembler({ captured, server: options.server, start });

  const zongji = options.client?.() ?? new ZongJi(driverOptions(endpoint));
  const queue: Item[] = [];
  let wake: (() => void) | undefined;
  let paused = false;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  zongji.on('binlog', (event: unknown) => {
    queue.push({ event: event as ZongJiEvent, file: zongji.options.filename as string });
    if (!paused && queue.length > HIGH_WATER) {
      paused = true;
      zongji.connection?.pause();
    }
    notify();
  });
  zongji.on('error', (error: unknown) => {
    queue.push({ error });
    notify();
  });
  // An IP host under verify_identity is checked on both of zongji's connections before any event is used;
  // a mismatch is queued ahead of every event, so nothing from an unverified peer is staged.
  zongji.on('ready', () => {
    try {
      verifyPeerIdentity(zongji.ctrlConnection, endpoint);
      verifyPeerIdentity(zongji.connection, endpoint);
    } catch (error) {
      queue.unshift({ error });
      notify();
    }
  });
  const onAbort = () => notify();
  options.signal.addEventListener('abort', onAbort);

  zongji.start({
    serverId: options.serverId,
    // A GTID start is a COM_BINLOG_DUMP_GTID on MySQL and `SET @slave_connect_state` on MariaDB (zongji
    // does both). A file start whose GTID state is unknown reads the file from its beginning, where the
    // state before the file is logged, and skips what precedes the offset (see TransactionAssembler).
    ...(start.kind === 'gtid'
      ? { gtidSet: start.gtid }
      : { filename: start.file, position: start.gtid === undefined ? 4 : start.offset }),
    includeEvents: BINLOG_EVENTS,
    includeSchema,
  });

  try {
    for (;;) {
      options.signal.throwIfAborted();
      const item = queue.shift();
      if (!item) {
        if (paused) {
          paused = false;
          zongji.connection?.resume();
        }
        const timedOut = await new Promise<boolean>((resolve) => {
          const timer = until === undefined ? undefined : setTimeout(() => resolve(true), IDLE_FINISH_MS);
          wake = () => {
            if (timer) clearTimeout(timer);
            resolve(false);
          };
        });
        if (timedOut && !assembler.inTransaction) return;
        continue;
      }
      if (paused && queue.length < LOW_WATER) {
        paused = false;
        zongji.connection?.resume();
      }
      if ('error' in item) throw classifyBinlogError(item.error, endpoint, from, start);

      const batch = assembler.push(item.event, item.file);
      if (!batch) continue;
      yield batch;
      if (until !== undefined && batch.position >= until) return;
    }
  } finally {
    options.signal.removeEventListener('abort', onAbort);
    zongji.removeAllListeners('binlog');
    zongji.on('error', () => {});
    zongji.stop();
  }
}

/**
 * Turns zongji events into one batch per transaction and tracks the GTID state. Pure: no I/O, so the MySQL 8
 * byte-level tests drive it through zongji's decoder without a server.
 */
export class TransactionAssembler {
  readonly #captured: ReadonlySet<string>;
  readonly #server: ServerIdentity;
  #events: ChangeEvent[] = [];
  #gtid: GtidState;
  /** Waiting for the state logged at the start of the file (a file start with an unknown GTID state). */
  #needSeed: boolean;
  /** The GTID of the open transaction, folded in at its commit (or when the next one starts). */
  #pending: string | undefined;
  /** Never lets positions go backwards, even if a non-strict server logs a lower sequence number. */
  #ordinal: bigint;
  /** Read from the file start to learn the GTID state: everything up to here was captured before. */
  #skipThrough: BinlogCoordinates | undefined;
  #inTransaction = false;

  constructor(options: { captured: ReadonlySet<string>; server: ServerIdentity; start: BinlogStart }) {
    const { start } = options;
    this.#captured = options.captured;
    this.#server = options.server;
    this.#gtid = GtidState.parse(options.server.flavor, start.gtid ?? '');
    this.#needSeed = start.gtid === undefined;
    this.#ordinal = start.ordinal;
    this.#skipThrough =
      start.kind === 'file' && start.gtid === undefined
        ? { file: start.file, offset: start.offset }
        : undefined;
  }

  /** True between a transaction's first event and its commit. */
  get inTransaction(): boolean {
    return this.#inTransaction;
  }

  push(event: ZongJiEvent, file: string): ChangeBatch | undefined {
    const skip = this.#skipThrough;
    if (skip && (file !== skip.file || event.nextPosition > skip.offset)) this.#skipThrough = undefined;
    const skipping = this.#skipThrough !== undefined;
    const name = event.getEventName();
    let boundary = false;
    switch (name) {
      case 'previousgtids':
        if (this.#needSeed && event.gtidSet !== undefined) {
          this.#gtid = GtidState.parse('mysql', event.gtidSet);
          this.#needSeed = false;
        }
        return undefined;
      case 'mariadbgtidlist':
        if (this.#needSeed && event.gtids) {
          this.#gtid = GtidState.fromMariaDbList(event.gtids);
          this.#needSeed = false;
        }
        return undefined;
      case 'gtid':
      case 'mariadbgtid':
        // A new transaction means the previous one committed, even if its commit marker was not one we know.
        if (this.#pending !== undefined) this.#gtid.add(this.#pending);
        this.#pending = event.gtid;
        this.#inTransaction = true;
        return undefined;
      case 'writerows':
      case 'updaterows':
      case 'deleterows': {
        this.#inTransaction = true;
        if (skipping) break;
        const info = event.tableMap?.[event.tableId ?? -1];
        if (!info) break;
        const table: TableId = { schema: info.parentSchema, table: info.tableName };
        if (!this.#captured.has(tableKey(table))) break;
        for (const row of event.rows ?? []) {
          if (name === 'writerows') this.#events.push({ kind: 'insert', table, after: row as Row });
          else if (name === 'deleterows') this.#events.push({ kind: 'delete', table, before: row as Row });
          else {
            const { before, after } = row as { before: Row; after: Row };
            this.#events.push({ kind: 'update', table, before, after });
          }
        }
        break;
      }
      case 'xaprepare':
        // Ends an XA PREPARE group, which commits later under the XA COMMIT's own GTID; its GTID is folded
        // in when the next group starts, as zongji does.
        this.#inTransaction = false;
        return undefined;
      case 'xid':
        boundary = true;
        break;
      case 'query': {
        const sql = (event.query ?? '').trim();
        const upper = sql.toUpperCase();
        if (upper === 'BEGIN') {
          this.#inTransaction = true;
          break;
        }
        // COMMIT ends a transaction on non-transactional engines; anything else is DDL, its own transaction.
        boundary = true;
        if (!skipping && /^TRUNCATE\b/.test(upper)) {
          const table = truncatedTable(sql, event.schema ?? '', this.#captured);
          if (table) this.#events.push({ kind: 'truncate', table });
        }
        break;
      }
      default:
        break;
    }
    if (!boundary) return undefined;

    const gtid = event.gtid ?? this.#pending;
    if (gtid !== undefined) this.#gtid.add(gtid);
    this.#pending = undefined;
    if (skipping) {
      this.#events = [];
      this.#inTransaction = false;
      return undefined;
    }
    if (event.nextPosition <= 0) return undefined;

    const state = this.#gtid.toString();
    const ordinal = gtidOrdinal(state);
    if (ordinal > this.#ordinal) this.#ordinal = ordinal;
    const position = encodeBinlogPosition({
      file,
      offset: event.nextPosition,
      gtid: state,
      server: this.#server,
      ordinal: this.#ordinal,
    });
    const events = this.#events;
    this.#events = [];
    this.#inTransaction = false;
    return { origin: 'stream', position, commitTime: new Date(event.timestamp), complete: true, events };
  }
}

/** The captured table a `TRUNCATE [TABLE] [db.]t` statement empties, if any; `schema` is the session's database. */
export function truncatedTable(
  sql: string,
  schema: string,
  captured: ReadonlySet<string>,
): TableId | undefined {
  const m = /^TRUNCATE\s+(?:TABLE\s+)?(`(?:[^`]|``)+`|[^\s.`;]+)(?:\.(`(?:[^`]|``)+`|[^\s.`;]+))?/i.exec(sql);
  if (!m?.[1]) return undefined;
  const unquote = (name: string) => (name.startsWith('`') ? name.slice(1, -1).replaceAll('``', '`') : name);
  const id = m[2] ? { schema: unquote(m[1]), table: unquote(m[2]) } : { schema, table: unquote(m[1]) };
  return captured.has(tableKey(id)) ? id : undefined;
}

export function classifyBinlogError(
  error: unknown,
  endpoint: MySqlEndpoint,
  from: Position,
  start?: BinlogStart,
): TributaryError {
  const e = error as { errno?: number; message?: string };
  const historyGone =
    e?.errno === 1236 ||
    e?.errno === 1945 ||
    e?.errno === 1955 ||
    /could not find first log file|purged binlog|first log file name|not in the master's binlog|could not find GTID state/i.test(
      e?.message ?? '',
    );
  if (!historyGone) return classifyMySqlError(error, endpoint, 'reading the binlog');
  const refresh =
    'stop the pipeline, remove the gateway directory in the staging volume and the bronze tables, and run again';
  if (start?.kind === 'gtid' && start.failover) {
    return new TributaryError(
      'SOURCE_HISTORY_LOST',
      `A failover was detected on connection "${endpoint.name}" (${start.reason}), and the new primary cannot continue from the captured GTID state ${start.gtid}: ${e?.message ?? ''}`,
      {
        hint: `The new primary's binlog does not hold every transaction after the ones already captured (it never received some of them from the old primary, or it purged them), so capture cannot continue without a gap. A new snapshot (full refresh) is needed: ${refresh}.`,
        cause: error,
      },
    );
  }
  let where: string = from;
  try {
    where = describeCoordinates(decodeBinlogPosition(from));
  } catch {
    // Not decodable: name it as stored.
  }
  return new TributaryError(
    'SOURCE_HISTORY_LOST',
    `The binlog at the saved position ${where} is no longer on the source of connection "${endpoint.name}"${start?.kind === 'gtid' ? `, and resuming from its GTID state ${start.gtid} failed too` : ''}: ${e?.message ?? ''}`,
    {
      hint: `The server purged it before Tributary read it, so the changes in it can only be recovered by a new snapshot (full refresh): ${refresh}. Raise binlog_expire_logs_seconds (the checklist recommends 48-72 h) so it does not happen again.`,
      cause: error,
    },
  );
}
