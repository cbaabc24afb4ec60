/**
 * One DuckDB database per process, used for Parquet I/O and SQL. Sessions run in UTC so TIMESTAMPTZ text
 * and Parquet instants mean the same thing everywhere.
 */
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { messageOf, TributaryError } from '../core/errors.js';

export class DuckDb implements AsyncDisposable {
  private constructor(
    readonly instance: DuckDBInstance,
    readonly connection: DuckDBConnection,
    /** Whether disposing this closes the database too, or only this connection. */
    private readonly ownsInstance: boolean,
  ) {}

  static async open(): Promise<DuckDb> {
    const instance = await DuckDBInstance.create(':memory:');
    return DuckDb.#connect(instance, true);
  }

  static async #connect(instance: DuckDBInstance, ownsInstance: boolean): Promise<DuckDb> {
    const connection = await instance.connect();
    // Per connection, and after connecting: the setting needs the ICU extension, loaded only by then.
    await connection.run("SET TimeZone = 'UTC'");
    return new DuckDb(instance, connection, ownsInstance);
  }

  /**
   * Another connection to the same database. Temp tables live per connection, so work that creates many
   * (a merge, a scan with deletion vectors) runs on its own and leaves nothing behind when it is disposed.
   */
  async fork(): Promise<DuckDb> {
    return DuckDb.#connect(this.instance, false);
  }

  /** Runs statements whose result is not needed. */
  async run(sql: string): Promise<void> {
    try {
      await this.connection.run(sql);
    } catch (error) {
      throw new TributaryError('SQL_ERROR', messageOf(error), { cause: error });
    }
  }

  /** Rows as JSON-safe objects: BIGINT and DECIMAL as strings, timestamps as ISO-like text. */
  async rows(sql: string): Promise<Record<string, unknown>[]> {
    try {
      const reader = await this.connection.runAndReadAll(sql);
      return reader.getRowObjectsJson() as Record<string, unknown>[];
    } catch (error) {
      throw new TributaryError('SQL_ERROR', messageOf(error), { cause: error });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.connection.closeSync();
    if (this.ownsInstance) this.instance.closeSync();
  }
}

export function quoteDuckIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteDuckString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
