/**
 * The SourceConnector for MySQL and MariaDB. It holds one control connection for metadata; snapshot and
 * binlog reads open their own, because each needs a session of its own (a consistent-snapshot
 * transaction, a replication dump).
 */
import type mysql from 'mysql2/promise';
import type { ChangeBatch } from '../../core/change.js';
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
import { type TableId, type TableSchema, tableKey } from '../../core/table.js';
import {
  binlogDistance,
  decodeBinlogPosition,
  describeCoordinates,
  encodeBinlogPosition,
  type ServerIdentity,
} from './binlog-position.js';
import { type BinlogStart, classifyBinlogError, readBinlog } from './binlog-reader.js';
import { classifyMySqlError, type MySqlEndpoint, openConnection } from './connect.js';
import type { SourceShape } from './ddl-shapes.js';
import { gtidOrdinal, mariaDbDomains, normalizeGtid } from './gtid.js';
import { runPreflight } from './preflight.js';
import { planResume } from './resume-plan.js';
import { SchemaHistory } from './schema-history.js';
import { readSourceShapes, readTableSchemas } from './schema-reader.js';
import { binlogOff, mariaDbGtidAt, readHeadPosition, readServerIdentity } from './server-state.js';
import { readSnapshot } from './snapshot-reader.js';

/** Where the source reports what the pipeline should hear about (a failover, DDL of the captured tables). */
export interface SourceLog {
  info?(message: string): void;
  warn(message: string): void;
}

const stderrWarnings: SourceLog = {
  warn: (m) => process.stderr.write(`${new Date().toISOString()} WARN  ${m}\n`),
};

/** A continuous run opens the source again after every failed round; a failover is worth saying once per process. */
const warned = new Set<string>();

function historyLost(endpoint: MySqlEndpoint, reason: string): TributaryError {
  return new TributaryError(
    'SOURCE_HISTORY_LOST',
    `Capture cannot continue on the source of connection "${endpoint.name}": ${reason}.`,
    {
      hint: 'A new snapshot (full refresh) is needed. To let capture follow a failover next time, keep GTIDs on (MySQL: gtid_mode=ON and enforce_gtid_consistency=ON; MariaDB: gtid_strict_mode=ON) and let the new primary replicate every transaction with log_slave_updates.',
    },
  );
}

export class MySqlSource implements SourceConnector {
  readonly #endpoint: MySqlEndpoint;
  readonly #serverId: number;
  readonly #log: SourceLog;
  readonly #history: SchemaHistory;
  #rowMetadataFull: boolean | undefined;
  #conn: mysql.Connection | undefined;

  constructor(
    endpoint: MySqlEndpoint,
    options: {
      serverId: number;
      log?: SourceLog;
      /**
       * The schema history file (schema-history.ts), kept with the gateway's staging. Without one the history
       * lives in memory: a stream then starts from information_schema's columns.
       */
      historyPath?: string;
    },
  ) {
    this.#endpoint = endpoint;
    this.#serverId = options.serverId;
    this.#log = options.log ?? stderrWarnings;
    this.#history = new SchemaHistory(options.historyPath);
  }

