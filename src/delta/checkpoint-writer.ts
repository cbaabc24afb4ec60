/**
 * Writing classic single-file checkpoints (`<version>.checkpoint.parquet`) and `_last_checkpoint`.
 *
 * The content is the table state at the version, one action per row, each action a nullable struct column,
 * in the layout Spark 3.5 writes (DIGEST §6): `txn`, `add` (stats as a JSON string, partitionValues as a map),
 * `remove` (tombstones still inside `delta.deletedFileRetentionDuration`), `metaData`, `protocol`,
 * `domainMetadata`, plus `checkpointMetadata` when the table supports v2 checkpoints (a classic-named
 * checkpoint with v2 content is valid there). Live files, protocol, metadata and domains come from the reader's
 * `loadSnapshot`, so a checkpoint never disagrees with what Tributary itself reads; txns and tombstones, which
 * the snapshot does not expose, come from a replay here.
 *
 * DuckDB writes the Parquet: the rows go to a temporary NDJSON file, and `COPY (SELECT ... FROM read_json(...,
 * columns = {typed structs}))` turns it into Parquet with real STRUCT/MAP/LIST columns. The Parquet is written
 * under a temp name, checked, fsynced and renamed, so a reader never sees a partial checkpoint; a racing
 * writer's rename of the same version only replaces it with an equivalent one.
 */
import { randomUUID } from 'node:crypto';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { messageOf, TributaryError } from '../core/errors.js';
import {
  type AddFile,
  type DeletionVectorDescriptor,
  deletionVectorId,
  type RawAction,
  type RemoveFile,
  type Txn,
} from './actions.js';
import { readParquetActions, sqlString, withConnection } from './duckdb.js';
import { writeLastCheckpoint } from './last-checkpoint.js';
import {
  type CheckpointFiles,
  canonicalFilePath,
  checkpointFileName,
  LOG_DIR,
  listLogFiles,
  parseLogText,
  readCommitActions,
} from './log-files.js';
import { loadSnapshot, type Snapshot } from './snapshot.js';
import { isFeatureSupported } from './table-features.js';
import { deletedFileRetentionMs, transactionRetentionMs } from './table-properties.js';

export interface WriteCheckpointOptions {
  /** The snapshot at `version` when the caller has it (saves a replay). */
  snapshot?: Snapshot;
  /** "Now" in ms, for tombstone and txn expiry. Default `Date.now()`. */
  now?: number;
}

export interface CheckpointResult {
  version: number;
  /** Absolute path of the checkpoint file. */
  path: string;
  /** Rows (actions) written: the `size` of `_last_checkpoint`. */
  size: number;
  sizeInBytes: number;
  numOfAddFiles: number;
  /** Tombstones kept. */
  numOfRemoveFiles: number;
}

const DV =
  'STRUCT(storageType VARCHAR, pathOrInlineDv VARCHAR, "offset" INTEGER, sizeInBytes INTEGER, cardinality BIGINT, maxRowIndex BIGINT)';
const STRING_MAP = 'MAP(VARCHAR, VARCHAR)';

/** Column name → DuckDB type, in Spark's column order. Field order inside each struct is Spark's too. */
const COLUMNS: ReadonlyArray<[string, string]> = [
  ['txn', 'STRUCT(appId VARCHAR, "version" BIGINT, lastUpdated BIGINT)'],
  [
    'add',
    `STRUCT(path VARCHAR, partitionValues ${STRING_MAP}, size BIGINT, modificationTime BIGINT, dataChange BOOLEAN, tags ${STRING_MAP}, deletionVector ${DV}, baseRowId BIGINT, defaultRowCommitVersion BIGINT, stats VARCHAR)`,
  ],
  [
    'remove',
    `STRUCT(path VARCHAR, deletionTimestamp BIGINT, dataChange BOOLEAN, extendedFileMetadata BOOLEAN, partitionValues ${STRING_MAP}, size BIGINT, deletionVector ${DV}, baseRowId BIGINT, defaultRowCommitVersion BIGINT)`,
  ],
  [
    'metaData',
    `STRUCT(id VARCHAR, "name" VARCHAR, description VARCHAR, format STRUCT(provider VARCHAR, "options" ${STRING_MAP}), schemaString VARCHAR, partitionColumns VARCHAR[], "configuration" ${STRING_MAP}, createdTime BIGINT)`,
  ],
  [
    'protocol',
    'STRUCT(minReaderVersion INTEGER, minWriterVersion INTEGER, readerFeatures VARCHAR[], writerFeatures VARCHAR[])',
  ],
  ['domainMetadata', 'STRUCT(domain VARCHAR, "configuration" VARCHAR, removed BOOLEAN)'],
];
const CHECKPOINT_METADATA: [string, string] = [
  'checkpointMetadata',
  `STRUCT("version" BIGINT, tags ${STRING_MAP})`,
];

