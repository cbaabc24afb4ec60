/**
 * `tributary sql`: DuckDB over the warehouse, with the Databricks statements the reference documents use.
 *
 * A script is split into statements, and each goes through the router (`statements/router.ts`): DESCRIBE
 * HISTORY / DETAIL, OPTIMIZE, VACUUM, RESTORE, SHALLOW CLONE, ALTER TABLE ... TBLPROPERTIES, SET and USE have
 * handlers; anything else is a DuckDB query. For a query, each warehouse table the statement may name is
 * exposed as a view in a DuckDB catalog of the same name, so `catalog.schema.table` and (with a current
 * catalog) `schema.table` resolve without rewriting; `` delta.`/path` `` and time travelled references become
 * generated views. Every view reads its snapshot through `scanSql`, so deletion vectors, column mapping and
 * partition values are honoured; nothing is copied.
 */
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DuckDBTypeId } from '@duckdb/node-api';
import { type CutVersion, readConsistentCuts } from '../catalog/consistent-cut.js';
import { formatTableName, type TableName, type Warehouse } from '../catalog/warehouse.js';
import { isTributaryError, messageOf, TributaryError } from '../core/errors.js';
import type { ConnectionDirectory } from '../core/ports.js';
import { tableChangesSql } from '../delta/change-data-feed.js';
import { scanSql } from '../delta/scan.js';
import { isDeltaTable, loadSnapshot, type Snapshot } from '../delta/snapshot.js';
import { rewriteDatabricksSql } from './databricks-dialect.js';
import { DuckDb, quoteDuckIdent as q } from './duckdb.js';
import type { QueryResult, ResolvedTable, StatementContext } from './statements/context.js';
import { Cursor, isIdentifierToken, type TableReference, type Temporal } from './statements/cursor.js';
import { splitStatements } from './statements/lexer.js';
import { executeStatement } from './statements/router.js';

export type { QueryResult } from './statements/context.js';

/** DuckDB's own catalogs; a warehouse catalog with one of these names cannot be attached under it. */
const RESERVED_CATALOGS = new Set(['system', 'temp', 'main', 'memory']);

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface SqlSessionOptions {
  /** The catalog two-part names (`schema.table`) resolve in. */
  defaultCatalog?: string;
  /** Source connections for `DESCRIBE CONNECTION` and `SHOW TABLES ... USING CONNECTION`. */
  connections?: ConnectionDirectory;
  /**
   * Read each pipeline table at its pipeline's consistent cut (default), so that tables agree with each
   * other; false reads every table's newest version. `VERSION AS OF` / `TIMESTAMP AS OF` always win.
   */
  consistentCut?: boolean;
}

export class SqlSession implements AsyncDisposable, StatementContext {
  readonly settings = new Map<string, string>();
  readonly #attached = new Set<string>();
  /** `catalog.schema.table` → the table root (and version read) of each registered catalog view. */
  readonly #registered = new Map<string, string>();
  /** Tables whose view could not be built (an unreadable table), for the error when a query names one. */
  readonly #unreadable = new Map<string, unknown>();
  #cutCache: Promise<Map<string, CutVersion>> | undefined;
  #cutSignature = '';
  #currentCatalog: string | undefined;
  #currentSchema: string | undefined;
  #nextViewId = 1;

  private constructor(
    readonly db: DuckDb,
    readonly warehouse: Warehouse,
    readonly connections: ConnectionDirectory | undefined,
    readonly consistentCut: boolean,
  ) {}

  static async open(warehouse: Warehouse, options: SqlSessionOptions = {}): Promise<SqlSession> {
    const session = new SqlSession(
      await DuckDb.open(),
      warehouse,
      options.connections,
      options.consistentCut ?? true,
    );
    if (options.defaultCatalog) await session.use(options.defaultCatalog);
    return session;
  }

  /** Runs a script of one or more `;`-separated statements and returns the result of the last one. */
  async execute(script: string): Promise<QueryResult> {
    let result: QueryResult = { columns: [], rows: [] };
    for (const statement of splitStatements(script)) result = await executeStatement(this, statement);
    return result;
  }

  // -------------------------------------------------------------------------------------------------------------
  // StatementContext

