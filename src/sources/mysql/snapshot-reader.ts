/**
 * The initial snapshot: every row of every captured table, read inside one consistent transaction, together
 * with the binlog position that transaction sees. Streaming from that position afterwards neither misses
 * nor repeats a change.
 *
 * MariaDB exposes the position of a consistent snapshot without any lock (binlog_snapshot_file/position), and
 * BINLOG_GTID_POS gives the GTID state there. MySQL does not, so there the position and the executed GTID
 * set are taken under a brief FLUSH TABLES WITH READ LOCK (needs RELOAD).
 */
import type { Connection as CoreConnection } from 'mysql2';
import type mysql from 'mysql2/promise';
import type { ChangeBatch, ChangeEvent } from '../../core/change.js';
import { TributaryError } from '../../core/errors.js';
import type { SnapshotOptions } from '../../core/ports.js';
import type { Position } from '../../core/position.js';
import { type Row, type TableSchema, tableKey } from '../../core/table.js';
import { encodeBinlogPosition } from './binlog-position.js';
import { classifyMySqlError, type MySqlEndpoint, openConnection } from './connect.js';
import type { SourceShape } from './ddl-shapes.js';
import { normalizeGtid } from './gtid.js';
import type { SchemaHistory } from './schema-history.js';
import { readSourceShapes } from './schema-reader.js';
import { binlogOff, mariaDbGtidAt, readBinlogStatus, readServerIdentity } from './server-state.js';
import { isSpatialType, spatialTypeCast } from './spatial.js';
import { quoteIdent } from './sql.js';

async function beginConsistentSnapshot(conn: mysql.Connection): Promise<Position> {
  await conn.query('SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ');
  const server = await readServerIdentity(conn);
  const [status] = await conn.query<mysql.RowDataPacket[]>("SHOW STATUS LIKE 'binlog_snapshot_%'");
  if (status.length >= 2) {
    await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT');
    const [after] = await conn.query<mysql.RowDataPacket[]>("SHOW STATUS LIKE 'binlog_snapshot_%'");
    const value = (name: string) =>
      after.find((r) => String(r['Variable_name']).toLowerCase() === name)?.['Value'] as string | undefined;
    const file = value('binlog_snapshot_file');
    const offset = Number(value('binlog_snapshot_position'));
    if (!file) throw binlogOff();
    // The GTID state of the snapshot point, exactly: the server reads its binlog up to that offset.
    const gtid = await mariaDbGtidAt(conn, file, offset);
    if (gtid === undefined) {
      throw new TributaryError(
        'SOURCE_QUERY_FAILED',
        `The source could not tell the GTID state at its snapshot position ${file}:${offset} (BINLOG_GTID_POS returned NULL).`,
        { hint: 'Retry the run; if it persists, check the server error log for binlog read errors.' },
      );
    }
    return encodeBinlogPosition({ file, offset, gtid, server });
  }
  await conn.query('FLUSH TABLES WITH READ LOCK');
  try {
    await conn.query('START TRANSACTION WITH CONSISTENT SNAPSHOT');
    // Under the read lock nothing commits, so file, offset and executed GTID set belong together.
    const head = await readBinlogStatus(conn);
    if (!head) throw binlogOff();
    const gtid = normalizeGtid(server.flavor, head.executedGtidSet ?? '');
    return encodeBinlogPosition({ file: head.file, offset: head.offset, gtid, server });
  } finally {
    await conn.query('UNLOCK TABLES');
  }
}

/**
 * `SELECT <columns> FROM <table> [WHERE (<key>) > (<after>)] ORDER BY <key>`. Resuming after a key uses a
 * row-value comparison, which follows the key's own collation and type exactly as ORDER BY does.
 */
function chunkQuery(
  table: TableSchema,
  after: Readonly<Record<string, string | null>> | undefined,
): { sql: string; params: unknown[] } {
  const columns = table.columns.map((c) => quoteIdent(c.name)).join(', ');
  const key = table.primaryKey.map(quoteIdent).join(', ');
  const from = `${quoteIdent(table.id.schema)}.${quoteIdent(table.id.table)}`;
  if (!after) return { sql: `SELECT ${columns} FROM ${from} ORDER BY ${key}`, params: [] };
  const params = table.primaryKey.map((k) => {
    const text = after[k] ?? null;
    const type = table.columns.find((c) => c.name === k)?.type;
    return type === 'binary' && text !== null ? Buffer.from(text, 'hex') : text;
  });
  const marks = params.map(() => '?').join(', ');
  return { sql: `SELECT ${columns} FROM ${from} WHERE (${key}) > (${marks}) ORDER BY ${key}`, params };
}