/** Txns and tombstones at a version: the parts of the state `Snapshot` does not expose. */
interface SideState {
  txns: Map<string, Txn>;
  tombstones: Map<string, RemoveFile>;
}

function fileKey(tableRoot: string, p: string, dv: DeletionVectorDescriptor | undefined): string {
  return `${canonicalFilePath(tableRoot, p)}\u0000${deletionVectorId(dv)}`;
}

async function readCheckpointActions(logDir: string, checkpoint: CheckpointFiles): Promise<RawAction[]> {
  const files = checkpoint.names.map((n) => path.join(logDir, n));
  const first = files[0] as string;
  const actions = first.endsWith('.json')
    ? parseLogText(await readFile(first, 'utf8'), first)
    : await readParquetActions(files);
  const sidecars = actions
    .map((a) => (a.sidecar as { path?: unknown } | undefined)?.path)
    .filter((p): p is string => typeof p === 'string')
    .map((p) => canonicalFilePath(path.join(logDir, '_sidecars'), p));
  return sidecars.length === 0 ? actions : [...actions, ...(await readParquetActions(sidecars))];
}

/**
 * Replays txns and tombstones up to `version` from the newest usable checkpoint (falling back to older ones
 * and finally to version 0, like the reader). Within a commit removes apply before adds, so a file removed and
 * re-added in one commit is live and has no tombstone.
 */
async function replaySideState(tableRoot: string, version: number): Promise<SideState> {
  const listing = await listLogFiles(tableRoot);
  const candidates: Array<CheckpointFiles | undefined> = [
    ...listing.checkpoints.filter((c) => c.version <= version),
    undefined,
  ];
  let lastError: unknown;
  for (const candidate of candidates) {
    const start = candidate ? candidate.version + 1 : 0;
    let contiguous = true;
    for (let v = start; v <= version && contiguous; v++) contiguous = listing.commits.has(v);
    if (!contiguous) continue;
    const state: SideState = { txns: new Map(), tombstones: new Map() };
    if (candidate) {
      try {
        for (const action of await readCheckpointActions(listing.logDir, candidate)) {
          const txn = action.txn as Txn | undefined;
          const remove = action.remove as RemoveFile | undefined;
          if (txn && typeof txn.appId === 'string') state.txns.set(txn.appId, txn);
          if (remove && typeof remove.path === 'string') {
            state.tombstones.set(fileKey(tableRoot, remove.path, remove.deletionVector), remove);
          }
        }
      } catch (error) {
        lastError = error;
        continue;
      }
    }
    for (let v = start; v <= version; v++) {
      const actions = await readCommitActions(tableRoot, v);
      for (const action of actions) {
        const remove = action.remove as RemoveFile | undefined;
        const txn = action.txn as Txn | undefined;
        if (remove && typeof remove.path === 'string') {
          state.tombstones.set(fileKey(tableRoot, remove.path, remove.deletionVector), remove);
        } else if (txn && typeof txn.appId === 'string') {
          state.txns.set(txn.appId, txn);
        }
      }
      for (const action of actions) {
        const add = action.add as AddFile | undefined;
        if (add && typeof add.path === 'string')
          state.tombstones.delete(fileKey(tableRoot, add.path, add.deletionVector));
      }
    }
    return state;
  }
  throw new TributaryError(
    'DELTA_CORRUPT',
    `Cannot replay ${tableRoot} to version ${version} for a checkpoint${lastError ? `: ${messageOf(lastError)}` : ''}`,
    { cause: lastError },
  );
}

