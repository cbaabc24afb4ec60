/**
 * Streams the binlog with zongji and regroups its events into one ChangeBatch per source transaction.
 *
 * Why the shape: zongji pushes events from a socket; the pipeline pulls batches. An in-memory queue sits
 * between them, and the binlog connection is paused when the queue is long, so a slow consumer never makes
 * the process buffer the whole log. Positions are taken only at commit markers (Xid, COMMIT, DDL): MariaDB
 * writes end_log_pos=0 inside transactions, and a position inside a transaction is not a safe resume point.
 */
import ZongJi from '@vlasky/zongji';
import type { ChangeBatch, ChangeEvent } from '../../core/change.js';
import { TributaryError } from '../../core/errors.js';
import type { StreamOptions } from '../../core/ports.js';
import type { Position } from '../../core/position.js';
import { type Row, type TableId, tableKey } from '../../core/table.js';
import { decodeBinlogPosition, encodeBinlogPosition } from './binlog-position.js';
import { classifyMySqlError, driverOptions, type MySqlEndpoint, verifyPeerIdentity } from './connect.js';

const HIGH_WATER = 20_000;
const LOW_WATER = 2_000;
/** With a target position, this much silence means everything up to it has been read. */
const IDLE_FINISH_MS = 1_500;

interface ZongJiEvent {
  getEventName(): string;
  timestamp: number;
  nextPosition: number;
  tableId?: number;
  tableMap?: Record<number, { parentSchema: string; tableName: string }>;
  rows?: Array<Row | { before: Row; after: Row }>;
  query?: string;
  schema?: string;
  binlogName?: string;
}

type Item = { event: ZongJiEvent; file: string } | { error: unknown };

export interface BinlogStreamOptions extends StreamOptions {
  readonly serverId: number;
}

export async function* readBinlog(
  endpoint: MySqlEndpoint,
  from: Position,
  options: BinlogStreamOptions,
): AsyncIterable<ChangeBatch> {
  const start = decodeBinlogPosition(from);
  const until = options.until;
  if (until !== undefined && from >= until) return;

  const captured = new Set(options.tables.map((t) => tableKey(t.id)));
  const includeSchema: Record<string, string[]> = {};
  for (const t of options.tables) {
    includeSchema[t.id.schema] = [...(includeSchema[t.id.schema] ?? []), t.id.table];
  }

  const zongji = new ZongJi(driverOptions(endpoint));
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
    filename: start.file,
    position: start.offset,
    includeEvents: ['rotate', 'tablemap', 'writerows', 'updaterows', 'deleterows', 'xid', 'query'],
    includeSchema,
  });

  let events: ChangeEvent[] = [];
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
        if (timedOut && events.length === 0) return;
        continue;
      }
      if (paused && queue.length < LOW_WATER) {
        paused = false;
        zongji.connection?.resume();
      }
      if ('error' in item) throw classifyBinlogError(item.error, endpoint, from);

      const { event, file } = item;
      const name = event.getEventName();
      let boundary = false;
      switch (name) {
        case 'writerows':
        case 'updaterows':
        case 'deleterows': {
          const info = event.tableMap?.[event.tableId ?? -1];
          if (!info) break;
          const table: TableId = { schema: info.parentSchema, table: info.tableName };
          if (!captured.has(tableKey(table))) break;
          for (const row of event.rows ?? []) {
            if (name === 'writerows') events.push({ kind: 'insert', table, after: row as Row });
            else if (name === 'deleterows') events.push({ kind: 'delete', table, before: row as Row });
            else {
              const { before, after } = row as { before: Row; after: Row };
              events.push({ kind: 'update', table, before, after });
            }
          }
          break;
        }
        case 'xid':
          boundary = true;
          break;
        case 'query': {
          const sql = (event.query ?? '').trim();
          const upper = sql.toUpperCase();
          if (upper === 'BEGIN') break;
          // COMMIT ends a transaction on non-transactional engines; anything else is DDL, its own transaction.
          boundary = true;
          if (/^TRUNCATE\b/.test(upper)) {
            const table = truncatedTable(sql, event.schema ?? '', captured);
            if (table) events.push({ kind: 'truncate', table });
          }
          break;
        }
        default:
          break;
      }
      if (!boundary || event.nextPosition <= 0) continue;

      const position = encodeBinlogPosition({ file, offset: event.nextPosition });
      yield { origin: 'stream', position, commitTime: new Date(event.timestamp), complete: true, events };
      events = [];
      if (until !== undefined && position >= until) return;
    }
  } finally {
    options.signal.removeEventListener('abort', onAbort);
    zongji.removeAllListeners('binlog');
    zongji.on('error', () => {});
    zongji.stop();
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

export function classifyBinlogError(error: unknown, endpoint: MySqlEndpoint, from: Position): TributaryError {
  const e = error as { errno?: number; message?: string };
  if (
    e?.errno === 1236 ||
    /could not find first log file|purged binlog|first log file name/i.test(e?.message ?? '')
  ) {
    return new TributaryError(
      'SOURCE_HISTORY_LOST',
      `The binlog at the saved position ${from} is no longer on the source of connection "${endpoint.name}": ${e?.message ?? ''}`,
      {
        hint: 'The server purged it before Tributary read it, so the changes in it can only be recovered by a new snapshot (full refresh): stop the pipeline, remove the gateway directory in the staging volume and the bronze tables, and run again. Raise binlog_expire_logs_seconds (the checklist recommends 48-72 h) so it does not happen again.',
        cause: error,
      },
    );
  }
  return classifyMySqlError(error, endpoint, 'reading the binlog');
}
