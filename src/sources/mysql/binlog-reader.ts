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
 *
 * Heartbeats: the dump connection asks the server for a HEARTBEAT_LOG_EVENT every {@link HEARTBEAT_MS} while it
 * has nothing to send (`SET @master_heartbeat_period`, as a replica's IO thread does). A heartbeat names the
 * file and offset the server has sent up to, always a transaction boundary, so an idle stream learns where
 * the log ends even when the last events are not transactions (a rotation to a new file, as FLUSH LOGS and
 * every server restart make): it becomes an empty batch at that position. Heartbeats also prove the
 * connection alive: a stream that receives nothing, not even a heartbeat, for {@link DEAD_AFTER_MS} fails with
 * SOURCE_UNREACHABLE (transient) instead of passing silence off as an idle source.
 */

import ZongJi from '@vlasky/zongji';
import Denque from 'denque';
import type { ChangeBatch, ChangeEvent } from '../../core/change.js';
import { TributaryError } from '../../core/errors.js';
import type { StreamOptions } from '../../core/ports.js';
import type { Position } from '../../core/position.js';
import { type ColumnSchema, type Row, type TableId, type TableSchema, tableKey } from '../../core/table.js';
import {
  type BinlogCoordinates,
  decodeBinlogPosition,
  describeCoordinates,
  encodeBinlogPosition,
  type ServerIdentity,
} from './binlog-position.js';
import { classifyMySqlError, driverOptions, type MySqlEndpoint, verifyPeerIdentity } from './connect.js';
import { type DdlNotice, ddlNotices, truncatedTable } from './ddl-notices.js';
import { applyDdl, type DdlEffect, type SourceShape, shapeFitsTableMap } from './ddl-shapes.js';
import { GtidState, gtidOrdinal } from './gtid.js';
import type { ResumePlan } from './resume-plan.js';
import { installRowDecoder } from './row-decoder.js';
import type { SchemaHistory } from './schema-history.js';
import {
  correctGeometryCharsets,
  readSpatialAsBytes,
  spatialRowsToWkb,
  uncorrectedCharsets,
} from './spatial.js';
import { deltaTypeFor } from './type-mapping.js';

/**
 * The queue between zongji and the consumer is bounded by events and by the binlog bytes they came from,
 * whichever is reached first, and reading resumes below a fifth of both. Queued rows are the bulk of the
 * heap during a catch-up: they wait long enough to be promoted to V8's old generation, so the bound sets
 * how far the heap grows between major collections. A catch-up of 1M single-row changes peaked at 566-597
 * MiB of RSS with 20,000 events queued and at 419-459 MiB with 5,000, at the same speed (bench pipeline-cdc,
 * catch-up). The byte bound is for multi-row events (a bulk INSERT packs up to binlog_row_event_max_size,
 * 8 KiB by default, into one): 2 MiB of them is some 25,000 narrow rows.
 */
const HIGH_WATER_EVENTS = 5_000;
const HIGH_WATER_BYTES = 2 * 1024 * 1024;
/**
 * With a target position that no batch reaches: this long without an event, with a heartbeat since the last
 * one (the server has nothing more to send), means everything up to it has been read.
 */
const IDLE_FINISH_MS = 1_500;
/** How often the server is asked to send a heartbeat while the stream is idle. */
export const HEARTBEAT_MS = 500;
/** No event and no heartbeat for this long: the connection is dead (or the server stalled). */
export const DEAD_AFTER_MS = 30_000;

/** The parts of a zongji event the reader uses. */
export interface ZongJiEvent {
  getEventName(): string;
  timestamp: number;
  nextPosition: number;
  /** The event's length in the binlog, without its header. */
  size?: number;
  tableId?: number;
  /** zongji's live map of table ids: later TABLE_MAP events overwrite it (see {@link pinTable}). */
  tableMap?: Record<number, BinlogTable>;
  /** TABLE_MAP and rows events: the table the id named when zongji decoded the event, set by the reader. */
  table?: BinlogTable;
  /** TableMap events: true when the event carries its column names (binlog_row_metadata=FULL). */
  hasSelfDescribingMetadata?: () => boolean;
  /** TableMap events under binlog_row_metadata=FULL: the column names as of the rows that follow. */
  columnNames?: readonly string[];
  rows?: Array<Row | { before: Row; after: Row }>;
  query?: string;
  schema?: string;
  binlogName?: string;
  /** Heartbeats (MariaDB) past 4 GiB: the offset, when `nextPosition` cannot hold it (it is 0 then). */
  position?: number | string;
  /** Query events of DDL: what it did to the followed column lists (set by the reader, see ddl-shapes.ts). */
  shapeChanges?: DdlEffect;
  /** TABLE_MAP events: the followed shape of this table did not fit the event, so information_schema was asked. */
  unfitShape?: string;
  /** TABLE_MAP events: information_schema's columns, which fit the event and are followed from here on. */
  learnedShape?: SourceShape;
  /** The GTID of the transaction the event belongs to (zongji tracks it even for filtered GTID events). */
  gtid?: string;
  /** previousgtids (MySQL): the GTID set before this binlog file. */
  gtidSet?: string;
  /** mariadbgtidlist (MariaDB): the last GTID per domain and server before this binlog file. */
  gtids?: Array<{ domainId: number; serverId: number; seqNo: number | string }>;
}

export interface BinlogTable {
  readonly parentSchema: string;
  readonly tableName: string;
  /** INFORMATION_SCHEMA.COLUMNS-shaped rows: from the event itself under binlog_row_metadata=FULL. */
  readonly columnSchemas?: ReadonlyArray<{ COLUMN_NAME: string; COLUMN_TYPE: string }>;
  /** The rows are the column list followed through the log's DDL (ddl-shapes.ts), not information_schema's. */
  readonly followed?: boolean;
}

/**
 * Records on a TABLE_MAP or rows event which table its id names, at the moment zongji decoded it. zongji keeps
 * one live id → table map that each TABLE_MAP overwrites, while the reader consumes its queue later, possibly
 * far behind. Table ids are only unique within one server lifetime and one table definition: a stream that
 * crosses a server restart (reading a crashed binlog file, then the next one) or DDL sees the same id name
 * another table. Looking the id up at consumption time once attached one table's rows to another table.
 */
export function pinTable(event: ZongJiEvent): void {
  const info = event.tableMap?.[event.tableId ?? -1];
  if (info) event.table = info;
}

type Item = { event: ZongJiEvent; file: string; bytes: number } | { error: unknown };

/** Where a stream starts: a file and offset of this server, or a GTID state (any server of the topology). */
export type BinlogStart = Extract<ResumePlan, { kind: 'file' | 'gtid' }>;

/** Where the reader reports DDL it reads for the captured schemas. */
export interface BinlogLog {
  info?(message: string): void;
  warn(message: string): void;
}

export interface BinlogStreamOptions extends StreamOptions {
  /** The replica server_id the dump connection announces. */
  readonly serverId: number;
  /** DDL of the captured schemas (DROP and RENAME of captured tables, renamed columns, ...) is said here. */
  readonly log?: BinlogLog;
  /** The server the stream reads, recorded in every position. */
  readonly server: ServerIdentity;
  /**
   * The captured tables' column lists at the start position, and where the changes DDL makes to them are
   * recorded. Rows of a TABLE_MAP that does not name its columns (binlog_row_metadata is not FULL) are decoded
   * with these rather than with information_schema's current columns (ddl-shapes.ts).
   */
  readonly history?: {
    readonly shapes: ReadonlyMap<string, SourceShape>;
    readonly store: SchemaHistory;
    /** The server logs column names (binlog_row_metadata=FULL): DDL not understood needs no warning then. */
    readonly logsColumnNames: boolean;
  };
  /** Builds the zongji client; tests hand in one with a scripted connection. */
  readonly client?: () => ZongJi;
  /** Heartbeat period and dead-connection limit; tests shorten them. */
  readonly heartbeat?: { readonly periodMs: number; readonly deadAfterMs: number };
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
  'heartbeat',
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
  const assembler = new TransactionAssembler({
    captured,
    server: options.server,
    start,
    shapes: options.tables,
    warnUnknownShapes: options.history?.logsColumnNames === false,
  });

  await correctGeometryCharsets();
  // Column values are decoded by row-decoder.ts (the same values as zongji's, several times faster).
  await installRowDecoder();
  const zongji = options.client?.() ?? new ZongJi(driverOptions(endpoint));
  // The column lists as of the event being decoded: zongji decodes as the events arrive, ahead of the consumer,
  // so DDL is applied here, in arrival order, before the TABLE_MAP events that follow it are decoded.
  const followed = new Map(options.history?.shapes ?? []);
  decodeWithFollowedShapes(zongji, followed, captured);
  /** Before the start offset of a file read from its start (to learn its GTID state): DDL there is history. */
  let beforeStart = start.kind === 'file' && start.gtid === undefined;
  const heartbeatMs = options.heartbeat?.periodMs ?? HEARTBEAT_MS;
  const deadAfterMs = options.heartbeat?.deadAfterMs ?? DEAD_AFTER_MS;
  // A deque: Array#shift is linear on an array this long (up to HIGH_WATER_EVENTS), see replication-stream.ts.
  const queue = new Denque<Item>();
  /** Binlog bytes of the events in the queue. */
  let queuedBytes = 0;
  let wake: (() => void) | undefined;
  let paused = false;
  /** When anything (bytes, an event, a heartbeat) last arrived: a live connection is never silent for long. */
  let heardAt = Date.now();
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  zongji.on('binlog', (event: unknown) => {
    heardAt = Date.now();
    const e = event as ZongJiEvent;
    // Spatial values: zongji is told to read the stored bytes at each TABLE_MAP, before it decodes the rows
    // that follow, and the rows get their WKB (spatial.ts).
    const name = e.getEventName();
    const file = zongji.options.filename as string;
    if (beforeStart && (start.kind !== 'file' || file !== start.file || e.nextPosition > start.offset))
      beforeStart = false;
    if (name === 'query' && !beforeStart) followDdl(e, followed, zongji);
    if (name === 'tablemap') {
      const broken = uncorrectedCharsets(e as Parameters<typeof uncorrectedCharsets>[0]);
      if (broken) {
        queue.push({ error: broken });
        notify();
        return;
      }
      readSpatialAsBytes(e);
    } else if (name === 'writerows' || name === 'deleterows' || name === 'updaterows')
      spatialRowsToWkb(e, name === 'updaterows');
    if (name === 'tablemap' || name === 'writerows' || name === 'deleterows' || name === 'updaterows')
      pinTable(e);
    const bytes = e.size ?? 0;
    queue.push({ event: e, file, bytes });
    queuedBytes += bytes;
    if (!paused && (queue.length > HIGH_WATER_EVENTS || queuedBytes > HIGH_WATER_BYTES)) {
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
      return;
    }
    // Any bytes count as a sign of life: zongji emits nothing for the rows of tables it filters out, and a
    // large transaction on an uncaptured table may take longer to arrive than the dead-connection limit.
    // (Taken from the connection's stream now, after a TLS upgrade has replaced it.)
    (zongji.connection as { stream?: NodeJS.EventEmitter } | null | undefined)?.stream?.on('data', () => {
      heardAt = Date.now();
    });
    // Queued on the dump connection ahead of the dump command, which zongji adds right after 'ready'. The
    // period is in nanoseconds; MySQL 8.0.26+ also reads the variable under its new name.
    const ns = BigInt(heartbeatMs) * 1_000_000n;
    zongji.connection?.query(
      `SET @master_heartbeat_period = ${ns}, @source_heartbeat_period = ${ns}`,
      (error: unknown) => {
        if (!error) return;
        queue.unshift({ error });
        notify();
      },
    );
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

  /** When the last event that is not a heartbeat was taken from the queue. */
  let eventAt = Date.now();
  /** A heartbeat came after that event: the server had nothing more to send. */
  let heartbeatSince = false;
  try {
    for (;;) {
      options.signal.throwIfAborted();
      const item = queue.shift();
      if (!item) {
        if (paused) {
          paused = false;
          zongji.connection?.resume();
          // While paused nothing was read: the silence since then is Tributary's, not the server's.
          heardAt = Date.now();
        }
        const now = Date.now();
        if (now - heardAt >= deadAfterMs) throw silentSource(endpoint, now - heardAt, heartbeatMs);
        let waitMs = heardAt + deadAfterMs - now;
        if (until !== undefined && heartbeatSince && !assembler.inTransaction) {
          const idleMs = eventAt + IDLE_FINISH_MS - now;
          if (idleMs <= 0) return;
          waitMs = Math.min(waitMs, idleMs);
        }
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, waitMs);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        continue;
      }
      if ('bytes' in item) queuedBytes -= item.bytes;
      if (paused && queue.length < HIGH_WATER_EVENTS / 5 && queuedBytes < HIGH_WATER_BYTES / 5) {
        paused = false;
        zongji.connection?.resume();
        heardAt = Date.now();
      }
      if ('error' in item) throw classifyBinlogError(item.error, endpoint, from, start);
      if (item.event.getEventName() === 'heartbeat') heartbeatSince = true;
      else {
        eventAt = Date.now();
        heartbeatSince = false;
      }

      const batch = assembler.push(item.event, item.file);
      for (const notice of assembler.takeNotices()) {
        if (notice.level === 'warn' || !options.log?.info) options.log?.warn(notice.message);
        else options.log.info(notice.message);
      }
      if (!batch) continue;
      // Durable before the batch is handed on: a resume from its position needs the shapes it leaves.
      const shapes = assembler.takeShapeChanges();
      if (shapes.length > 0)
        await options.history?.store.record(shapes.map((c) => ({ position: batch.position, ...c })));
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

/** The parts of zongji's TABLE_MAP event and client that decoding with followed shapes touches. */
interface TableMapInternals {
  readonly tableId: number;
  readonly schemaName: string;
  readonly tableName: string;
  readonly columnCount: number;
  readonly columnTypes: readonly number[];
  _effectiveColumnType?(index: number): number;
  unfitShape?: string;
  learnedShape?: SourceShape;
}
interface ZongJiInternals {
  tableMap: Record<
    number,
    {
      readonly parentSchema: string;
      readonly tableName: string;
      readonly columnSchemas?: ReadonlyArray<Record<string, unknown>>;
      readonly followed?: boolean;
    }
  >;
  _fetchTableInfo(event: TableMapInternals, next: () => void): void;
}

/**
 * zongji asks information_schema for the columns of a TABLE_MAP that does not name them (it does so once per
 * table id). Here it is given the column list followed through the log instead, when that list fits the
 * event's column count and type codes; otherwise it asks information_schema as before (and the event says
 * so, for a warning), and that answer is followed from then on.
 */
function decodeWithFollowedShapes(
  zongji: ZongJi,
  followed: Map<string, SourceShape>,
  captured: ReadonlySet<string>,
): void {
  const internals = zongji as unknown as ZongJiInternals;
  const fetch = internals._fetchTableInfo.bind(zongji);
  internals._fetchTableInfo = (event, next) => {
    const key = `${event.schemaName}.${event.tableName}`;
    const shape = followed.get(key);
    const codes = Array.from(
      { length: event.columnCount },
      (_, i) => event._effectiveColumnType?.(i) ?? (event.columnTypes[i] as number),
    );
    if (shape && shapeFitsTableMap(shape, codes)) {
      // Fresh rows every time: zongji writes each column's signedness into them.
      internals.tableMap[event.tableId] = {
        columnSchemas: shape.columns.map((c) => ({
          COLUMN_NAME: c.name,
          COLUMN_TYPE: c.type,
          CHARACTER_SET_NAME: c.charset,
          COLLATION_NAME: null,
          COLUMN_COMMENT: '',
        })),
        parentSchema: event.schemaName,
        tableName: event.tableName,
        followed: true,
      };
      next();
      return;
    }
    if (shape) event.unfitShape = key;
    fetch(event, () => {
      const rows = internals.tableMap[event.tableId]?.columnSchemas;
      if (rows && captured.has(key)) {
        const learned: SourceShape = {
          columns: rows.map((r) => ({
            name: String(r['COLUMN_NAME']),
            type: String(r['COLUMN_TYPE']),
            charset: typeof r['CHARACTER_SET_NAME'] === 'string' ? r['CHARACTER_SET_NAME'] : null,
          })),
          charset: shape?.charset ?? null,
        };
        // information_schema's columns fit these rows: followed from here on, and recorded (at the end of this
        // transaction), so that a later start decodes with them and follows the DDL after them.
        if (shapeFitsTableMap(learned, codes)) {
          followed.set(key, learned);
          event.learnedShape = learned;
        }
      }
      next();
    });
  };
}

/**
 * Applies a query event's DDL to the followed column lists, as zongji decodes it (before the TABLE_MAP events
 * after it), and notes on the event what changed. zongji forgets the table ids of a changed table, so its next
 * TABLE_MAP asks for the new columns even if the server kept the id.
 */
function followDdl(event: ZongJiEvent, followed: Map<string, SourceShape>, zongji: ZongJi): void {
  const sql = (event.query ?? '').trim();
  if (/^(?:BEGIN|COMMIT|XA\b|SAVEPOINT\b|ROLLBACK\b)/i.test(sql) || followed.size === 0) return;
  const effect = applyDdl(followed, sql, event.schema ?? '');
  if (effect.shapes.size === 0 && effect.unknown.length === 0) return;
  const tableMap = (zongji as unknown as ZongJiInternals).tableMap;
  for (const [key, shape] of effect.shapes) {
    if (shape) followed.set(key, shape);
    else followed.delete(key);
    for (const [id, info] of Object.entries(tableMap))
      if (`${info.parentSchema}.${info.tableName}` === key) delete tableMap[Number(id)];
  }
  event.shapeChanges = effect;
}

/**
 * Turns zongji events into one batch per transaction and tracks the GTID state. Pure: no I/O, so the MySQL 8
 * byte-level tests drive it through zongji's decoder without a server.
 */
export class TransactionAssembler {
  readonly #captured: ReadonlySet<string>;
  /** The databases of the captured tables: DDL there is reported (a table renamed away, dropped, created). */
  readonly #schemas: ReadonlySet<string>;
  /** Each captured table's shape as of the last TABLE_MAP read (binlog_row_metadata=FULL), by key. */
  readonly #shapes = new Map<string, TableSchema>();
  /**
   * Per captured table, the column list of its last TABLE_MAP and the shape that came of it. A log of one-row
   * statements has a TABLE_MAP per row, nearly always the same list: it is compared, not mapped again.
   */
  readonly #lastLogged = new Map<string, { logged: readonly LoggedColumn[]; shape: TableSchema }>();
  #notices: DdlNotice[] = [];
  /** The followed column lists DDL changed in the batch being assembled, for the schema history. */
  #shapeChanges: Array<{ table: string; shape: SourceShape | null }> = [];
  readonly #warnUnknownShapes: boolean;
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
  /** The position of the last batch returned, so a heartbeat only ever moves it forward. */
  #lastPosition: Position | undefined;
  /** The commit time of the last transaction read, which an empty heartbeat batch carries on. */
  #lastCommitTime: Date | undefined;

  constructor(options: {
    captured: ReadonlySet<string>;
    server: ServerIdentity;
    start: BinlogStart;
    /** The shapes the captured tables are known by; a TABLE_MAP that differs yields a `schema` event. */
    shapes?: readonly TableSchema[];
    /** Say when DDL of a captured table was not understood (rows are then decoded by information_schema). */
    warnUnknownShapes?: boolean;
  }) {
    const { start } = options;
    this.#captured = options.captured;
    this.#schemas = new Set([...options.captured].map((k) => k.slice(0, k.indexOf('.'))));
    for (const t of options.shapes ?? []) this.#shapes.set(tableKey(t.id), t);
    this.#server = options.server;
    this.#warnUnknownShapes = options.warnUnknownShapes ?? false;
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

  /** The followed column lists that DDL in the batch just returned changed, to be recorded at its position. */
  takeShapeChanges(): Array<{ table: string; shape: SourceShape | null }> {
    const changes = this.#shapeChanges;
    this.#shapeChanges = [];
    return changes;
  }

  /** What the DDL read since the last call means for capture, to be logged. */
  takeNotices(): DdlNotice[] {
    const notices = this.#notices;
    this.#notices = [];
    return notices;
  }

  /**
   * A TABLE_MAP that describes itself (binlog_row_metadata=FULL), or one decoded with the column list followed
   * through the log's DDL (ddl-shapes.ts), gives the table's shape as of this point in the log, which is what
   * zongji decodes the following rows with. When it differs from the shape known so far (a column added,
   * dropped, renamed or retyped by DDL), a `schema` event goes ahead of the rows.
   */
  #tableMap(event: ZongJiEvent): void {
    if (event.unfitShape !== undefined && this.#captured.has(event.unfitShape)) {
      this.#notices.push({
        level: 'warn',
        message: `${event.unfitShape}: the columns followed through the binlog's DDL do not match the rows the log holds at this point (a column count or type differs), so they are decoded with the columns information_schema has now. That is right while capture is live, but values of rows written before later DDL may land under the wrong column names. Set binlog_row_metadata=FULL on the server, and refresh the table (tributary refresh) if its bronze rows look wrong.`,
      });
    }
    const info = event.table;
    if (event.learnedShape && info)
      this.#shapeChanges.push({ table: `${info.parentSchema}.${info.tableName}`, shape: event.learnedShape });
    if (!info?.columnSchemas) return;
    if (info.followed !== true) {
      if (event.hasSelfDescribingMetadata?.() !== true) return;
      // zongji still asks information_schema (today's shape) for some MariaDB tables (old-style temporal
      // columns): trust the column list only when it names the columns this event names.
      const names = event.columnNames ?? [];
      if (
        names.length !== info.columnSchemas.length ||
        info.columnSchemas.some((c, i) => c.COLUMN_NAME !== names[i])
      )
        return;
    }
    const table: TableId = { schema: info.parentSchema, table: info.tableName };
    const key = tableKey(table);
    if (!this.#captured.has(key)) return;
    const known = this.#shapes.get(key);
    const last = this.#lastLogged.get(key);
    if (last && last.shape === known && sameLogged(last.logged, info.columnSchemas)) return;
    const logged = info.columnSchemas.map((c) => ({
      COLUMN_NAME: c.COLUMN_NAME,
      COLUMN_TYPE: c.COLUMN_TYPE,
    }));
    const shape = shapeFromLog(table, logged, known);
    if (known && sameShape(shape, known)) {
      this.#lastLogged.set(key, { logged, shape: known });
      return;
    }
    this.#lastLogged.set(key, { logged, shape });
    this.#shapes.set(key, shape);
    this.#events.push({ kind: 'schema', table, schema: shape });
  }

  #ddl(event: ZongJiEvent, sql: string, where: string): void {
    const schema = event.schema ?? '';
    for (const notice of ddlNotices(sql, schema, { captured: this.#captured, schemas: this.#schemas, where }))
      this.#notices.push(notice);
    const effect = event.shapeChanges;
    if (!effect) return;
    // Capture hears of the new shapes from the TABLE_MAP events that follow, which zongji now decodes with them.
    for (const [key, shape] of effect.shapes) this.#shapeChanges.push({ table: key, shape });
    if (!this.#warnUnknownShapes) return;
    for (const u of effect.unknown) {
      if (!this.#captured.has(u.table)) continue;
      this.#notices.push({
        level: 'warn',
        message: `${u.table}: the DDL at ${where} was not understood (${u.clause.length > 120 ? `${u.clause.slice(0, 120)}...` : u.clause}), and the server does not log column names (binlog_row_metadata is not FULL). Its rows are decoded with the columns information_schema has from here on: right while capture is live, but during a catch-up across later DDL their values may land under the wrong column names. Set binlog_row_metadata=FULL on the server.`,
      });
    }
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
      case 'tablemap':
        if (!skipping) this.#tableMap(event);
        return undefined;
      case 'writerows':
      case 'updaterows':
      case 'deleterows': {
        this.#inTransaction = true;
        if (skipping) break;
        const info = event.table;
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
      case 'heartbeat':
        return skipping ? undefined : this.#heartbeat(event, file);
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
        } else if (!skipping && upper !== 'COMMIT') {
          this.#ddl(event, sql, `binlog ${file}:${event.nextPosition}`);
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

    const position = this.#positionAt(file, event.nextPosition);
    const events = this.#events;
    this.#events = [];
    this.#inTransaction = false;
    this.#lastPosition = position;
    this.#lastCommitTime = new Date(event.timestamp);
    return { origin: 'stream', position, commitTime: this.#lastCommitTime, complete: true, events };
  }

  /** The position at a transaction boundary of the log, with the GTID state there. */
  #positionAt(file: string, offset: number): Position {
    const state = this.#gtid.toString();
    const ordinal = gtidOrdinal(state);
    if (ordinal > this.#ordinal) this.#ordinal = ordinal;
    return encodeBinlogPosition({ file, offset, gtid: state, server: this.#server, ordinal: this.#ordinal });
  }

  /**
   * A heartbeat: the server has sent everything up to the file and offset it names, which is a transaction
   * boundary (the end of the log while it waits for new events, or the end of transactions a GTID resume
   * skipped). When that is past the last position, it becomes an empty batch there. Not while a transaction
   * is open or an XA PREPARE group is held for its commit (its rows are not staged yet), nor while the GTID
   * state is still unknown.
   */
  #heartbeat(event: ZongJiEvent, file: string): ChangeBatch | undefined {
    if (this.#inTransaction || this.#needSeed || this.#pending !== undefined || this.#events.length > 0)
      return undefined;
    const offset = Number(event.position ?? event.nextPosition);
    if (!Number.isSafeInteger(offset) || offset <= 0) return undefined;
    const position = this.#positionAt(event.binlogName || file, offset);
    if (this.#lastPosition !== undefined && position <= this.#lastPosition) return undefined;
    this.#lastPosition = position;
    return {
      origin: 'stream',
      position,
      commitTime: this.#lastCommitTime ?? new Date(),
      complete: true,
      events: [],
    };
  }
}

/** MariaDB logs these as fixed-length binary in TABLE_MAP; the table definition knows they are text. */
const LOGGED_AS_BYTES = /^(uuid|inet4|inet6)\b/i;

/**
 * The shape a TABLE_MAP's column list describes. A column the known shape has with the same Delta type keeps
 * its known entry (nullability, the source's own type text); a column of a type with no Delta mapping is left
 * out, as it cannot be staged.
 */
function shapeFromLog(
  table: TableId,
  logged: ReadonlyArray<{ COLUMN_NAME: string; COLUMN_TYPE: string }>,
  known: TableSchema | undefined,
): TableSchema {
  const columns: ColumnSchema[] = [];
  for (const c of logged) {
    const prior = known?.columns.find((k) => k.name === c.COLUMN_NAME);
    let type: string;
    try {
      type = deltaTypeFor(c.COLUMN_TYPE, `${tableKey(table)}.${c.COLUMN_NAME}`);
    } catch {
      if (prior) columns.push(prior);
      continue;
    }
    if (prior && (prior.type === type || LOGGED_AS_BYTES.test(prior.sourceType))) columns.push(prior);
    else
      columns.push({
        name: c.COLUMN_NAME,
        type,
        nullable: prior?.nullable ?? true,
        sourceType: c.COLUMN_TYPE,
      });
  }
  const names = new Set(columns.map((c) => c.name));
  const key = (known?.primaryKey ?? []).filter((k) => names.has(k));
  return {
    id: table,
    columns,
    primaryKey: key.length > 0 ? key : (known?.primaryKey ?? []),
    ...(known?.keySource ? { keySource: known.keySource } : {}),
  };
}

interface LoggedColumn {
  readonly COLUMN_NAME: string;
  readonly COLUMN_TYPE: string;
}

function sameLogged(a: readonly LoggedColumn[], b: readonly LoggedColumn[]): boolean {
  return (
    a.length === b.length &&
    a.every((c, i) => c.COLUMN_NAME === b[i]?.COLUMN_NAME && c.COLUMN_TYPE === b[i]?.COLUMN_TYPE)
  );
}

function sameShape(a: TableSchema, b: TableSchema): boolean {
  return (
    a.columns.length === b.columns.length &&
    a.columns.every((c, i) => c.name === b.columns[i]?.name && c.type === b.columns[i]?.type)
  );
}

/** Nothing from the dump connection for too long, not even the heartbeats it asked for. */
function silentSource(endpoint: MySqlEndpoint, silentMs: number, heartbeatMs: number): TributaryError {
  return new TributaryError(
    'SOURCE_UNREACHABLE',
    `The binlog stream of connection "${endpoint.name}" (${endpoint.host}:${endpoint.port}) has been silent for ${Math.round(silentMs / 1000)} s, without even the heartbeat the server sends every ${heartbeatMs} ms while idle: the connection is dead or the server has stalled.`,
    { hint: 'Check the network path to the server and the server itself; the run is retried.' },
  );
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
  if (start?.kind === 'gtid' && start.failover) {
    return new TributaryError(
      'SOURCE_HISTORY_LOST',
      `A failover was detected on connection "${endpoint.name}" (${start.reason}), and the new primary cannot continue from the captured GTID state ${start.gtid}: ${e?.message ?? ''}`,
      {
        hint: `The new primary's binlog does not hold every transaction after the ones already captured (it never received some of them from the old primary, or it purged them), so capture cannot continue without a gap. A new snapshot (full refresh) is needed.`,
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
      hint: `The server purged it before Tributary read it, so the changes in it can only be recovered by a new snapshot (full refresh). Raise binlog_expire_logs_seconds (the checklist recommends 48-72 h) so it does not happen again.`,
      cause: error,
    },
  );
}
