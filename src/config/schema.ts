/**
 * The shape of `tributary.yaml`, modelled on Databricks Lakeflow Connect pipeline definitions: connections
 * (how to reach a source), ingestion gateways (a binlog reader staging changes into a volume) and ingestion
 * pipelines (which source tables land in which bronze tables).
 *
 * Objects are strict so that a misspelt key is an error rather than a silently ignored setting. Only the
 * structure is checked here; cross-references and plaintext passwords are checked in `load-config.ts`,
 * which also turns zod issues into user-facing messages.
 */
import * as z from 'zod';
import { RESERVED_CHANGE_FEED_COLUMNS } from '../delta/table-features.js';

/** Catalog, schema, table and volume names, and the names of connections, gateways and pipelines. */
export const IDENTIFIER_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/;

const identifierRule = 'letters, digits and "_", not starting with a digit';

export const identifier = z.string({ error: 'expected a name' }).regex(IDENTIFIER_PATTERN, {
  error: (issue) => `${JSON.stringify(issue.input)} is not a valid name (${identifierRule})`,
});

/**
 * MySQL names are looser than destination identifiers (quoted, they may hold "-", "$", spaces, non-ASCII and
 * leading digits), so source names only exclude what can never name a MySQL database or table.
 */
const sourceName = z
  .string({ error: 'expected a name' })
  .min(1, { error: 'must not be empty' })
  .max(64, { error: 'must be at most 64 characters (the MySQL limit)' })
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is rejected
  .regex(/^[^\u0000-\u001f`/\\.]*[^\u0000-\u001f`/\\. ]$/, {
    error: 'must not contain control characters, "`", "/", "\\" or "." and must not end with a space',
  });

const columnList = z.array(z.string().min(1, { error: 'a column name must not be empty' }), {
  error: 'expected a list of column names',
});

const scdType = z.enum(['SCD_TYPE_1', 'SCD_TYPE_2'], { error: 'must be SCD_TYPE_1 or SCD_TYPE_2' });

const tableProperties = z.record(
  z
    .string()
    .regex(/^[A-Za-z0-9_.]+$/, { error: 'must be a property name such as delta.enableDeletionVectors' }),
  z.string({ error: 'expected a string value, e.g. "true"' }),
  {
    error: 'expected a map of Delta table properties',
  },
);

/** The bronze column holding each row's source commit time; `_commit_timestamp` unless configured. */
export const DEFAULT_COMMIT_TIMESTAMP_COLUMN = '_commit_timestamp';

const commitTimestampColumn = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'must be a column name made of letters, digits and "_"' });

/**
 * A bronze table with the change data feed on cannot keep the source commit time in `_commit_timestamp`: the
 * feed reserves that name for its own column, and Delta engines refuse such a table. Found here rather than
 * when the table is created, rounds later.
 */
function checkChangeFeed(
  value: {
    table_properties?: Record<string, string> | undefined;
    commit_timestamp_column?: string | undefined;
  },
  ctx: z.RefinementCtx,
): void {
  const cdf = Object.entries(value.table_properties ?? {}).some(
    ([k, v]) => k === 'delta.enableChangeDataFeed' && v.trim().toLowerCase() === 'true',
  );
  const column = value.commit_timestamp_column ?? DEFAULT_COMMIT_TIMESTAMP_COLUMN;
  if (cdf && (RESERVED_CHANGE_FEED_COLUMNS as readonly string[]).includes(column.toLowerCase())) {
    ctx.addIssue({
      code: 'custom',
      path: ['commit_timestamp_column'],
      message: `delta.enableChangeDataFeed reserves the column name ${column} for the change feed's own column; set commit_timestamp_column to another name, e.g. _source_commit_timestamp`,
    });
  }
}

