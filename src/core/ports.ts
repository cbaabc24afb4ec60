/**
 * The ports: what the pipeline needs from a source, and nothing more. Concrete adapters live under
 * `src/sources/*`; only `src/app` knows which one is in use.
 */
import type { ChangeBatch } from './change.js';
import type { Position } from './position.js';
import type { TableId, TableSchema } from './table.js';

/** Which source tables a pipeline captures: named tables plus every table of whole schemas. */
export interface TableSelection {
  readonly tables: readonly TableId[];
  readonly schemas: readonly string[];
  /** Primary keys configured for tables that have none (or to override the source's), by `schema.table`. */
  readonly primaryKeys?: ReadonlyMap<string, readonly string[]>;
  /**
   * Column filters by `schema.table` (include_columns / exclude_columns). Applied before types are mapped,
   * so excluding a column of an unsupported type makes the table capturable. Key columns are always kept.
   */
  readonly columnFilters?: ReadonlyMap<
    string,
    { readonly include?: readonly string[]; readonly exclude?: readonly string[] }
  >;
}

export interface SnapshotOptions {
  /** Rows per batch; a batch is the unit that reaches staging. */
  readonly chunkRows: number;
  /**
   * At most this many tables are read at once (default 1). A source that reads tables in parallel reads each
   * in a consistent transaction of its own, so each table's batches carry that transaction's position (the
   * table's own snapshot point, from which the stream takes the table's changes); batches of different tables
   * interleave, each table's in key order and ending with its `snapshotTableComplete` batch.
   */
  readonly parallelTables?: number;
  /**
   * Resume points by `schema.table`: read only rows whose key sorts after these key values. Each is the
   * `resumeKey` of the table's last staged batch, or, when the source gave none, the staged text of each
   * key column of its last row. Tables without an entry are read from the start.
   */
  readonly afterKeys?: ReadonlyMap<string, Readonly<Record<string, string | null>>>;
  /**
   * True when no log position is saved, so streaming will start where this snapshot is taken (a first run,
   * or a full refresh after the log was lost). A source may then replace log-retention objects that can no
   * longer serve, such as a PostgreSQL slot invalidated by max_slot_wal_keep_size.
   */
  readonly restartsLog?: boolean;
  readonly signal: AbortSignal;
}

export interface StreamOptions {
  /** The tables to capture; changes to other tables are skipped. */
  readonly tables: readonly TableSchema[];
  /**
   * Stop once this position is reached (catch-up runs). Without it the stream follows the log until the
   * signal aborts.
   */
  readonly until?: Position;
  readonly signal: AbortSignal;
}

/** The outcome of one readiness check, as `tributary preflight` prints it. */
export interface Finding {
  /** Stable id, e.g. `binlog_format`. */
  readonly check: string;
  /** Checklist section it comes from, e.g. `1. MySQL Configuration`. */
  readonly section: string;
  readonly title: string;
  /** FAIL stops a pipeline from starting; WARN is worth fixing before production; INFO is evidence only. */
  readonly status: 'PASS' | 'WARN' | 'FAIL' | 'INFO';
  /** What was seen, never a secret. */
  readonly evidence: string;
  /** The exact fix, when the status is not PASS. */
  readonly fix?: string;
  /**
   * `resnapshot`: the source's log for the saved position is gone (an invalidated slot). `tributary preflight`
   * reports it as FAIL, but a run does not stop on it: capture meets the same loss and raises
   * SOURCE_HISTORY_LOST, which a full refresh (or auto_full_refresh) resolves.
   */
  readonly recovery?: 'resnapshot';
}

export interface ReadinessContext {
  readonly selection: TableSelection;
  /** Inputs of the checklist's retention formula: 2 × (downtime + pipeline duration + buffer). */
  readonly retention: {
    readonly maxDowntimeHours: number;
    readonly maxPipelineHours: number;
    readonly bufferHours: number;
  };
  readonly signal: AbortSignal;
}

/**
 * A change source. Every method that does I/O takes an AbortSignal; every failure is a TributaryError
 * classified by the adapter (see `retry`), so callers never interpret driver errors.
 */
export interface SourceConnector extends AsyncDisposable {
  /** Runs the production checklist's source checks (`tributary preflight`, and before every run). */
  checkReadiness(context: ReadinessContext): Promise<readonly Finding[]>;

  /** Human-readable server identity, e.g. `MariaDB 10.11.6`. */
  describe(signal: AbortSignal): Promise<string>;

  /** Resolves the selection to table schemas, with Delta types and primary keys. Fails on unknown tables. */
  listTables(selection: TableSelection, signal: AbortSignal): Promise<readonly TableSchema[]>;

  /** Names of the base tables of one source schema (`SHOW TABLES IN <db> USING CONNECTION`). */
  tableNames(schema: string, signal: AbortSignal): Promise<readonly string[]>;

  /**
   * The source's statistics-based row count estimate of each table, by `schema.table`, for snapshot progress
   * (an ETA). Tables without statistics are absent. Cheap: never counts rows.
   */
  estimateRows(tables: readonly TableId[], signal: AbortSignal): Promise<ReadonlyMap<string, number>>;

  /** The source's current log position: what a catch-up run reads up to. */
  readHead(signal: AbortSignal): Promise<Position>;

  /**
   * Reads every row of the tables from one consistent point of the source, in primary-key order per table.
   * Every batch carries that point's position, so streaming from it afterwards neither misses nor repeats a
   * change. Batches have origin `snapshot` and events of kind `read`.
   */
  snapshot(tables: readonly TableSchema[], options: SnapshotOptions): AsyncIterable<ChangeBatch>;

  /**
   * Reads the log from `from` (exclusive: the position after the last change already captured). Yields one
   * batch per source transaction (`complete: true`), with the position after its commit. Throws a
   * TributaryError with retry `resnapshot` when the log at `from` is gone.
   */
  stream(from: Position, options: StreamOptions): AsyncIterable<ChangeBatch>;

  /**
   * Everything up to and including `position` is durable in staging. Capture calls this after each sealed
   * segment. A source whose server keeps the log for this reader (a PostgreSQL replication slot) may now let
   * the server release that part of it, and must never release more: a crash after a release resumes from
   * the last sealed segment, which needs everything after it. A source whose log is kept by the server's own
   * retention (the MySQL binlog) has nothing to do.
   */
  acknowledge(position: Position): void;

  /**
   * How much log lies between two positions of this source, in the source's own unit (bytes of WAL,
   * transactions of a GTID binlog, bytes within one binlog file), so that a catch-up can say how far along it
   * is. Undefined when the positions do not say (a binlog without GTIDs across files). Pure: no round trip.
   */
  logDistance?(from: Position, to: Position): number | undefined;
}

/**
 * The configured connections, as `tributary sql` sees them (`DESCRIBE CONNECTION`, `SHOW TABLES ... USING
 * CONNECTION`). Supplied by the composition root; the SQL engine never opens a source itself.
 */
export interface ConnectionDirectory {
  /** Connection names, sorted. */
  names(): readonly string[];
  /** Key/value facts about a connection. Never a password: a secret reference is described, not resolved. */
  describe(name: string): ReadonlyArray<{ readonly key: string; readonly value: string }>;
  /** The base tables of `schema` at the connection's source. */
  tableNames(name: string, schema: string, signal: AbortSignal): Promise<readonly string[]>;
}
