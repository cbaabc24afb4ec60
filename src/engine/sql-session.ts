/**
 * `tributary sql`: DuckDB over the warehouse. Each Delta table a statement names is exposed as a view in a
 * DuckDB catalog of the same name, so `catalog.schema.table` and (with a default catalog) `schema.table`
 * resolve without rewriting the statement. A view reads exactly the active files of the table's current
 * snapshot; nothing is copied.
 */
import { resolve } from 'node:path';
import { DuckDBTypeId } from '@duckdb/node-api';
import type { Warehouse } from '../catalog/warehouse.js';
import { isTributaryError, messageOf, TributaryError } from '../core/errors.js';
import { loadSnapshot, type Snapshot } from '../delta/snapshot.js';
import { rewriteDatabricksSql } from './databricks-dialect.js';
import { DuckDb, quoteDuckIdent as q, quoteDuckString } from './duckdb.js';
import { duckDbTypeFor } from './duckdb-types.js';

export interface QueryResult {
  readonly columns: readonly string[];
  /** JSON-safe values: integers as numbers when exact, DECIMAL and wider integers as strings. */
  readonly rows: readonly Record<string, unknown>[];
}

/** DuckDB's own catalogs; a warehouse catalog with one of these names cannot be attached under it. */
const RESERVED_CATALOGS = new Set(['system', 'temp', 'main', 'memory']);

export class SqlSession implements AsyncDisposable {
  readonly #attached = new Set<string>();
  readonly #registered = new Set<string>();

  private constructor(
    readonly db: DuckDb,
    readonly warehouse: Warehouse,
  ) {}

  static async open(warehouse: Warehouse, options: { defaultCatalog?: string } = {}): Promise<SqlSession> {
    const session = new SqlSession(await DuckDb.open(), warehouse);
    if (options.defaultCatalog) {
      await session.#attach(options.defaultCatalog);
      await session.db.run(`USE ${q(options.defaultCatalog)}`);
    }
    return session;
  }

  async #attach(catalog: string): Promise<void> {
    if (this.#attached.has(catalog) || RESERVED_CATALOGS.has(catalog)) return;
    await this.db.run(`ATTACH ':memory:' AS ${q(catalog)}`);
    this.#attached.add(catalog);
  }

  async #registerView(qualified: string, snapshot: Snapshot): Promise<void> {
    const files = snapshot.files.map((f) => snapshot.dataFilePath(f));
    const fields = snapshot.schema.fields;
    let body: string;
    if (files.length === 0) {
      const cols = fields.map((f) => `NULL::${duckDbTypeFor(String(f.type))} AS ${q(f.name)}`);
      body = `SELECT ${cols.join(', ')} WHERE false`;
    } else {
      const list = `[${files.map(quoteDuckString).join(', ')}]`;
      const described = await this.db.rows(
        `DESCRIBE SELECT * FROM read_parquet(${list}, union_by_name = true)`,
      );
      const present = new Set(described.map((r) => String(r['column_name'])));
      const cols = fields.map((f) =>
        present.has(f.name) ? q(f.name) : `NULL::${duckDbTypeFor(String(f.type))} AS ${q(f.name)}`,
      );
      body = `SELECT ${cols.join(', ')} FROM read_parquet(${list}, union_by_name = true)`;
    }
    await this.db.run(`CREATE OR REPLACE VIEW ${qualified} AS ${body}`);
  }

  /** Registers the warehouse tables the statement may refer to (by table name appearing in it). */
  async #registerReferencedTables(sql: string): Promise<void> {
    const words = new Set(sql.toLowerCase().match(/[a-z_][a-z0-9_]*/g) ?? []);
    for (const t of await this.warehouse.listTables()) {
      const key = `${t.catalog}.${t.schema}.${t.table}`;
      if (this.#registered.has(key) || !words.has(t.table.toLowerCase()) || RESERVED_CATALOGS.has(t.catalog))
        continue;
      await this.#attach(t.catalog);
      await this.db.run(`CREATE SCHEMA IF NOT EXISTS ${q(t.catalog)}.${q(t.schema)}`);
      await this.#registerView(
        `${q(t.catalog)}.${q(t.schema)}.${q(t.table)}`,
        await loadSnapshot(this.warehouse.tablePath(t)),
      );
      this.#registered.add(key);
    }
  }

  async execute(statement: string): Promise<QueryResult> {
    const { sql, deltaPaths } = rewriteDatabricksSql(statement);
    for (const [name, path] of deltaPaths) {
      await this.#registerView(`memory.main.${q(name)}`, await loadSnapshot(resolve(path)));
    }
    await this.#registerReferencedTables(sql);
    try {
      const reader = await this.db.connection.runAndReadAll(sql);
      const columns = reader.columnNames();
      const types = reader.columnTypes();
      const rows = reader.getRowsJson().map((row) => {
        const obj: Record<string, unknown> = {};
        row.forEach((value, i) => {
          const id = types[i]?.typeId;
          const integer =
            id === DuckDBTypeId.BIGINT || id === DuckDBTypeId.UBIGINT || id === DuckDBTypeId.HUGEINT;
          obj[columns[i] as string] =
            integer && typeof value === 'string' && Number.isSafeInteger(Number(value))
              ? Number(value)
              : value;
        });
        return obj;
      });
      return { columns, rows };
    } catch (error) {
      if (isTributaryError(error)) throw error;
      throw new TributaryError('SQL_ERROR', messageOf(error), { cause: error });
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.db[Symbol.asyncDispose]();
  }
}