  async use(catalog: string, schema?: string): Promise<void> {
    const target = catalog === '' ? this.#currentCatalog : catalog;
    if (target === undefined) {
      throw new TributaryError('SQL_ERROR', `USE SCHEMA ${schema} needs a current catalog`, {
        hint: 'Run USE CATALOG <name> first, or pass --catalog.',
      });
    }
    await this.#attach(target);
    if (schema === undefined) {
      if (!RESERVED_CATALOGS.has(target)) await this.db.run(`USE ${q(target)}`);
    } else {
      if (!RESERVED_CATALOGS.has(target)) {
        await this.db.run(`CREATE SCHEMA IF NOT EXISTS ${q(target)}.${q(schema)}`);
        await this.db.run(`USE ${q(target)}.${q(schema)}`);
      }
    }
    this.#currentCatalog = target;
    this.#currentSchema = schema;
  }

  async resolveTable(
    reference: TableReference,
    options: { mustExist?: boolean } = {},
  ): Promise<ResolvedTable> {
    const mustExist = options.mustExist ?? true;
    if (reference.kind === 'path') {
      const root = resolve(
        reference.path.startsWith('file:') ? fileURLToPath(reference.path) : reference.path,
      );
      if (mustExist && !(await isDeltaTable(root))) {
        throw new TributaryError('SQL_UNKNOWN_TABLE', `Table or view not found: ${reference.text}`, {
          hint: `There is no Delta table (a directory with _delta_log) at ${root}.`,
        });
      }
      return { root, name: null, display: root };
    }
    if (reference.parts.length === 3 && reference.parts[0]?.toLowerCase() === 'system') {
      const [, schema, table] = reference.parts as [string, string, string];
      const root = this.warehouse.systemTablePath(schema.toLowerCase(), table.toLowerCase());
      const display = `system.${schema.toLowerCase()}.${table.toLowerCase()}`;
      if (mustExist && !(await isDeltaTable(root))) {
        throw new TributaryError('SQL_UNKNOWN_TABLE', `Table or view not found: ${reference.text}`, {
          hint:
            display === 'system.lakeflow.pipeline_events'
              ? 'It is written by `tributary run`: no pipeline has run in this warehouse yet.'
              : 'The system tables are system.lakeflow.pipeline_events.',
        });
      }
      return { root, name: null, display };
    }
    const name = await this.#tableName(reference, mustExist);
    return {
      root: this.warehouse.tablePath(name),
      name: formatTableName(name),
      display: formatTableName(name),
    };
  }

  /** The table as a statement that works on it (OPTIMIZE, DESCRIBE DETAIL, ...) needs it: newest, or as asked. */
  async loadSnapshot(table: ResolvedTable, temporal?: Temporal): Promise<Snapshot> {
    if (temporal === undefined) return loadSnapshot(table.root);
    if ('version' in temporal) return loadSnapshot(table.root, { version: temporal.version });
    return loadSnapshot(table.root, { timestamp: await this.evaluateTimestamp(temporal.timestampSql) });
  }

  /** The table as a query reads it: at its pipeline's consistent cut unless a version or time is asked for. */
  async #readSnapshot(table: ResolvedTable, temporal?: Temporal): Promise<Snapshot> {
    if (temporal !== undefined) return this.loadSnapshot(table, temporal);
    const cut = table.name === null ? undefined : (await this.#cuts()).get(table.name);
    return loadSnapshot(table.root, cut === undefined ? {} : { version: cut.version });
  }

