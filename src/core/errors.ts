/**
 * Every failure a user can see is a {@link TributaryError}: a stable code, a message that names the problem,
 * a hint that names the fix, and a retry class that the supervisor acts on without parsing messages.
 *
 * Errors are classified once, in the adapter that understands them (the MySQL source knows what errno 1045
 * means; the pipeline does not). `docs/error-codes.md` is generated from {@link ERROR_CODES}.
 */

/** How a supervisor should react to an error. */
export type RetryClass =
  /** Try again later with backoff: the network, a restarting server, a lock. */
  | 'transient'
  /** The source's history is gone; only a fresh snapshot can recover. */
  | 'resnapshot'
  /** A human must change something (config, credentials, grants) first. */
  | 'fatal';

/** Each code with a one-line meaning and its default retry class. */
export const ERROR_CODES = {
  CONFIG_NOT_FOUND: { retry: 'fatal', doc: 'The configuration file does not exist.' },
  CONFIG_INVALID: {
    retry: 'fatal',
    doc: 'The configuration file is not valid YAML or does not match the schema.',
  },
  CONFIG_PLAINTEXT_SECRET: {
    retry: 'fatal',
    doc: 'A password is written in plain text instead of a secret reference.',
  },
  SECRET_NOT_FOUND: {
    retry: 'fatal',
    doc: 'A {{secrets/scope/key}} reference names a secret that is not stored.',
  },
  SECRET_SCOPE_NOT_FOUND: { retry: 'fatal', doc: 'A secret scope does not exist.' },
  SECRET_SCOPE_EXISTS: { retry: 'fatal', doc: 'A secret scope already exists.' },
  SECRET_INVALID_NAME: {
    retry: 'fatal',
    doc: 'A secret scope or key name contains characters that are not allowed.',
  },
  PIPELINE_NOT_FOUND: { retry: 'fatal', doc: 'The named pipeline is not defined in the configuration.' },
  SOURCE_UNREACHABLE: { retry: 'transient', doc: 'The source database cannot be reached over the network.' },
  SOURCE_TLS_FAILED: {
    retry: 'fatal',
    doc: 'The TLS handshake with the source failed or its certificate was not trusted.',
  },
  SOURCE_AUTH_FAILED: { retry: 'fatal', doc: 'The source database rejected the user name or password.' },
  SOURCE_PRIVILEGE_MISSING: { retry: 'fatal', doc: 'The CDC user lacks a privilege that capture needs.' },
  SOURCE_MISCONFIGURED: {
    retry: 'fatal',
    doc: 'A source server setting (binlog format, row image, ...) prevents capture.',
  },
  SOURCE_TABLE_NOT_FOUND: { retry: 'fatal', doc: 'A configured source table or schema does not exist.' },
  SOURCE_NO_PRIMARY_KEY: { retry: 'fatal', doc: 'A table has no primary key and none is configured.' },
  SOURCE_UNSUPPORTED_TYPE: { retry: 'fatal', doc: 'A source column type has no Delta Lake mapping.' },
  SOURCE_HISTORY_LOST: {
    retry: 'resnapshot',
    doc: 'The saved log position is no longer available at the source.',
  },
  SOURCE_SCHEMA_CHANGED: {
    retry: 'fatal',
    doc: "A source table changed shape in a way its bronze table cannot follow: a type Delta cannot widen to, a new primary key, or any change under schema_evolution: fail. Under evolve the pipeline asks for the table's full refresh itself (the error is then transient and the next round replaces the table); otherwise the table stops until `tributary refresh <pipeline> --table <t>`.",
  },
  SOURCE_QUERY_FAILED: { retry: 'transient', doc: 'A query against the source failed.' },
  RUN_INTERRUPTED: {
    retry: 'transient',
    doc: 'A run stopped mid-round without a clean shutdown (killed, crashed, power lost). Recorded in system.lakeflow.pipeline_events by the next round, which took over its lock and resumed from the last durable position: nothing was lost or applied twice.',
  },
  STAGING_CORRUPT: { retry: 'fatal', doc: 'A staged segment or its manifest is unreadable.' },
  STAGING_RETENTION_EXCEEDED: {
    retry: 'transient',
    doc: "Staged segments older than the gateway's staging_retention_days are still waiting for a pipeline that has not applied them. They are kept (nothing is lost), so staging grows until that pipeline runs: run it, or fix the table that keeps failing in it. Recorded in system.lakeflow.pipeline_events under the pipeline that is behind.",
  },
  STAGING_FULL: {
    retry: 'transient',
    doc: 'The staging volume is out of space (ENOSPC) or over its quota (EDQUOT). Capture stopped before sealing the segment it was writing: nothing half-written is left and the gateway position did not advance. Free space or move the volume; the next run resumes from the last sealed segment.',
  },
  DELTA_PROTOCOL: {
    retry: 'fatal',
    doc: 'A Delta table uses a protocol feature this reader does not support.',
  },
  DELTA_CORRUPT: { retry: 'fatal', doc: 'A Delta table log is missing, unreadable or inconsistent.' },
  DELTA_CONFLICT: { retry: 'transient', doc: 'A concurrent writer committed a conflicting change.' },
  DELTA_STORAGE_FULL: {
    retry: 'transient',
    doc: 'The storage of a Delta table is out of space (ENOSPC) or over its quota (EDQUOT). Nothing was committed: the table stays readable at its previous version, and a data file left behind is unreferenced (VACUUM removes it).',
  },
  DELTA_TABLE_NOT_FOUND: { retry: 'fatal', doc: 'No Delta table exists at the given location.' },
  SQL_ERROR: { retry: 'fatal', doc: 'A SQL statement failed to parse or execute.' },
  SQL_UNKNOWN_TABLE: {
    retry: 'fatal',
    doc: 'A SQL statement names a table that does not exist in the warehouse.',
  },
  DEPENDENCY_MISSING: {
    retry: 'fatal',
    doc: 'A program Tributary needs (such as mariadbd) is not installed.',
  },
  USAGE: { retry: 'fatal', doc: 'The command line is not valid.' },
  INTERNAL: { retry: 'fatal', doc: 'A bug in Tributary: please report it with the message.' },
} as const satisfies Record<string, { retry: RetryClass; doc: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface TributaryErrorOptions {
  /** What the user should do about it. Printed on its own line. */
  hint?: string;
  /** Overrides the code's default retry class. */
  retry?: RetryClass;
  cause?: unknown;
}

export class TributaryError extends Error {
  override readonly name = 'TributaryError';
  readonly code: ErrorCode;
  readonly retry: RetryClass;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: TributaryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retry = options.retry ?? ERROR_CODES[code].retry;
    this.hint = options.hint;
  }
}

export function isTributaryError(error: unknown): error is TributaryError {
  return error instanceof TributaryError;
}

/** The message of anything thrown, for wrapping foreign errors. */
export function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
