/**
 * What a statement handler gets from the session, and what it returns. Handlers live one per statement kind in
 * this folder; `router.ts` picks the handler.
 */
import type { Warehouse } from '../../catalog/warehouse.js';
import type { ConnectionDirectory } from '../../core/ports.js';
import type { Snapshot } from '../../delta/snapshot.js';
import type { DuckDb } from '../duckdb.js';
import type { Cursor, TableReference, Temporal } from './cursor.js';

export interface QueryResult {
  readonly columns: readonly string[];
  /** JSON-safe values: integers as numbers when exact, DECIMAL and wider integers as strings. */
  readonly rows: readonly Record<string, unknown>[];
}

/** A table reference resolved to storage. */
export interface ResolvedTable {
  /** Absolute path of the table root. */
  readonly root: string;
  /** `catalog.schema.table` for a named table, null for `` delta.`path` ``. */
  readonly name: string | null;
  /** How to name it in messages: the qualified name, or the path. */
  readonly display: string;
}

/** Session settings that change what statements do (`SET key = value`). */
export const SETTINGS = {
  retentionDurationCheck: 'spark.databricks.delta.retentionDurationCheck.enabled',
  vacuumLogging: 'spark.databricks.delta.vacuum.logging.enabled',
  optimizeMaxFileSize: 'spark.databricks.delta.optimize.maxFileSize',
} as const;

export interface StatementContext {
  readonly db: DuckDb;
  readonly warehouse: Warehouse;
  /** The configured source connections, when the session was opened with a config. */
  readonly connections: ConnectionDirectory | undefined;
  /** `SET` values, by lower-cased key. */
  readonly settings: Map<string, string>;
  /**
   * The table a reference names. With `mustExist` (the default) a name or path without a Delta table is
   * `SQL_UNKNOWN_TABLE`; without it, the name of a table to create resolves to where it would live.
   */
  resolveTable(reference: TableReference, options?: { mustExist?: boolean }): Promise<ResolvedTable>;
  /** The snapshot of a resolved table, at the time travel clause's version or timestamp when there is one. */
  loadSnapshot(table: ResolvedTable, temporal?: Temporal): Promise<Snapshot>;
  /** Evaluates a timestamp expression (DuckDB SQL, in UTC) to an instant. */
  evaluateTimestamp(sql: string): Promise<Date>;
  /** Tells the session a table changed, so views over its old version are rebuilt. */
  tableChanged(root: string): void;
  /** `USE`: the catalog (and schema) that shorter names resolve in. */
  use(catalog: string, schema?: string): Promise<void>;
  /** Runs a statement on DuckDB (after the Databricks rewrite and with every referenced table registered). */
  query(sql: string): Promise<QueryResult>;
}

export interface StatementHandler<T> {
  /** For messages and tests: `DESCRIBE HISTORY`, `OPTIMIZE`, ... */
  readonly kind: string;
  /**
   * Recognises the statement: undefined when it is not of this kind (the cursor position is then irrelevant);
   * the parsed form when it is; `SQL_ERROR` when it is of this kind but malformed.
   */
  parse(cursor: Cursor): T | undefined;
  execute(context: StatementContext, statement: T): Promise<QueryResult>;
}

/** A handler with its parsed type erased, as the router holds them. */
export interface Route {
  readonly kind: string;
  /** A function running the statement when the handler recognises it, else undefined. */
  route(cursor: Cursor): ((context: StatementContext) => Promise<QueryResult>) | undefined;
}

export function route<T>(handler: StatementHandler<T>): Route {
  return {
    kind: handler.kind,
    route(cursor) {
      const statement = handler.parse(cursor);
      return statement === undefined ? undefined : (context) => handler.execute(context, statement);
    },
  };
}

/** A timestamp as DuckDB prints a TIMESTAMPTZ in a UTC session: `2026-01-02 03:04:05.678+00`. */
export function formatTimestamp(ms: number): string {
  const iso = new Date(ms).toISOString();
  const fraction = iso.slice(19, 23) === '.000' ? '' : iso.slice(19, 23);
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)}${fraction}+00`;
}

/** A setting's value as a boolean, `fallback` when unset. */
export function booleanSetting(context: StatementContext, key: string, fallback: boolean): boolean {
  const value = context.settings.get(key.toLowerCase());
  if (value === undefined) return fallback;
  return !/^(false|0|off|no)$/i.test(value.trim());
}