const tableConfiguration = z
  .strictObject({
    scd_type: scdType.optional(),
    table_properties: tableProperties.optional(),
    commit_timestamp_column: commitTimestampColumn.optional(),
    primary_keys: columnList.min(1, { error: 'must list at least one column' }).optional(),
    include_columns: columnList.min(1, { error: 'must list at least one column' }).optional(),
    exclude_columns: columnList.optional(),
  })
  .superRefine((value, ctx) => {
    checkChangeFeed(value, ctx);
    // Which one wins would be a guess, and a column in both lists is almost certainly a mistake.
    if (value.include_columns !== undefined && value.exclude_columns !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['exclude_columns'],
        message: 'cannot be combined with include_columns; use one or the other',
      });
    }
  });

/** Per-table options apply to one table; on a whole schema they would apply to tables that differ. */
const schemaTableConfiguration = z
  .strictObject({
    scd_type: scdType.optional(),
    table_properties: tableProperties.optional(),
    commit_timestamp_column: commitTimestampColumn.optional(),
  })
  .superRefine(checkChangeFeed);

const tableObject = z.strictObject({
  source_catalog: sourceName.optional(),
  source_schema: sourceName,
  source_table: sourceName,
  destination_catalog: identifier,
  destination_schema: identifier,
  destination_table: identifier.optional(),
  table_configuration: tableConfiguration.optional(),
});

const schemaObject = z.strictObject({
  source_catalog: sourceName.optional(),
  source_schema: sourceName,
  destination_catalog: identifier,
  destination_schema: identifier,
  table_configuration: schemaTableConfiguration.optional(),
});

/**
 * One entry of `objects`: exactly one of `table` or `schema`. A zod union would report both branches' errors
 * for a typo in either; checking "exactly one" separately keeps the message about the branch the user meant.
 */
const pipelineObject = z
  .strictObject({ table: tableObject.optional(), schema: schemaObject.optional() })
  .superRefine((value, ctx) => {
    const count = (value.table === undefined ? 0 : 1) + (value.schema === undefined ? 0 : 1);
    if (count !== 1) {
      ctx.addIssue({
        code: 'custom',
        message:
          count === 0
            ? 'expected either a "table" or a "schema" entry'
            : 'has both "table" and "schema"; write them as separate entries',
      });
    }
  });

const supportedConnectionTypes = ['mysql', 'postgresql'] as const;
const plannedConnectionTypes = ['sqlserver'];

const connectionType = z.enum(supportedConnectionTypes, {
  error: (issue) =>
    typeof issue.input === 'string' && plannedConnectionTypes.includes(issue.input)
      ? `connection type "${issue.input}" is not supported yet (supported: ${supportedConnectionTypes.join(', ')}; use mysql for MariaDB too)`
      : `must be one of: ${supportedConnectionTypes.join(', ')} (use mysql for MariaDB too)`,
});

const connection = z.strictObject({
  type: connectionType,
  host: z.string().min(1, { error: 'must not be empty' }),
  /** PostgreSQL only: a logical replication slot and its publication belong to one database. */
  database: sourceName.optional(),
  port: z
    .int({ error: 'expected a port number' })
    .min(1, { error: 'must be between 1 and 65535' })
    .max(65535, { error: 'must be between 1 and 65535' })
    .optional(),
  user: z.string().min(1, { error: 'must not be empty' }),
  // Whether it is a reference (rather than plain text) is checked in load-config.ts, which must not echo it.
  password: z.string(),
  ssl: z
    .strictObject({
      mode: z.enum(['disabled', 'required', 'verify_ca', 'verify_identity'], {
        error:
          'must be disabled, required, verify_ca or verify_identity (verify_identity is what PostgreSQL calls verify-full)',
      }),
      ca: z.string().min(1, { error: 'must name a PEM file' }).optional(),
    })
    .optional(),
  retention_policy: z
    .strictObject({
      max_downtime_hours: z
        .number({ error: 'expected hours' })
        .min(0, { error: 'must not be negative' })
        .optional(),
      max_pipeline_duration_hours: z
        .number({ error: 'expected hours' })
        .min(0, { error: 'must not be negative' })
        .optional(),
      buffer_hours: z
        .number({ error: 'expected hours' })
        .min(0, { error: 'must not be negative' })
        .optional(),
    })
    .optional(),
});

