/**
 * The SourceConnector for PostgreSQL, over logical replication with pgoutput.
 *
 * One control connection serves metadata. A snapshot and a stream each open their own sessions: the
 * snapshot a REPEATABLE READ transaction (importing the slot's exported snapshot the first time), the
 * stream a walsender session that decodes the slot.
 *
 * The slot is what makes PostgreSQL CDC safe and what makes it dangerous: the server keeps every WAL file
 * the slot has not confirmed. Confirmation therefore follows staging exactly: the stream confirms an LSN
 * only when capture acknowledges (after a segment is sealed) a position at or beyond it, so the slot never
 * passes what staging holds, and WAL is released as soon as it is safe to.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import type { ChangeBatch, ChangeEvent } from '../../core/change.js';
import { TributaryError } from '../../core/errors.js';
import type {
  Finding,
  ReadinessContext,
  SnapshotOptions,
  SourceConnector,
  StreamOptions,
  TableSelection,
} from '../../core/ports.js';
import type { Position } from '../../core/position.js';
import { type Row, type SqlValue, type TableId, type TableSchema, tableKey } from '../../core/table.js';
import { classifyPgError, openPgClient, type PgEndpoint, quotePgIdent } from './connect.js';
import { decodePgPosition, encodePgPosition, parseLsn } from './lsn.js';
import { type PgColumnValue, type TupleData, UNCHANGED_TOAST } from './pgoutput.js';
import { runPostgresPreflight } from './preflight.js';
import {
  checkSlot,
  createSlotWithSnapshot,
  ensurePublication,
  ensureReplicaIdentities,
  readSlot,
} from './replication-setup.js';
import { ReplicationStream } from './replication-stream.js';
import { listTableNames, type PgTable, readTableSchemas } from './schema-reader.js';
import { type PgSnapshotTable, readPgSnapshot, type SnapshotPoint } from './snapshot-reader.js';
import { type DecodedChange, type RelationInfo, TransactionAssembler } from './transaction-assembler.js';
import { PgTypeCatalog } from './type-mapping.js';
import { describeSlotWal } from './wal-retention.js';

export interface PostgresSourceOptions {
  /** The logical replication slot this gateway owns. */
  readonly slot: string;
  /** The publication the slot decodes. */
  readonly publication: string;
  /**
   * Create a missing publication FOR ALL TABLES (pipelines with `schema` objects, so tables created later are
   * published) rather than FOR TABLE of the captured tables.
   */
  readonly publishAllTables: boolean;
  /**
   * Progress (WAL held during a snapshot) and warnings (values Delta cannot hold, WAL near its limit). By
   * default warnings go to stderr in the logger's format, as the MySQL source's do: a value staged as NULL
   * must not go unreported.
   */
  readonly log?: SourceLog;
}

export interface SourceLog {
  info(message: string): void;
  warn(message: string): void;
}

const stderrWarnings: SourceLog = {
  info: () => {},
  warn: (m) => process.stderr.write(`${new Date().toISOString()} WARN  ${m}\n`),
};

/** How often a running snapshot reports the WAL its slot holds. */
const WAL_REPORT_INTERVAL_MS = 30_000;

/** A relation's columns as converters, in the order pgoutput sends them. */
interface RelationDecoder {
  readonly id: TableId;
  readonly names: readonly string[];
  readonly convert: readonly ((text: string) => SqlValue)[];
}

export class PostgresSource implements SourceConnector {
  readonly #endpoint: PgEndpoint;
  readonly #options: PostgresSourceOptions;
  readonly #catalog: PgTypeCatalog;
  readonly #log: SourceLog;
  /** Captured tables as last read, by `schema.table`: the snapshot's converters and key types. */
  readonly #tables = new Map<string, PgTable>();
  #control: pg.Client | undefined;
  #stream: ReplicationStream | undefined;
  /** The highest position capture has acknowledged (durable in staging). */
  #acknowledged = 0n;
  /** The highest LSN the current stream has delivered to capture. */
  #delivered = 0n;

