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
import type { TableSchema } from '../../core/table.js';
import { decodeBinlogPosition, encodeBinlogPosition } from './binlog-position.js';
import { classifyBinlogError, readBinlog } from './binlog-reader.js';
import { classifyMySqlError, type MySqlEndpoint, openConnection } from './connect.js';
import { runPreflight } from './preflight.js';
import { readTableSchemas } from './schema-reader.js';
import { readSnapshot } from './snapshot-reader.js';

export class MySqlSource implements SourceConnector {
  readonly #endpoint: MySqlEndpoint;
  readonly #serverId: number;
  #conn: mysql.Connection | undefined;

  constructor(endpoint: MySqlEndpoint, options: { serverId: number }) {
    this.#endpoint = endpoint;
    this.#serverId = options.serverId;
  }

  async #control(): Promise<mysql.Connection> {
    this.#conn ??= await openConnection(this.#endpoint);
    return this.#conn;
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

  async readHead(signal: AbortSignal): Promise<Position> {
    signal.throwIfAborted();
    const rows = await this.#query(
      'SHOW MASTER STATUS',
      [],
      'reading the binlog position (SHOW MASTER STATUS)',
    );
    const head = rows[0];
    if (!head) {
      throw new TributaryError(
        'SOURCE_MISCONFIGURED',
        `The source of connection "${this.#endpoint.name}" has binary logging switched off.`,
        {
          hint: 'Start the server with log_bin enabled, binlog_format=ROW and binlog_row_image=FULL.',
        },
      );
    }
    return encodeBinlogPosition({ file: String(head['File']), offset: Number(head['Position']) });
  }

  snapshot(tables: readonly TableSchema[], options: SnapshotOptions): AsyncIterable<ChangeBatch> {
    return readSnapshot(this.#endpoint, tables, options);
  }

  async *stream(from: Position, options: StreamOptions): AsyncIterable<ChangeBatch> {
    // A purged start file is checked up front (the dump would also fail, with error 1236) so the error is
    // immediate, comes before any replication connection, and names the oldest file that is left.
    const { file } = decodeBinlogPosition(from);
    const logs = await this.#query('SHOW BINARY LOGS', [], 'listing binary logs (SHOW BINARY LOGS)');
    if (!logs.some((l) => String(l['Log_name']) === file)) {
      const oldest = logs[0] ? String(logs[0]['Log_name']) : 'none';
      throw classifyBinlogError(
        Object.assign(new Error(`binlog file ${file} was purged (oldest remaining: ${oldest})`), {
          errno: 1236,
        }),
        this.#endpoint,
        from,
      );
    }
    yield* readBinlog(this.#endpoint, from, { ...options, serverId: this.#serverId });
  }

  /** The binlog is kept by the server's retention (binlog_expire_logs_seconds), not by its readers. */
  acknowledge(): void {}

  async [Symbol.asyncDispose](): Promise<void> {
    const conn = this.#conn;
    this.#conn = undefined;
    await conn?.end().catch(() => conn.destroy());
  }
}
