/**
 * The initial snapshot of PostgreSQL tables, consistent with the replication slot.
 *
 * The first snapshot imports the snapshot the slot exported when it was created, so the rows read are
 * exactly those committed before the slot's consistent point: streaming from that point neither misses nor
 * repeats a change. A snapshot that resumes after a crash, or that covers a table added later, cannot have
 * that snapshot any more; it reads the WAL position first and then takes a fresh REPEATABLE READ snapshot.
 * Transactions that commit in between are both in the rows and streamed again afterwards, and replaying
 * full row images is idempotent, so every row converges to the source (the documented equivalent).
 *
 * Rows are read in key order by keyset pagination (`WHERE (k1, k2) > ($1, $2) ORDER BY k1, k2 LIMIT n`),
 * one bounded chunk at a time, so memory does not grow with the table and a crash resumes after the last
 * staged chunk.
 */
import type pg from 'pg';
import type { ChangeBatch, ChangeEvent } from '../../core/change.js';
import type { SnapshotOptions } from '../../core/ports.js';
import type { Position } from '../../core/position.js';
import { type Row, type TableSchema, tableKey } from '../../core/table.js';
import { classifyPgError, openPgClient, type PgEndpoint, quotePgIdent, quotePgString } from './connect.js';

/** Where the snapshot reads from. */
export type SnapshotPoint =
  /** The snapshot exported by CREATE_REPLICATION_SLOT, and the slot's consistent point. */
  | { readonly kind: 'exported'; readonly snapshotName: string; readonly position: Position }
  /** A fresh snapshot taken after reading the WAL position (see the module comment). */
  | { readonly kind: 'fresh' };

export interface PgSnapshotTable {
  readonly schema: TableSchema;
  /** Turns one row of server text (every column as the server printed it) into a staged row. */
  readonly decode: (text: Readonly<Record<string, string | null>>) => Row;
  /** The PostgreSQL type of each key column, for casting resume keys back (`format_type` text). */
  readonly keyTypes: readonly string[];
}

export interface PgSnapshotHooks {
  /** Called once the snapshot is imported or taken, so the caller may close the exporting session. */
  readonly onSnapshotTaken?: () => Promise<void>;
  /** The current WAL position, read before a fresh snapshot is taken. */
  readonly currentPosition: (client: pg.Client) => Promise<Position>;
}

export async function* readPgSnapshot(
  endpoint: PgEndpoint,
  tables: readonly PgSnapshotTable[],
  point: SnapshotPoint,
  options: SnapshotOptions,
  hooks: PgSnapshotHooks,
): AsyncIterable<ChangeBatch> {
  const client = await openPgClient(endpoint);
  try {
    let position: Position;
    try {
      if (point.kind === 'exported') {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        await client.query(`SET TRANSACTION SNAPSHOT ${quotePgString(point.snapshotName)}`);
        position = point.position;
      } else {
        position = await hooks.currentPosition(client);
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        // The snapshot is taken by the first statement of the transaction, not by BEGIN.
        await client.query('SELECT 1');
      }
    } catch (error) {
      throw classifyPgError(error, endpoint, 'starting the snapshot transaction');
    }
    await hooks.onSnapshotTaken?.();
    const startedAt = new Date();

    for (const table of tables) {
      options.signal.throwIfAborted();
      const after = options.afterKeys?.get(tableKey(table.schema.id));
      yield* readTable(client, endpoint, table, position, startedAt, options, after);
    }
    await client.query('COMMIT').catch(() => undefined);
  } finally {
    await client.end().catch(() => undefined);
  }
}

async function* readTable(
  client: pg.Client,
  endpoint: PgEndpoint,
  table: PgSnapshotTable,
  position: Position,
  startedAt: Date,
  options: SnapshotOptions,
  resumeAfter: Readonly<Record<string, string | null>> | undefined,
): AsyncIterable<ChangeBatch> {
  const { schema } = table;
  const id = schema.id;
  const name = `${quotePgIdent(id.schema)}.${quotePgIdent(id.table)}`;
  const key = schema.primaryKey;
  const keyList = key.map(quotePgIdent).join(', ');
  const columns = schema.columns.map((c) => quotePgIdent(c.name)).join(', ');
  const keyParams = key.map((_, i) => `$${i + 1}::${table.keyTypes[i] ?? 'text'}`).join(', ');
  const first = `SELECT ${columns} FROM ONLY ${name} ORDER BY ${keyList} LIMIT ${options.chunkRows}`;
  const next = `SELECT ${columns} FROM ONLY ${name} WHERE (${keyList}) > (${keyParams}) ORDER BY ${keyList} LIMIT ${options.chunkRows}`;

  // The server's own text of the last key read: exactly what it parses back, whatever the type (the staged
  // form of an infinite date or a BC timestamp would not be).
  let last: (string | null)[] | undefined = resumeAfter ? key.map((k) => resumeAfter[k] ?? null) : undefined;
  for (;;) {
    options.signal.throwIfAborted();
    let rows: Record<string, string | null>[];
    try {
      const result = last === undefined ? await client.query(first) : await client.query(next, last);
      rows = result.rows as Record<string, string | null>[];
    } catch (error) {
      throw classifyPgError(error, endpoint, `reading ${id.schema}.${id.table} for the snapshot`);
    }
    const events: ChangeEvent[] = rows.map((r) => ({ kind: 'read', table: id, after: table.decode(r) }));
    const done = rows.length < options.chunkRows;
    const tail = rows.at(-1);
    if (tail) last = key.map((k) => tail[k] ?? null);
    yield {
      origin: 'snapshot',
      position,
      commitTime: startedAt,
      complete: true,
      events,
      snapshotTable: id,
      snapshotTableComplete: done,
      ...(last ? { resumeKey: Object.fromEntries(key.map((k, i) => [k, last?.[i] ?? null])) } : {}),
    };
    if (done) return;
  }
}