const gateway = z.strictObject({
  connection: identifier,
  storage: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$/, {
    error: (issue) =>
      `${JSON.stringify(issue.input)} is not a volume name; expected <catalog>.<schema>.<volume> (each ${identifierRule})`,
  }),
  // 0 disables replication on the server side, and the field is 32 bits wide.
  staging_retention_days: z
    .number({ error: 'expected a number of days' })
    .min(0, { error: 'must not be negative' })
    .optional(),
  snapshot_parallel_tables: z
    .int({ error: 'expected a whole number of tables' })
    .min(1, { error: 'must be between 1 and 16' })
    .max(16, { error: 'must be between 1 and 16' })
    .optional(),
  server_id: z
    .int({ error: 'expected an integer' })
    .min(1, { error: 'must be between 1 and 4294967295' })
    .max(4294967295, { error: 'must be between 1 and 4294967295' })
    .optional(),
  slot_name: z
    .string()
    .regex(/^[a-z0-9_]{1,63}$/, {
      error: 'must be 1 to 63 lower-case letters, digits or "_" (a PostgreSQL replication slot name)',
    })
    .optional(),
  publication_name: z
    .string()
    .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, {
      error: 'must be 1 to 63 letters, digits or "_", not starting with a digit',
    })
    .optional(),
});

const schemaEvolution = z.enum(['evolve', 'fail', 'ignore'], {
  error: 'must be evolve, fail or ignore',
});

const pipeline = z.strictObject({
  gateway: identifier,
  schema_evolution: schemaEvolution.optional(),
  auto_full_refresh: z.boolean({ error: 'expected true or false' }).optional(),
  schedule: z
    .union(
      [z.literal('continuous'), z.strictObject({ cron: z.string().min(1, { error: 'must not be empty' }) })],
      { error: 'expected continuous or { cron: "<expression>" }' },
    )
    .optional(),
  objects: z.array(pipelineObject).min(1, { error: 'must list at least one table or schema' }),
});

export const configFileSchema = z.strictObject({
  warehouse: z.string().min(1, { error: 'must not be empty' }),
  connections: z.record(identifier, connection).optional(),
  gateways: z.record(identifier, gateway).optional(),
  pipelines: z.record(identifier, pipeline).optional(),
});

export type ConfigFile = z.output<typeof configFileSchema>;

export type ScdType = z.output<typeof scdType>;

export interface TableConfiguration {
  /** Defaults to SCD_TYPE_1. */
  scd_type: ScdType;
  /**
   * Delta table properties set when the bronze table is created, e.g. `delta.enableDeletionVectors: "true"`
   * (merge-on-read apply) or `delta.autoOptimize.autoCompact: "true"`. Later changes go through
   * `ALTER TABLE ... SET TBLPROPERTIES`.
   */
  table_properties?: Record<string, string>;
  /**
   * The bronze column holding each row's source commit time; default `_commit_timestamp`. A table with the
   * change data feed on needs another name (the feed reserves `_commit_timestamp`). Set when the table is
   * created: a table created with another name keeps it.
   */
  commit_timestamp_column?: string;
  primary_keys?: string[];
  include_columns?: string[];
  exclude_columns?: string[];
}

export interface TableObject {
  /** PostgreSQL: the database, which must be the connection's. MySQL has no catalogs. */
  source_catalog?: string;
  source_schema: string;
  source_table: string;
  destination_catalog: string;
  destination_schema: string;
  /** Defaults to `source_table`. */
  destination_table: string;
  /** Always present: `{ scd_type: 'SCD_TYPE_1' }` when omitted. */
  table_configuration: TableConfiguration;
}

export interface SchemaObject {
  source_catalog?: string;
  source_schema: string;
  destination_catalog: string;
  destination_schema: string;
  /** Always present; only `scd_type` is allowed on a schema. */
  table_configuration: TableConfiguration;
}

