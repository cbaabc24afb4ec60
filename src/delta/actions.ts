/**
 * Delta Lake log actions, shaped exactly as they appear in the JSON commit files (`_delta_log/<v>.json`, one
 * action per line, `{"<actionName>": {...}}`). Field names follow the protocol; optional fields are optional
 * because older writers (Delta 0.x, delta-rs, DLT) omit them. Unknown fields read from a log are kept on the
 * objects (the protocol requires readers to ignore, not reject, them), so these types describe the minimum.
 *
 * Numbers: the protocol's `long` fields (size, modificationTime, versions) fit in a double for every realistic
 * table (2^53 bytes / ms), so they are plain `number`s.
 */

/** `protocol`: the reader/writer versions and, for reader 3 / writer 7, the explicit table features. */
export interface Protocol {
  minReaderVersion: number;
  minWriterVersion: number;
  /** Present iff `minReaderVersion === 3`. */
  readerFeatures?: string[];
  /** Present iff `minWriterVersion === 7`. */
  writerFeatures?: string[];
}

/** `metaData`: replaces the whole table metadata. `schemaString` is Spark's JSON schema (see `schema.ts`). */
export interface Metadata {
  /** A UUID; stable for the life of the table. */
  id: string;
  name?: string;
  description?: string;
  format: { provider: string; options: Record<string, string> };
  schemaString: string;
  partitionColumns: string[];
  /** Table properties (`delta.appendOnly`, `delta.enableChangeDataFeed`, ...). */
  configuration: Record<string, string>;
  /** Milliseconds since the epoch. */
  createdTime?: number;
}

/** A deletion vector descriptor (`storageType` u = relative UUID file, p = absolute path, i = inline). */
export interface DeletionVectorDescriptor {
  storageType: string;
  pathOrInlineDv: string;
  offset?: number;
  sizeInBytes: number;
  cardinality: number;
  maxRowIndex?: number;
}

/** `add`: a data file that becomes part of the table. */
export interface AddFile {
  /** RFC 2396 URI, percent-encoded: relative to the table root, or absolute (`file:/...`). */
  path: string;
  /** Partition column → value serialised as a string; `null` for SQL NULL. */
  partitionValues: Record<string, string | null>;
  /** Bytes. */
  size: number;
  /** Milliseconds since the epoch. */
  modificationTime: number;
  /** `false` when the commit only rearranges data (OPTIMIZE); streaming and CDF readers skip such files. */
  dataChange: boolean;
  /** Per-file statistics as a JSON string (see `stats.ts`). */
  stats?: string;
  tags?: Record<string, string>;
  deletionVector?: DeletionVectorDescriptor;
  baseRowId?: number;
  defaultRowCommitVersion?: number;
  clusteringProvider?: string;
}

/** `remove`: a logical delete of a file (a tombstone; VACUUM deletes the bytes later). */
export interface RemoveFile {
  path: string;
  /** Milliseconds since the epoch. */
  deletionTimestamp?: number;
  dataChange: boolean;
  /** `true` when `partitionValues` and `size` are present (Spark writes them; CDF readers need them). */
  extendedFileMetadata?: boolean;
  partitionValues?: Record<string, string | null>;
  size?: number;
  stats?: string;
  tags?: Record<string, string>;
  deletionVector?: DeletionVectorDescriptor;
  baseRowId?: number;
  defaultRowCommitVersion?: number;
}

/** `cdc`: a change-data file under `_change_data/` (rows carry `_change_type`). */
export interface AddCDCFile {
  path: string;
  partitionValues: Record<string, string | null>;
  size: number;
  dataChange: boolean;
  tags?: Record<string, string>;
}

/** `txn`: the last source offset an application committed; used for exactly-once writes. */
export interface Txn {
  appId: string;
  version: number;
  /** Milliseconds since the epoch. */
  lastUpdated?: number;
}

/** `domainMetadata`: named configuration owned by a feature (`delta.*`) or a user; `removed` is a tombstone. */
export interface DomainMetadata {
  domain: string;
  configuration: string;
  removed: boolean;
}

/**
 * `commitInfo`: free-form provenance. Spark writes `timestamp, operation, operationParameters, readVersion,
 * isolationLevel, isBlindAppend, operationMetrics, engineInfo, txnId`; `inCommitTimestamp` when ICT is on.
 */
export type CommitInfo = Record<string, unknown> & {
  timestamp?: number;
  inCommitTimestamp?: number;
  operation?: string;
};

/**
 * An action as read from a log file or checkpoint, before validation: at most one key is set in practice.
 * Unknown action names are ignored by replay.
 */
export interface RawAction {
  add?: unknown;
  remove?: unknown;
  metaData?: unknown;
  protocol?: unknown;
  txn?: unknown;
  domainMetadata?: unknown;
  commitInfo?: unknown;
  cdc?: unknown;
  sidecar?: unknown;
  checkpointMetadata?: unknown;
}

/** One line of a commit file. */
export type Action =
  | { protocol: Protocol }
  | { metaData: Metadata }
  | { add: AddFile }
  | { remove: RemoveFile }
  | { txn: Txn }
  | { commitInfo: CommitInfo }
  | { cdc: AddCDCFile }
  | { domainMetadata: DomainMetadata };

/**
 * The key that identifies a logical file during log replay: the same path may be live several times over its
 * history with different deletion vectors, and a DV update is `remove(path, oldDv)` + `add(path, newDv)`.
 */
export function deletionVectorId(dv: DeletionVectorDescriptor | undefined | null): string {
  if (!dv) return '';
  return `${dv.storageType}${dv.pathOrInlineDv}${dv.offset === undefined || dv.offset === null ? '' : `@${dv.offset}`}`;
}