  /**
   * The control connection, kept for the source's life (a long-running process keeps the source between
   * rounds). One the server closed (a restart, a cut) is forgotten, so the next call connects anew and a
   * server that is down reads as SOURCE_UNREACHABLE rather than as a query on a closed connection.
   */
  async #control(): Promise<mysql.Connection> {
    if (this.#conn) return this.#conn;
    const conn = await openConnection(this.#endpoint);
    const forget = () => {
      if (this.#conn === conn) this.#conn = undefined;
    };
    conn.on('error', forget);
    conn.on('end', forget);
    this.#conn = conn;
    return conn;
  }

  async #query<T extends mysql.RowDataPacket[]>(sql: string, params: unknown[], doing: string): Promise<T> {
    const conn = await this.#control();
    try {
      const [rows] = await conn.query<T>(sql, params);
      return rows;
    } catch (error) {
      throw classifyMySqlError(error, this.#endpoint, doing);
    }
  }

  async checkReadiness(context: ReadinessContext): Promise<readonly Finding[]> {
    context.signal.throwIfAborted();
    const conn = await this.#control();
    try {
      return await runPreflight(conn, this.#endpoint, { ...context, replicaServerId: this.#serverId });
    } catch (error) {
      throw classifyMySqlError(error, this.#endpoint, 'running the preflight checks');
    }
  }

  async describe(signal: AbortSignal): Promise<string> {
    signal.throwIfAborted();
    const rows = await this.#query('SELECT VERSION() AS v', [], 'reading the server version');
    const version = String(rows[0]?.['v'] ?? '');
    return `${/mariadb/i.test(version) ? 'MariaDB' : 'MySQL'} ${version}`;
  }

  async listTables(selection: TableSelection, signal: AbortSignal): Promise<readonly TableSchema[]> {
    signal.throwIfAborted();
    const conn = await this.#control();
    try {
      return await readTableSchemas(conn, selection);
    } catch (error) {
      throw classifyMySqlError(error, this.#endpoint, 'reading table definitions');
    }
  }

  async tableNames(schema: string, signal: AbortSignal): Promise<readonly string[]> {
    signal.throwIfAborted();
    const schemas = await this.#query(
      'SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?',
      [schema],
      'listing databases',
    );
    if (schemas.length === 0) {
      throw new TributaryError(
        'SOURCE_TABLE_NOT_FOUND',
        `The source database "${schema}" does not exist or is not visible to user "${this.#endpoint.user}".`,
        {
          hint: `Check the name, and GRANT SELECT ON ${schema}.* to the CDC user.`,
        },
      );
    }
    const rows = await this.#query(
      "SELECT TABLE_NAME AS n FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
      [schema],
      'listing tables',
    );
    return rows.map((r) => String(r['n']));
  }

  async estimateRows(tables: readonly TableId[], signal: AbortSignal): Promise<ReadonlyMap<string, number>> {
    signal.throwIfAborted();
    const estimates = new Map<string, number>();
    if (tables.length === 0) return estimates;
    const rows = await this.#query(
      `SELECT TABLE_SCHEMA AS s, TABLE_NAME AS n, TABLE_ROWS AS r FROM information_schema.TABLES
        WHERE (TABLE_SCHEMA, TABLE_NAME) IN (${tables.map(() => '(?, ?)').join(', ')})`,
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
    const conn = await this.#control();
    let head: Awaited<ReturnType<typeof readHeadPosition>>;
    try {
      head = await readHeadPosition(conn, await readServerIdentity(conn));
    } catch (error) {
      throw classifyMySqlError(error, this.#endpoint, 'reading the binlog position (SHOW MASTER STATUS)');
    }
    if (!head) throw binlogOff(this.#endpoint.name);
    return encodeBinlogPosition(head);
  }

  snapshot(tables: readonly TableSchema[], options: SnapshotOptions): AsyncIterable<ChangeBatch> {
    return readSnapshot(this.#endpoint, tables, options, this.#history);
  }

  async *stream(from: Position, options: StreamOptions): AsyncIterable<ChangeBatch> {
    const saved = decodeBinlogPosition(from);
    let server: ServerIdentity;
    try {
      server = await readServerIdentity(await this.#control());
    } catch (error) {
      throw classifyMySqlError(error, this.#endpoint, 'reading the server identity');
    }
    const logs = await this.#query('SHOW BINARY LOGS', [], 'listing binary logs (SHOW BINARY LOGS)');
    const plan = planResume(
      saved,
      server,
      logs.some((l) => String(l['Log_name']) === saved.file),
    );
    let start: BinlogStart;
    switch (plan.kind) {
      case 'purged': {
        // Checked up front (the dump would also fail, with error 1236) so the error is immediate, comes
        // before any replication connection, and names the oldest file that is left.
        const oldest = logs[0] ? String(logs[0]['Log_name']) : 'none';
        throw classifyBinlogError(
          Object.assign(new Error(`binlog file ${saved.file} was purged (oldest remaining: ${oldest})`), {
            errno: 1236,
          }),
          this.#endpoint,
          from,
        );
      }
      case 'lost':
        throw historyLost(this.#endpoint, plan.reason);
      case 'gtid':
        start = plan;
        if (server.flavor === 'mariadb') await this.#requireDomains(plan.gtid, plan.reason);
        this.#warnOnce(
          `${plan.failover ? 'failover detected' : 'binlog file gone'} on connection "${this.#endpoint.name}": ${plan.reason}. Resuming from GTID state ${plan.gtid} instead of ${describeCoordinates(saved)}.`,
        );
        break;
      case 'file':
        start = plan.gtid === undefined ? await this.#withGtid(plan, server) : plan;
        break;
    }
    yield* readBinlog(this.#endpoint, from, start, {
      ...options,
      serverId: this.#serverId,
      server,
      log: this.#log,
      history: {
        shapes: await this.#shapesAt(from, options.tables),
        store: this.#history,
        logsColumnNames: await this.#logsColumnNames(),
      },
    });
  }

  /**
   * The captured tables' full column lists at `from`, from the schema history; information_schema's current
   * ones for a table the history does not know (exact unless DDL changed it after `from`).
   */
  async #shapesAt(from: Position, tables: readonly TableSchema[]): Promise<Map<string, SourceShape>> {
    const recorded = await this.#history.at(from);
    const shapes = new Map<string, SourceShape>();
    const missing: TableId[] = [];
    for (const t of tables) {
      const shape = recorded.get(tableKey(t.id));
      if (shape) shapes.set(tableKey(t.id), shape);
      else missing.push(t.id);
    }
    if (missing.length === 0) return shapes;
    let read: Map<string, SourceShape>;
    try {
      read = await readSourceShapes(await this.#control(), missing);
    } catch (error) {
      throw classifyMySqlError(error, this.#endpoint, 'reading the columns of the captured tables');
    }
    for (const [key, shape] of read) shapes.set(key, shape);
    // Recorded at `from`, so later rounds start from this reading and the DDL followed after it, rather than
    // from information_schema again, which by then may already hold that DDL.
    await this.#history.record([...read].map(([table, shape]) => ({ position: from, table, shape })));
    return shapes;
  }

  /**
   * binlog_row_metadata=FULL: TABLE_MAP events name their columns (MySQL 8.0.1+, MariaDB 10.5+). Read once per
   * source (a continuous run keeps it between rounds): it only decides whether DDL not understood is warned of.
   */
  async #logsColumnNames(): Promise<boolean> {
    this.#rowMetadataFull ??= await this.#readRowMetadataFull();
    return this.#rowMetadataFull;
  }

  async #readRowMetadataFull(): Promise<boolean> {
    try {
      const rows = await this.#query(
        'SELECT @@GLOBAL.binlog_row_metadata AS m',
        [],
        'reading binlog_row_metadata',
      );
      return String(rows[0]?.['m'] ?? '').toUpperCase() === 'FULL';
    } catch {
      // An older server has no such variable, and logs no column names.
      return false;
    }
  }

  /**
   * A position saved before GTIDs were recorded: MariaDB reports the state at a file and offset
   * (BINLOG_GTID_POS); MySQL cannot, so the reader learns it from the start of the file (gtid stays unknown).
   */
  async #withGtid(
    plan: Extract<BinlogStart, { kind: 'file' }>,
    server: ServerIdentity,
  ): Promise<BinlogStart> {
    if (server.flavor !== 'mariadb') return plan;
    let gtid: string | undefined;
    try {
      gtid = await mariaDbGtidAt(await this.#control(), plan.file, plan.offset);
    } catch (error) {
      throw classifyMySqlError(error, this.#endpoint, 'reading the GTID state of the saved position');
    }
    return gtid === undefined ? plan : { ...plan, gtid, ordinal: gtidOrdinal(gtid) };
  }

  /**
   * MariaDB streams a replication domain the connect state does not list from its very beginning, but does
   * not complain about a listed domain it has never seen. A new primary without one of the captured domains
   * never received those transactions, so there is no consistent way to continue.
   */
  async #requireDomains(gtid: string, reason: string): Promise<void> {
    const rows = await this.#query(
      'SELECT @@GLOBAL.gtid_binlog_pos AS gtid',
      [],
      'reading the GTID state of the new primary',
    );
    const present = new Set(mariaDbDomains(normalizeGtid('mariadb', String(rows[0]?.['gtid'] ?? ''))));
    const missing = mariaDbDomains(gtid).filter((d) => !present.has(d));
    if (missing.length > 0) {
      throw historyLost(
        this.#endpoint,
        `${reason}, and its binlog has no transaction of replication domain ${missing.join(', ')}, which the captured GTID state ${gtid} includes: it never received them`,
      );
    }
  }

  #warnOnce(message: string): void {
    if (warned.has(message)) return;
    warned.add(message);
    this.#log.warn(message);
  }

  /** The binlog is kept by the server's retention (binlog_expire_logs_seconds), not by its readers. */
  acknowledge(): void {}

  logDistance(from: Position, to: Position): number | undefined {
    return binlogDistance(from, to);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    const conn = this.#conn;
    this.#conn = undefined;
    await conn?.end().catch(() => conn.destroy());
  }
}