/** An entry of a pipeline's `objects`, keyed exactly as in YAML. */
export type PipelineObject = { table: TableObject } | { schema: SchemaObject };

export type ConnectionType = (typeof supportedConnectionTypes)[number];

export interface ConnectionConfig {
  /** The key under `connections`. */
  name: string;
  type: ConnectionType;
  host: string;
  /** Defaults to 3306 (MySQL) or 5432 (PostgreSQL). */
  port: number;
  /** PostgreSQL: the database to capture (required there; MySQL connections have none). */
  database?: string;
  user: string;
  /** A `{{secrets/<scope>/<key>}}` reference, never the password itself; see `resolveConnectionPassword`. */
  password: string;
  /**
   * Inputs of the checklist's binlog retention formula, 2 × (downtime + pipeline duration + buffer); the
   * defaults (12 h, 1 h, 11 h) give the checklist's recommended 48 h.
   */
  retention_policy: { max_downtime_hours: number; max_pipeline_duration_hours: number; buffer_hours: number };
  /**
   * TLS to the source, as MySQL's ssl-mode: `required` encrypts without checking the certificate, `verify_ca`
   * also checks it against `ca`, `verify_identity` (PostgreSQL's verify-full) also checks the host name or IP.
   * `ca` is an absolute path (resolved against the config file's directory). Absent: no TLS.
   */
  ssl?: { mode: 'disabled' | 'required' | 'verify_ca' | 'verify_identity'; ca?: string };
}

export interface GatewayConfig {
  /** The key under `gateways`. */
  name: string;
  connection: string;
  /** `<catalog>.<schema>.<volume>`. */
  storage: string;
  /** The replica server id for binlog reading; absent when the config leaves it to be derived. */
  server_id?: number;
  /** PostgreSQL: the logical replication slot (default `tributary_<gateway>`, lower-cased). */
  slot_name?: string;
  /** PostgreSQL: the publication the slot decodes (default `tributary_<gateway>`). */
  publication_name?: string;
  /**
   * Days a staged segment is kept after every pipeline has applied it (default 25, as in Lakeflow Connect).
   * Segments not yet applied are never deleted, however old.
   */
  staging_retention_days: number;
  /**
   * MySQL/MariaDB: how many tables a snapshot reads at once, each on a connection and in a consistent
   * snapshot of its own (default 2). PostgreSQL reads its tables one after another.
   */
  snapshot_parallel_tables: number;
}

export interface PipelineConfig {
  /** The key under `pipelines`. */
  name: string;
  gateway: string;
  /**
   * What a change of a source table's columns does to its bronze table: `evolve` (default: new columns are
   * added, dropped ones kept and NULL from then on, compatible types widened), `fail` (the table stops with
   * SOURCE_SCHEMA_CHANGED until a human decides), `ignore` (the bronze schema stays as it is: new columns are
   * not added, types not widened). An incompatible change stops the table under every policy.
   */
  schema_evolution: 'evolve' | 'fail' | 'ignore';
  /**
   * When the source's log at the saved position is gone (purged binlog, dropped slot), snapshot every table
   * of the gateway again instead of stopping with SOURCE_HISTORY_LOST. Default false: a full refresh re-reads
   * everything, which an operator should choose.
   */
  auto_full_refresh: boolean;
  /**
   * How `tributary start` runs the pipeline: `continuous` (default: a round every few seconds) or
   * `{ cron: "0 * * * *" }` (a round at each time the expression names; 5 fields, or 6 with seconds).
   */
  schedule: 'continuous' | { cron: string };
  objects: PipelineObject[];
}

export interface TributaryConfig {
  /** Absolute path of the file this was read from. */
  configPath: string;
  /** Absolute root of the catalogs. */
  warehouse: string;
  connections: Record<string, ConnectionConfig>;
  gateways: Record<string, GatewayConfig>;
  pipelines: Record<string, PipelineConfig>;
}