/**
 * The rows of one query in arrays of up to `size`, read with back-pressure: the connection is paused while a
 * full batch waits for the consumer. Rows are taken from the driver's `result` events into the batch directly;
 * a per-row async iterator (Readable's) cost about a third of the read.
 */
async function* rowBatches(
  connection: CoreConnection,
  query: { sql: string; values: unknown[]; typeCast?: typeof spatialTypeCast },
  size: number,
  /** Ends the wait for rows: a destroyed connection emits nothing more, so the reader would wait forever. */
  stopped?: AbortSignal,
): AsyncIterable<Row[]> {
  const ready: Row[][] = [];
  let current: Row[] = [];
  let ended = false;
  let failure: { error: unknown } | undefined;
  let paused = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onStop = () => {
    failure ??= { error: stopped?.reason };
    notify();
  };
  stopped?.addEventListener('abort', onStop, { once: true });
  const running = connection.query(query);
  running.on('result', (row) => {
    current.push(row as Row);
    if (current.length < size) return;
    ready.push(current);
    current = [];
    if (!paused) {
      paused = true;
      connection.pause();
    }
    notify();
  });
  running.on('error', (error) => {
    failure = { error };
    notify();
  });
  running.on('end', () => {
    if (current.length > 0) ready.push(current);
    current = [];
    ended = true;
    notify();
  });
  try {
    for (;;) {
      if (stopped?.aborted) throw stopped.reason;
      const batch = ready.shift();
      if (batch) {
        if (paused && ready.length === 0) {
          paused = false;
          connection.resume();
        }
        yield batch;
        continue;
      }
      if (failure) throw failure.error;
      if (ended) return;
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
    }
  } finally {
    stopped?.removeEventListener('abort', onStop);
  }
}

/**
 * Reads the tables' rows. With `options.parallelTables` above 1, up to that many connections read at once,
 * each in a consistent-snapshot transaction of its own that reads tables from a shared queue: every table's
 * batches carry the position of the transaction that read it, and the stream takes each table's changes from
 * its own position on (SnapshotOptions.parallelTables).
 */
export function readSnapshot(
  endpoint: MySqlEndpoint,
  tables: readonly TableSchema[],
  options: SnapshotOptions,
  /** Where each table's full column list at its snapshot position is recorded (schema-history.ts). */
  history?: SchemaHistory,
): AsyncIterable<ChangeBatch> {
  const queue = [...tables];
  const nextTable = () => queue.shift();
  const readers = Math.max(1, Math.min(options.parallelTables ?? 1, tables.length));
  if (readers === 1) return readInOneSnapshot(endpoint, nextTable, options, history);
  const connections = new Set<mysql.Connection>();
  const stop = new AbortController();
  return mergeReaders(
    Array.from({ length: readers }, () =>
      readInOneSnapshot(endpoint, nextTable, options, history, { connections, stopped: stop.signal }),
    ),
    () => {
      stop.abort(new TributaryError('INTERNAL', 'the snapshot was stopped'));
      for (const conn of connections) conn.destroy();
    },
  );
}

/**
 * The batches of several readers as they come, one outstanding read per reader (so each holds at most one
 * batch the consumer has not taken). When the consumer stops or a reader fails, `stop` ends every reader's
 * connection first: a reader waiting on a paused query would otherwise never return.
 */
async function* mergeReaders<T>(readers: readonly AsyncIterable<T>[], stop: () => void): AsyncGenerator<T> {
  const iterators = readers.map((r) => r[Symbol.asyncIterator]());
  const pending = new Map<number, Promise<{ i: number; result: IteratorResult<T> }>>();
  const pull = (i: number): void => {
    pending.set(
      i,
      (iterators[i] as AsyncIterator<T>).next().then((result) => ({ i, result })),
    );
  };
  for (let i = 0; i < iterators.length; i++) pull(i);
  let finished = false;
  try {
    while (pending.size > 0) {
      const { i, result } = await Promise.race(pending.values());
      pending.delete(i);
      if (result.done) continue;
      yield result.value;
      pull(i);
    }
    finished = true;
  } finally {
    if (!finished) {
      stop();
      // Not awaited: a reader still opening its connection settles only when that finishes. Each reader ends
      // on its own (its reads fail on the stopped signal or the closed connection), releasing what it holds.
      for (const read of pending.values()) read.catch(() => {});
      for (const it of iterators) it.return?.().catch(() => {});
    }
  }
}

