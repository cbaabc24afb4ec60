/**
 * One DuckDB database per process, used for Parquet I/O and SQL. Sessions run in UTC so TIMESTAMPTZ text
 * and Parquet instants mean the same thing everywhere.
 *
 * Memory is bounded: DuckDB's default is 80% of the machine, and a merge of a large batch would take it.
 * With a limit, DuckDB spills what does not fit (temp tables, joins, sorts, windows) into a temp directory of
 * this process's own (DuckDB names its spill files the same in every process), removed when it closes.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { messageOf, TributaryError } from '../core/errors.js';

/** DuckDB's memory_limit unless `TRIBUTARY_MEMORY_LIMIT` says otherwise (DuckDB's syntax: `512MB`, `2GB`). */
export const DEFAULT_MEMORY_LIMIT = '256MB';
let instances = 0;

export class DuckDb implements AsyncDisposable {
  private constructor(
    readonly instance: DuckDBInstance,
    readonly connection: DuckDBConnection,
    /** Whether disposing this closes the database too, or only this connection. */
    private readonly ownsInstance: boolean,
  ) {}

  static async open(): Promise<DuckDb> {
    const limit = process.env['TRIBUTARY_MEMORY_LIMIT']?.trim() || DEFAULT_MEMORY_LIMIT;
    const spill = join(tmpdir(), `tributary-duckdb-${process.pid}-${++instances}`);
    let instance: DuckDBInstance;
    try {
      instance = await DuckDBInstance.create(':memory:', { memory_limit: limit, temp_directory: spill });
    } catch (error) {
      if (process.env['TRIBUTARY_MEMORY_LIMIT']?.trim()) {
        throw new TributaryError(
          'CONFIG_INVALID',
          `TRIBUTARY_MEMORY_LIMIT=${limit} is not usable: ${messageOf(error)}`,
          {
            hint: 'Set TRIBUTARY_MEMORY_LIMIT to a size such as 512MB or 2GB, or unset it for the default of 256MB.',
            cause: error,
          },
        );
      }
      throw new TributaryError('INTERNAL', `Cannot start DuckDB: ${messageOf(error)}`, { cause: error });
    }
    const db = await DuckDb.#connect(instance, true);
    db.#spillDir = spill;
    return db;
  }

  #spillDir: string | undefined;

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
    if (this.#spillDir) rmSync(this.#spillDir, { recursive: true, force: true });
  }
}

export function quoteDuckIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteDuckString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