  /**
   * A `table_changes` bound as a version. A timestamp starts at the first version committed at or after it, and
   * ends at the last version committed at or before it, as Databricks reads them.
   */
  async #changesBound(table: ResolvedTable, bound: Temporal, side: 'start' | 'end'): Promise<number> {
    if ('version' in bound) return bound.version;
    const at = await this.evaluateTimestamp(bound.timestampSql);
    if (side === 'end') return (await loadSnapshot(table.root, { timestamp: at })).version;
    const before = new Date(at.getTime() - 1);
    try {
      return (await loadSnapshot(table.root, { timestamp: before })).version + 1;
    } catch (error) {
      // Nothing was committed before it: the table's first version is the first at or after it.
      if (isTributaryError(error) && error.code === 'DELTA_TABLE_NOT_FOUND') return 0;
      throw error;
    }
  }

  async evaluateTimestamp(sql: string): Promise<Date> {
    const expression = rewriteDatabricksSql(sql).sql;
    let ms: unknown;
    try {
      const reader = await this.db.connection.runAndReadAll(
        `SELECT epoch_ms(CAST((${expression}) AS TIMESTAMPTZ))`,
      );
      ms = reader.getRowsJS()[0]?.[0];
    } catch (error) {
      throw new TributaryError('SQL_ERROR', `Invalid timestamp ${sql}: ${messageOf(error)}`, {
        cause: error,
      });
    }
    if (ms === null || ms === undefined) throw new TributaryError('SQL_ERROR', `Timestamp ${sql} is NULL`);
    return new Date(Number(ms));
  }

  tableChanged(root: string): void {
    for (const [key, registered] of this.#registered) if (registered === root) this.#registered.delete(key);
  }

  async query(statement: string): Promise<QueryResult> {
    // A cut that moved since the last statement makes every view stale.
    this.#cutCache = undefined;
    const cuts = await this.#cuts();
    const signature = JSON.stringify([...cuts].map(([k, v]) => [k, v.version]));
    if (signature !== this.#cutSignature) {
      this.#registered.clear();
      this.#cutSignature = signature;
    }
    const { sql, references } = rewriteDatabricksSql(statement, { firstId: this.#nextViewId });
    this.#nextViewId += references.size;
    for (const [view, reference] of references) {
      const table = await this.resolveTable(reference.table);
      if (reference.changes) {
        const changes = await tableChangesSql(table.root, this.db.connection, {
          startVersion: await this.#changesBound(table, reference.changes.start, 'start'),
          endVersion:
            reference.changes.end === undefined
              ? undefined
              : await this.#changesBound(table, reference.changes.end, 'end'),
        });
        await this.db.run(`CREATE OR REPLACE TEMP VIEW ${q(view)} AS ${changes}`);
        continue;
      }
      const snapshot = await this.#readSnapshot(table, reference.temporal);
      await this.db.run(
        `CREATE OR REPLACE TEMP VIEW ${q(view)} AS ${await scanSql(snapshot, this.db.connection)}`,
      );
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
      throw await this.#queryError(statement, error);
    }
  }

  // -------------------------------------------------------------------------------------------------------------
  // Names

  /** The warehouse table a name means: exact directory names first, then case-insensitively (as Databricks). */
  async #tableName(reference: TableReference & { kind: 'name' }, mustExist: boolean): Promise<TableName> {
    const parts = reference.parts;
    const tables = await this.warehouse.listTables();
    const same = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();
    let candidates: TableName[];
    let wanted: TableName | undefined;
    if (parts.length === 3) {
      const [catalog, schema, table] = parts as [string, string, string];
      wanted = { catalog, schema, table };
      candidates = tables.filter(
        (t) => same(t.catalog, catalog) && same(t.schema, schema) && same(t.table, table),
      );
    } else if (parts.length === 2) {
      const [schema, table] = parts as [string, string];
      const catalog = this.#currentCatalog;
      if (catalog === undefined) {
        throw new TributaryError('SQL_UNKNOWN_TABLE', `Table or view not found: ${reference.text}`, {
          hint: 'A two-part name needs a current catalog: pass --catalog <name>, run USE CATALOG <name>, or write catalog.schema.table.',
        });
      }
      wanted = { catalog, schema, table };
      candidates = tables.filter(
        (t) => same(t.catalog, catalog) && same(t.schema, schema) && same(t.table, table),
      );
    } else {
      const [table] = parts as [string];
      const catalog = this.#currentCatalog;
      const schema = this.#currentSchema;
      if (catalog !== undefined && schema !== undefined) wanted = { catalog, schema, table };
      candidates = tables.filter(
        (t) =>
          (catalog === undefined || same(t.catalog, catalog)) &&
          (schema === undefined || same(t.schema, schema)) &&
          same(t.table, table),
      );
      if (candidates.length > 1) {
        throw new TributaryError('SQL_ERROR', `Table name ${reference.text} is ambiguous`, {
          hint: `It could be ${candidates.map(formatTableName).join(', ')}; qualify it.`,
        });
      }
    }
    const exact = candidates.find((t) => wanted && formatTableName(t) === formatTableName(wanted));
    const found = exact ?? candidates[0];
    if (found) return found;
    if (mustExist || wanted === undefined) {
      throw new TributaryError('SQL_UNKNOWN_TABLE', `Table or view not found: ${reference.text}`, {
        hint: this.#tablesHint(tables),
      });
    }
    for (const part of [wanted.catalog, wanted.schema, wanted.table]) {
      if (!IDENT.test(part)) {
        throw new TributaryError(
          'SQL_ERROR',
          `Invalid table name ${reference.text}: '${part}' is not an identifier`,
          {
            hint: 'Warehouse names are letters, digits and underscores, not starting with a digit.',
          },
        );
      }
    }
    return wanted;
  }

  #tablesHint(tables: readonly TableName[]): string {
    if (tables.length === 0) return `The warehouse ${this.warehouse.root} has no tables yet.`;
    const names = tables.slice(0, 10).map(formatTableName).join(', ');
    return `Tables in the warehouse: ${names}${tables.length > 10 ? `, ... (${tables.length} in all)` : ''}.`;
  }

  async #attach(catalog: string): Promise<void> {
    if (this.#attached.has(catalog) || RESERVED_CATALOGS.has(catalog)) return;
    await this.db.run(`ATTACH ':memory:' AS ${q(catalog)}`);
    this.#attached.add(catalog);
  }

  /**
   * The pipelines' consistent cuts, read once per statement (a pipeline running beside this session moves
   * them); empty when the session reads newest versions.
   */
  async #cuts(): Promise<Map<string, CutVersion>> {
    if (!this.consistentCut) return new Map();
    this.#cutCache ??= readConsistentCuts(this.warehouse.root);
    return this.#cutCache;
  }

  /** Registers (or refreshes) a view for each warehouse table whose name appears as a word in the statement. */
  async #registerReferencedTables(sql: string): Promise<void> {
    const words = new Set(sql.toLowerCase().match(/[a-z_][a-z0-9_]*/g) ?? []);
    for (const t of await this.warehouse.listTables()) {
      const key = formatTableName(t);
      if (this.#registered.has(key) || !words.has(t.table.toLowerCase()) || RESERVED_CATALOGS.has(t.catalog))
        continue;
      const root = this.warehouse.tablePath(t);
      try {
        await this.#attach(t.catalog);
        await this.db.run(`CREATE SCHEMA IF NOT EXISTS ${q(t.catalog)}.${q(t.schema)}`);
        const snapshot = await this.#readSnapshot({ root, name: key, display: key });
        const body = await scanSql(snapshot, this.db.connection);
        await this.db.run(`CREATE OR REPLACE VIEW ${q(t.catalog)}.${q(t.schema)}.${q(t.table)} AS ${body}`);
        this.#registered.set(key, root);
        this.#unreadable.delete(key);
      } catch (error) {
        // Only an error if the statement really reads this table: DuckDB then reports it missing.
        this.#unreadable.set(key, error);
      }
    }
  }

  /** A DuckDB error as a TributaryError: unknown tables as SQL_UNKNOWN_TABLE naming them, else SQL_ERROR. */
  async #queryError(statement: string, error: unknown): Promise<TributaryError> {
    const message = messageOf(error);
    const table = /Table with name "?([^"!\s]+)"? does not exist/.exec(message)?.[1];
    const catalog = /Catalog "([^"]+)" does not exist/.exec(message)?.[1];
    const missing = table ?? catalog;
    if (missing === undefined) return new TributaryError('SQL_ERROR', message, { cause: error });
    const written = nameAsWritten(statement, missing, table !== undefined);
    for (const [key, cause] of this.#unreadable) {
      if (key.toLowerCase().endsWith(`.${missing.toLowerCase()}`) && isTributaryError(cause)) return cause;
    }
    return new TributaryError('SQL_UNKNOWN_TABLE', `Table or view not found: ${written}`, {
      cause: error,
      hint: this.#tablesHint(await this.warehouse.listTables()),
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.db[Symbol.asyncDispose]();
  }
}

/**
 * The qualified name in the statement that DuckDB's message names by its last part (`table`) or by its
 * catalog: the first dotted name that ends (or starts) with it, else `missing` itself.
 */
function nameAsWritten(statement: string, missing: string, isTable: boolean): string {
  const cursor = new Cursor(statement);
  const lower = missing.toLowerCase();
  while (!cursor.atEnd()) {
    const previous = cursor.peek(-1);
    if (isIdentifierToken(cursor.peek()) && !(previous?.type === 'op' && previous.text === '.')) {
      const start = cursor.position;
      try {
        const reference = cursor.tableReference();
        if (reference.kind === 'name') {
          const parts = reference.parts.map((p) => p.toLowerCase());
          const joined = parts.join('.');
          if (
            isTable
              ? joined === lower || joined.endsWith(`.${lower}`)
              : parts[0] === lower && parts.length > 1
          ) {
            return reference.text;
          }
        }
      } catch {
        // not a name
      }
      cursor.position = start + 1;
      continue;
    }
    cursor.position++;
  }
  return missing;
}