/** Reads tables from `nextTable` until it is empty, in one consistent-snapshot transaction on a connection of its own. */
async function* readInOneSnapshot(
  endpoint: MySqlEndpoint,
  nextTable: () => TableSchema | undefined,
  options: SnapshotOptions,
  history: SchemaHistory | undefined,
  parallel?: { readonly connections: Set<mysql.Connection>; readonly stopped: AbortSignal },
): AsyncIterable<ChangeBatch> {
  const conn = await openConnection(endpoint);
  // Stopped while connecting: nobody will read this reader any more.
  if (parallel?.stopped.aborted) {
    conn.destroy();
    return;
  }
  parallel?.connections.add(conn);
  try {
    let position: Position;
    let commitTime: Date;
    try {
      position = await beginConsistentSnapshot(conn);
      const [now] = await conn.query<mysql.RowDataPacket[]>('SELECT UTC_TIMESTAMP(6) AS now');
      commitTime = new Date(`${String(now[0]?.['now']).replace(' ', 'T')}Z`);
    } catch (error) {
      throw classifyMySqlError(error, endpoint, 'starting the snapshot');
    }
    for (let table = nextTable(); table !== undefined; table = nextTable()) {
      options.signal.throwIfAborted();
      const { sql, params } = chunkQuery(
        table,
        options.afterKeys?.get(`${table.id.schema}.${table.id.table}`),
      );
      // The promise API cannot stream; its underlying callback connection can, with back-pressure.
      const core = (conn as unknown as { connection: CoreConnection }).connection;
      // Spatial values are read as their stored bytes and reach staging as WKB, as from the binlog
      // (spatial.ts); other tables keep the driver's compiled row parser without a typeCast.
      const spatial = table.columns.some((c) => isSpatialType(c.sourceType));
      // Read ahead in batches of at most 10,000 rows (the memory the stream's buffer had before).
      const rows = rowBatches(
        core,
        { sql, values: params, ...(spatial ? { typeCast: spatialTypeCast } : {}) },
        Math.min(options.chunkRows, 10_000),
        parallel?.stopped,
      );
      const id = table.id;
      const batchOf = (events: ChangeEvent[], last: boolean): ChangeBatch => ({
        origin: 'snapshot',
        position,
        commitTime,
        complete: true,
        events,
        snapshotTable: id,
        ...(last ? { snapshotTableComplete: true } : {}),
      });
      let events: ChangeEvent[] = [];
      try {
        for await (const batch of rows) {
          for (const row of batch) {
            events.push({ kind: 'read', table: id, after: row });
            if (events.length >= options.chunkRows) {
              yield batchOf(events, false);
              events = [];
              options.signal.throwIfAborted();
            }
          }
        }
      } catch (error) {
        // The connection is this snapshot's own: destroying it (below) ends the query.
        throw classifyMySqlError(
          error,
          endpoint,
          `reading ${table.id.schema}.${table.id.table} for the snapshot`,
        );
      }
      if (history) {
        // Still inside the transaction, whose metadata lock on the table (taken by the read) keeps DDL out:
        // these are the columns at `position`, which a stream from there decodes the table's rows with.
        let shape: SourceShape | undefined;
        try {
          shape = (await readSourceShapes(conn, [id])).get(tableKey(id));
        } catch (error) {
          throw classifyMySqlError(
            error,
            endpoint,
            `reading the columns of ${tableKey(id)} for the snapshot`,
          );
        }
        if (shape) await history.record([{ position, table: tableKey(id), shape }]);
      }
      // The final batch (possibly empty) says the table is complete; an empty table still gets its bronze table.
      yield batchOf(events, true);
    }
    await conn.query('COMMIT');
  } finally {
    parallel?.connections.delete(conn);
    conn.destroy();
  }
}