const orNull = <T>(v: T | undefined): T | null => (v === undefined ? null : v);

function dvRow(dv: DeletionVectorDescriptor | undefined): Record<string, unknown> | null {
  if (!dv) return null;
  return {
    storageType: dv.storageType,
    pathOrInlineDv: dv.pathOrInlineDv,
    offset: orNull(dv.offset),
    sizeInBytes: dv.sizeInBytes,
    cardinality: dv.cardinality,
    maxRowIndex: orNull(dv.maxRowIndex),
  };
}

/** The checkpoint rows (one `{column: struct}` object per action) for a state. */
function checkpointRows(
  snapshot: Snapshot,
  side: SideState,
  now: number,
): { rows: object[]; adds: number; removes: number } {
  const { protocol, metadata } = snapshot;
  const rows: object[] = [];
  // Readers that stop at the first protocol/metaData they see find them at the top.
  rows.push({
    protocol: {
      minReaderVersion: protocol.minReaderVersion,
      minWriterVersion: protocol.minWriterVersion,
      // Non-null exactly when the version demands the list (reader 3 / writer 7).
      readerFeatures: protocol.minReaderVersion >= 3 ? (protocol.readerFeatures ?? []) : null,
      writerFeatures: protocol.minWriterVersion >= 7 ? (protocol.writerFeatures ?? []) : null,
    },
  });
  rows.push({
    metaData: {
      id: metadata.id,
      name: orNull(metadata.name),
      description: orNull(metadata.description),
      format: { provider: metadata.format.provider, options: metadata.format.options ?? {} },
      schemaString: metadata.schemaString,
      partitionColumns: metadata.partitionColumns,
      configuration: metadata.configuration,
      createdTime: orNull(metadata.createdTime),
    },
  });
  if (isFeatureSupported(protocol, 'v2Checkpoint'))
    rows.push({ checkpointMetadata: { version: snapshot.version, tags: null } });
  const txnRetention = transactionRetentionMs(metadata.configuration);
  for (const txn of side.txns.values()) {
    if (txnRetention !== undefined && txn.lastUpdated !== undefined && txn.lastUpdated < now - txnRetention)
      continue;
    rows.push({ txn: { appId: txn.appId, version: txn.version, lastUpdated: orNull(txn.lastUpdated) } });
  }
  for (const dm of snapshot.domainMetadata.values()) {
    rows.push({ domainMetadata: { domain: dm.domain, configuration: dm.configuration, removed: false } });
  }
  for (const add of snapshot.files) {
    rows.push({
      add: {
        path: add.path,
        partitionValues: add.partitionValues ?? {},
        size: add.size,
        modificationTime: add.modificationTime,
        // Spark writes checkpoint adds as dataChange=false: a checkpoint restates, it changes nothing.
        dataChange: false,
        tags: orNull(add.tags),
        deletionVector: dvRow(add.deletionVector),
        baseRowId: orNull(add.baseRowId),
        defaultRowCommitVersion: orNull(add.defaultRowCommitVersion),
        stats: orNull(add.stats),
      },
    });
  }
  // Without a deletionTimestamp a tombstone counts as removed at the epoch (Spark's rule): long expired.
  const minTimestamp = now - deletedFileRetentionMs(metadata.configuration);
  let removes = 0;
  for (const remove of side.tombstones.values()) {
    if ((remove.deletionTimestamp ?? 0) <= minTimestamp) continue;
    removes++;
    rows.push({
      remove: {
        path: remove.path,
        deletionTimestamp: orNull(remove.deletionTimestamp),
        dataChange: false,
        extendedFileMetadata: orNull(remove.extendedFileMetadata),
        partitionValues: orNull(remove.partitionValues),
        size: orNull(remove.size),
        deletionVector: dvRow(remove.deletionVector),
        baseRowId: orNull(remove.baseRowId),
        defaultRowCommitVersion: orNull(remove.defaultRowCommitVersion),
      },
    });
  }
  return { rows, adds: snapshot.files.length, removes };
}