  constructor(endpoint: PgEndpoint, options: PostgresSourceOptions) {
    this.#endpoint = endpoint;
    this.#options = options;
    this.#log = options.log ?? stderrWarnings;
    this.#catalog = new PgTypeCatalog({ onLoss: (m) => this.#log.warn(m) });
  }

  /** The control connection; one the server closed is forgotten, so the next call connects anew. */
  async #client(): Promise<pg.Client> {
    if (this.#control) return this.#control;
    const client = await openPgClient(this.#endpoint);
    const forget = () => {
      if (this.#control === client) this.#control = undefined;
    };
    client.on('error', forget);
    client.on('end', forget);
    this.#control = client;
    return client;
  }

  async #query(sql: string, params: unknown[], doing: string): Promise<Record<string, string | null>[]> {
    const client = await this.#client();
    try {
      return (await client.query(sql, params)).rows as Record<string, string | null>[];
    } catch (error) {
      if (/Connection terminated|not queryable/i.test(String(error))) this.#control = undefined;
      throw classifyPgError(error, this.#endpoint, doing);
    }
  }

  async checkReadiness(context: ReadinessContext): Promise<readonly Finding[]> {
    context.signal.throwIfAborted();
    const client = await this.#client();
    try {
      return await runPostgresPreflight(client, this.#endpoint, {
        ...context,
        publication: this.#options.publication,
        slot: this.#options.slot,
      });
    } catch (error) {
      throw classifyPgError(error, this.#endpoint, 'running the preflight checks');
    }
  }

  async describe(signal: AbortSignal): Promise<string> {
    signal.throwIfAborted();
    const rows = await this.#query(
      "SELECT current_setting('server_version') AS v",
      [],
      'reading the server version',
    );
    return `PostgreSQL ${rows[0]?.['v'] ?? ''}`;
  }

  async listTables(selection: TableSelection, signal: AbortSignal): Promise<readonly TableSchema[]> {
    signal.throwIfAborted();
    const client = await this.#client();
    let tables: PgTable[];
    try {
      tables = await readTableSchemas(client, selection, this.#catalog);
    } catch (error) {
      throw classifyPgError(error, this.#endpoint, 'reading table definitions');
    }
    for (const t of tables) this.#tables.set(tableKey(t.table.id), t);
    return tables.map((t) => t.table);
  }

  async tableNames(schema: string, signal: AbortSignal): Promise<readonly string[]> {
    signal.throwIfAborted();
    const client = await this.#client();
    try {
      return await listTableNames(client, schema);
    } catch (error) {
      throw classifyPgError(error, this.#endpoint, `listing the tables of schema ${schema}`);
    }
  }

  async estimateRows(tables: readonly TableId[], signal: AbortSignal): Promise<ReadonlyMap<string, number>> {
    signal.throwIfAborted();
    const estimates = new Map<string, number>();
    if (tables.length === 0) return estimates;
    // A partitioned table's own estimate is empty; its partitions' add up to it.
    const rows = await this.#query(
      `SELECT n.nspname AS s, c.relname AS n,
              CASE WHEN c.relkind = 'p'
                   THEN (SELECT sum(p.reltuples)::float8 FROM pg_partition_tree(c.oid) t
                           JOIN pg_class p ON p.oid = t.relid WHERE p.reltuples >= 0)
                   WHEN c.reltuples >= 0 THEN c.reltuples::float8 END AS r
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE (n.nspname, c.relname) IN (${tables.map((_, i) => `($${2 * i + 1}, $${2 * i + 2})`).join(', ')})`,
      tables.flatMap((t) => [t.schema, t.table]),
      'reading table statistics',
    );
    for (const r of rows) {
      if (r['r'] !== null && r['r'] !== undefined)
        estimates.set(`${String(r['s'])}.${String(r['n'])}`, Number(r['r']));
    }
    return estimates;
  }

  async readHead(signal: AbortSignal): Promise<Position> {
    signal.throwIfAborted();
    const rows = await this.#query(
      'SELECT pg_current_wal_lsn()::text AS lsn',
      [],
      'reading the WAL position',
    );
    return encodePgPosition(parseLsn(String(rows[0]?.['lsn'])));
  }

  async *snapshot(tables: readonly TableSchema[], options: SnapshotOptions): AsyncIterable<ChangeBatch> {
    const client = await this.#client();
    // The publication must exist before the slot: decoding WAL from before it existed fails.
    await this.#ensurePublication(client, tables);
    let state = await readSlot(client, this.#options.slot).catch((error: unknown) => {
      throw classifyPgError(error, this.#endpoint, 'reading pg_replication_slots');
    });
    if (state?.walStatus === 'lost' && options.restartsLog === true) {
      // Invalidated slots never recover, and this snapshot restarts the log anyway: make the slot anew.
      this.#log.warn(
        `replication slot "${this.#options.slot}" was invalidated (wal_status = 'lost'); dropping it and creating it again for the new snapshot`,
      );
      await client
        .query('SELECT pg_drop_replication_slot($1)', [this.#options.slot])
        .catch((error: unknown) => {
          throw classifyPgError(
            error,
            this.#endpoint,
            `dropping the invalidated slot "${this.#options.slot}"`,
          );
        });
      state = undefined;
    }
    let point: SnapshotPoint = { kind: 'fresh' };
    let exporter: pg.Client | undefined;
    if (state === undefined) {
      exporter = await openPgClient(this.#endpoint, { replication: true });
      const created = await createSlotWithSnapshot(exporter, this.#endpoint, this.#options.slot).catch(
        async (error: unknown) => {
          await exporter?.end().catch(() => undefined);
          throw error;
        },
      );
      point = {
        kind: 'exported',
        snapshotName: created.snapshotName,
        position: encodePgPosition(created.consistentPoint),
      };
    } else {
      checkSlot(state, this.#options.slot, this.#endpoint);
    }
    const closeExporter = async () => {
      const e = exporter;
      exporter = undefined;
      await e?.end().catch(() => undefined);
    };
    let lastWalReport = Date.now();
    try {
      const reading = readPgSnapshot(
        this.#endpoint,
        tables.map((t) => this.#snapshotTable(t)),
        point,
        options,
        {
          onSnapshotTaken: closeExporter,
          currentPosition: async (reader) => {
            const result = await reader.query('SELECT pg_current_wal_lsn()::text AS lsn');
            return encodePgPosition(parseLsn(String((result.rows[0] as Record<string, string>)['lsn'])));
          },
        },
      );
      for await (const batch of reading) {
        yield batch;
        if (Date.now() - lastWalReport >= WAL_REPORT_INTERVAL_MS) {
          lastWalReport = Date.now();
          await this.#reportSlotWal();
        }
      }
      await this.#reportSlotWal();
    } finally {
      await closeExporter();
    }
  }

  async *stream(from: Position, options: StreamOptions): AsyncIterable<ChangeBatch> {
    const client = await this.#client();
    await this.#ensurePublication(client, options.tables);
    const start = decodePgPosition(from);
    const until = options.until === undefined ? undefined : decodePgPosition(options.until);
    const captured = new Map(options.tables.map((t) => [tableKey(t.id), t]));
    const decoders = new Map<number, RelationDecoder>();

    const replication = await openPgClient(this.#endpoint, { replication: true });
    const stream = new ReplicationStream(replication, {
      slot: this.#options.slot,
      publications: [this.#options.publication],
      startLsn: start,
      label: `connection "${this.#endpoint.name}"`,
      signal: options.signal,
    });
    this.#stream = stream;
    this.#acknowledged = start;
    this.#delivered = start;
    const assembler = await TransactionAssembler.create({
      spoolDir: join(tmpdir(), 'tributary-pg-spool', `${this.#endpoint.database}.${this.#options.slot}`),
    });
    try {
      await stream.start();
      let lastComplete = from;
      for await (const item of assembler.assemble(stream.frames())) {
        if (item.kind === 'progress') {
          // Nothing is open: every change before `lsn` has been delivered. An empty batch lets capture make
          // the position durable (and so let the slot move on) when it judges that worthwhile.
          if (item.lsn <= this.#delivered) continue;
          this.#delivered = item.lsn;
          lastComplete = encodePgPosition(item.lsn);
          yield {
            origin: 'stream',
            position: lastComplete,
            commitTime: new Date(),
            complete: true,
            events: [],
          };
          if (until !== undefined && item.lsn >= until) return;
          continue;
        }
        const events: ChangeEvent[] = [];
        for (const change of item.changes) {
          const event = await this.#event(change, captured, decoders);
          if (event) events.push(event);
        }
        const end = item.final ? item.endLsn : undefined;
        if (end !== undefined) {
          this.#delivered = end;
          lastComplete = encodePgPosition(end);
        }
        yield {
          origin: 'stream',
          position: lastComplete,
          // The commit record starts at commitLsn and no snapshot point falls inside a record, so commitLsn + 1
          // orders against a snapshot position exactly as the end LSN (known only on the last part) would.
          ...(item.final ? {} : { commitPosition: encodePgPosition(item.endLsn ?? item.commitLsn + 1n) }),
          commitTime: new Date(Number(item.commitTime / 1000n)),
          complete: item.final,
          events,
        };
        if (item.final && until !== undefined && end !== undefined && end >= until) return;
      }
    } finally {
      this.#stream = undefined;
      await stream.close().catch(() => undefined);
      await assembler.close().catch(() => undefined);
    }
  }

  acknowledge(position: Position): void {
    const lsn = decodePgPosition(position);
    if (lsn <= this.#acknowledged) return;
    this.#acknowledged = lsn;
    // Never beyond what the stream has delivered: an acknowledgement from a snapshot's position may run ahead.
    const stream = this.#stream;
    // biome-ignore lint/complexity/useMathMinMax: Math.min does not take bigints
    if (stream) stream.confirm(lsn < this.#delivered ? lsn : this.#delivered);
  }

  /** Bytes of WAL. */
  logDistance(from: Position, to: Position): number | undefined {
    const distance = decodePgPosition(to) - decodePgPosition(from);
    return distance < 0n ? undefined : Number(distance);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const control = this.#control;
    this.#control = undefined;
    await control?.end().catch(() => undefined);
  }

  /** Logs the WAL the slot holds; a failure to read it is not worth failing a snapshot over. */
  async #reportSlotWal(): Promise<void> {
    try {
      const rows = await this.#query(
        `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::float8 AS retained, wal_status,
                safe_wal_size::float8 AS safe,
                CASE WHEN current_setting('max_slot_wal_keep_size') = '-1' THEN NULL
                     ELSE pg_size_bytes(current_setting('max_slot_wal_keep_size'))::float8 END AS max
           FROM pg_replication_slots WHERE slot_name = $1`,
        [this.#options.slot],
        'reading the WAL held by the slot',
      );
      const r = rows[0];
      if (!r) return;
      const number = (v: string | null | undefined) =>
        v === null || v === undefined ? undefined : Number(v);
      const { level, message } = describeSlotWal(this.#options.slot, {
        retainedBytes: number(r['retained']) ?? 0,
        maxBytes: number(r['max']),
        safeBytes: number(r['safe']),
        walStatus: r['wal_status'] ?? undefined,
      });
      this.#log[level](message);
    } catch {
      // Reported by the next real use of the connection, if it matters.
    }
  }

  async #ensurePublication(client: pg.Client, tables: readonly TableSchema[]): Promise<void> {
    const known = tables.flatMap((t) => this.#tables.get(tableKey(t.id)) ?? []);
    await ensureReplicaIdentities(client, this.#endpoint, known, (m) => this.#log.info(m));
    try {
      await ensurePublication(
        client,
        this.#endpoint,
        this.#options.publication,
        tables.map((t) => t.id),
        {
          allTables: this.#options.publishAllTables,
        },
      );
    } catch (error) {
      throw classifyPgError(error, this.#endpoint, 'checking the publication');
    }
  }

  #snapshotTable(table: TableSchema): PgSnapshotTable {
    const known = this.#tables.get(tableKey(table.id));
    if (!known) {
      throw new TributaryError('INTERNAL', `snapshot of ${tableKey(table.id)} before listTables read it`);
    }
    const columns = table.columns.map((c) => {
      const column = known.columns.get(c.name);
      if (!column) throw new TributaryError('INTERNAL', `column ${c.name} of ${tableKey(table.id)} unknown`);
      return column;
    });
    return {
      schema: table,
      keyTypes: table.primaryKey.map((k) => table.columns.find((c) => c.name === k)?.sourceType ?? 'text'),
      decode: (text) => {
        const row: Row = {};
        for (const column of columns) {
          const value = text[column.name];
          row[column.name] = value === null || value === undefined ? null : column.convert(value);
        }
        return row;
      },
    };
  }

  /** One decoded change of a captured table as a change event; undefined for other tables. */
  async #event(
    change: DecodedChange,
    captured: ReadonlyMap<string, TableSchema>,
    decoders: Map<number, RelationDecoder>,
  ): Promise<ChangeEvent | undefined> {
    if (change.kind === 'message') return undefined;
    const id = { schema: change.relation.namespace, table: change.relation.name };
    const table = captured.get(tableKey(id));
    if (!table) return undefined;
    if (change.kind === 'relation') {
      decoders.set(change.relation.oid, await this.#decoder(change.relation));
      return undefined;
    }
    let decoder = decoders.get(change.relation.oid);
    if (!decoder) {
      decoder = await this.#decoder(change.relation);
      decoders.set(change.relation.oid, decoder);
    }
    switch (change.kind) {
      case 'truncate':
        return { kind: 'truncate', table: id };
      case 'insert':
        return { kind: 'insert', table: id, after: rowOf(decoder, change.after).row };
      case 'delete':
        return { kind: 'delete', table: id, before: rowOf(decoder, change.before).row };
      case 'update': {
        const before = change.before ? rowOf(decoder, change.before) : undefined;
        const after = rowOf(decoder, change.after, change.beforeKind === 'old' ? before?.row : undefined);
        let unchanged = after.unchanged;
        if (
          unchanged.length > 0 &&
          change.before &&
          keyChanged(table, decoder, change.before, change.after)
        ) {
          unchanged = await this.#reselect(table, decoder, change.before, change.after, after.row, unchanged);
        }
        return {
          kind: 'update',
          table: id,
          before: before?.row ?? null,
          after: after.row,
          ...(unchanged.length > 0 ? { unchanged } : {}),
        };
      }
    }
  }

  /**
   * An UPDATE that changes the key and leaves a TOASTed value alone: pgoutput marks the value unchanged in the
   * new tuple, and the old tuple (REPLICA IDENTITY DEFAULT or USING INDEX) carries only the key. Capture
   * stages such an update as a delete of the old key and an insert of the new one, and an insert has no row
   * in bronze to keep the value from, so it would land as NULL. As Debezium does, the value is read from the
   * source instead: the current row with the new key. Reading "now" rather than as of the change converges,
   * because a later change that sets the value sends it, and one that removes or moves the row comes after
   * this change in the log. A row no longer there (deleted or moved on since) leaves the columns unchanged:
   * the later change that removed it removes this insert too. Fills `row` and returns the columns still
   * unknown. REPLICA IDENTITY FULL needs none of this: its old tuple holds the value.
   */
  async #reselect(
    table: TableSchema,
    decoder: RelationDecoder,
    before: TupleData,
    after: TupleData,
    row: Row,
    columns: readonly string[],
  ): Promise<string[]> {
    const keys: string[] = [];
    for (const k of table.primaryKey) {
      const i = decoder.names.indexOf(k);
      const value = typeof after[i] === 'string' ? after[i] : before[i];
      if (i < 0 || typeof value !== 'string') return [...columns];
      keys.push(value);
    }
    const name = `${quotePgIdent(table.id.schema)}.${quotePgIdent(table.id.table)}`;
    const sql = `SELECT ${columns.map(quotePgIdent).join(', ')} FROM ${name} WHERE ${table.primaryKey
      .map((k, i) => `${quotePgIdent(k)} = $${i + 1}`)
      .join(' AND ')}`;
    let found: Record<string, string | null> | undefined;
    try {
      found = (
        await this.#query(sql, keys, `re-reading an unchanged TOAST value of ${tableKey(table.id)}`)
      )[0];
    } catch (error) {
      // The table or column dropped since: a later change in the log says so, and bronze follows it.
      const code =
        error instanceof TributaryError ? (error.cause as { code?: unknown } | undefined)?.code : '';
      if (code === '42P01' || code === '42703') return [...columns];
      throw error;
    }
    if (!found) return [...columns];
    const left: string[] = [];
    for (const column of columns) {
      const text = found[column];
      const convert = decoder.convert[decoder.names.indexOf(column)];
      try {
        row[column] = text === null || text === undefined || !convert ? null : convert(text);
      } catch (error) {
        // The column's type changed since the change (a later ALTER): failing here would fail every run
        // again at the same change, so the value is left out, and said so.
        this.#log.warn(
          `${tableKey(table.id)}.${column}: the value re-read for an update that changed the key does not fit the column's type at the time of the change (${error instanceof Error ? error.message : String(error)}); it is staged as NULL.`,
        );
        left.push(column);
      }
    }
    return left;
  }

  async #decoder(relation: RelationInfo): Promise<RelationDecoder> {
    const client = await this.#client();
    const oids = relation.columns.map((c) => c.typeOid).filter((oid) => !this.#catalog.has(oid));
    if (oids.length > 0) await this.#catalog.ensure(client, oids);
    const where = `${relation.namespace}.${relation.name}`;
    return {
      id: { schema: relation.namespace, table: relation.name },
      names: relation.columns.map((c) => c.name),
      convert: relation.columns.map(
        (c) => this.#catalog.mapColumn(c.typeOid, c.typmod, `${where}.${c.name}`).convert,
      ),
    };
  }
}

/** Whether an UPDATE's old tuple (the replica identity's key or the full row) has another key than its new one. */
function keyChanged(
  table: TableSchema,
  decoder: RelationDecoder,
  before: TupleData,
  after: TupleData,
): boolean {
  return table.primaryKey.some((k) => {
    const i = decoder.names.indexOf(k);
    const old = before[i];
    const now = after[i];
    return typeof old === 'string' && typeof now === 'string' && old !== now;
  });
}

/**
 * A tuple as a row. An unchanged TOAST value is left out and named in `unchanged`, unless `old` (a FULL
 * replica identity's old row) holds it.
 */
function rowOf(decoder: RelationDecoder, tuple: TupleData, old?: Row): { row: Row; unchanged: string[] } {
  const row: Row = {};
  const unchanged: string[] = [];
  decoder.names.forEach((name, i) => {
    const value: PgColumnValue | undefined = tuple[i];
    if (value === UNCHANGED_TOAST) {
      if (old && name in old) row[name] = old[name] ?? null;
      else unchanged.push(name);
      return;
    }
    if (value === null || value === undefined) {
      row[name] = null;
      return;
    }
    const convert = decoder.convert[i];
    row[name] = typeof value === 'string' && convert ? convert(value) : (value as Uint8Array);
  });
  return { row, unchanged };
}