async function writeNdjson(file: string, rows: readonly object[]): Promise<void> {
  const handle = await open(file, 'wx');
  try {
    for (let i = 0; i < rows.length; i += 1000) {
      await handle.write(
        `${rows
          .slice(i, i + 1000)
          .map((r) => JSON.stringify(r))
          .join('\n')}\n`,
      );
    }
  } finally {
    await handle.close();
  }
}

async function fsyncPath(p: string, flags: string): Promise<void> {
  const handle = await open(p, flags);
  try {
    await handle.sync();
  } catch (error) {
    // Some file systems refuse fsync on directories; the rename is still atomic there.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw error;
  } finally {
    await handle.close();
  }
}

/**
 * Writes the classic checkpoint of `tableRoot` at `version` (which must be committed) and then points
 * `_last_checkpoint` at it (with `version`, `size`, `sizeInBytes`, `numOfAddFiles`, `checksum`).
 *
 * @throws whatever reading the table throws (`DELTA_PROTOCOL` for a table the reader cannot read, ...), and
 *   `DELTA_CORRUPT` when DuckDB cannot write or read back the file. Nothing is left behind on failure.
 */
export async function writeCheckpoint(
  tableRoot: string,
  version: number,
  options: WriteCheckpointOptions = {},
): Promise<CheckpointResult> {
  const root = path.resolve(tableRoot);
  const snapshot = options.snapshot ?? (await loadSnapshot(root, { version }));
  if (snapshot.version !== version) {
    throw new TributaryError(
      'INTERNAL',
      `writeCheckpoint(${version}) was given the snapshot of version ${snapshot.version}`,
    );
  }
  const now = options.now ?? Date.now();
  const side = await replaySideState(root, version);
  const { rows, adds, removes } = checkpointRows(snapshot, side, now);

  const logDir = path.join(root, LOG_DIR);
  const finalName = checkpointFileName(version);
  const finalPath = path.join(logDir, finalName);
  const id = randomUUID();
  // Dot-prefixed: no reader or listing takes them for log entries if we crash before cleaning up.
  const jsonTemp = path.join(logDir, `.${finalName}.${id}.ndjson.tmp`);
  const parquetTemp = path.join(logDir, `.${finalName}.${id}.tmp`);
  const columns = isFeatureSupported(snapshot.protocol, 'v2Checkpoint')
    ? [...COLUMNS, CHECKPOINT_METADATA]
    : COLUMNS;
  const columnSpec = `{${columns.map(([name, type]) => `${sqlString(name)}: ${sqlString(type)}`).join(', ')}}`;
  try {
    await writeNdjson(jsonTemp, rows);
    await withConnection(async (connection) => {
      const source = `read_json(${sqlString(jsonTemp)}, format = 'newline_delimited', columns = ${columnSpec}, maximum_object_size = 268435456)`;
      const select = columns.map(([name]) => `"${name}"`).join(', ');
      await connection.run(
        `COPY (SELECT ${select} FROM ${source}) TO ${sqlString(parquetTemp)} (FORMAT parquet, COMPRESSION snappy)`,
      );
      const check = await connection.runAndReadAll(
        `SELECT count(*)::BIGINT FROM read_parquet(${sqlString(parquetTemp)})`,
      );
      const written = Number(check.getRowsJS()[0]?.[0]);
      if (written !== rows.length) throw new Error(`wrote ${written} rows, expected ${rows.length}`);
    });
    await fsyncPath(parquetTemp, 'r');
    await rename(parquetTemp, finalPath);
    await fsyncPath(logDir, 'r');
  } catch (error) {
    if (error instanceof TributaryError) throw error;
    throw new TributaryError(
      'DELTA_CORRUPT',
      `Cannot write Delta checkpoint ${finalPath}: ${messageOf(error)}`,
      {
        cause: error,
        retry: 'transient',
      },
    );
  } finally {
    await unlink(jsonTemp).catch(() => undefined);
    await unlink(parquetTemp).catch(() => undefined);
  }
  const { size: sizeInBytes } = await stat(finalPath);
  await writeLastCheckpoint(logDir, { version, size: rows.length, sizeInBytes, numOfAddFiles: adds });
  return {
    version,
    path: finalPath,
    size: rows.length,
    sizeInBytes,
    numOfAddFiles: adds,
    numOfRemoveFiles: removes,
  };
}
