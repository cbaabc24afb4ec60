/**
 * Writing Delta commits: optimistic concurrency with put-if-absent on `_delta_log/<version>.json`, then the
 * post-commit work (checkpoint, log cleanup).
 *
 * Two entry points:
 * - {@link commit}: one attempt. The caller read a snapshot at version r and derived its actions; the commit
 *   creates version r+1 only if no one else did, else throws `DELTA_CONFLICT` (transient) and the caller must
 *   reload, rebuild and retry.
 * - {@link commitWithRetry}: the whole loop. `build(snapshot)` derives the actions and says what it read;
 *   on a lost race the winning commits are checked with the protocol's conflict rules
 *   (`conflict-checker.ts`): independent commits are moved on top of the winners unchanged, commits whose
 *   inputs changed are rebuilt from a fresh snapshot, and irreconcilable ones fail with `DELTA_CONFLICT`.
 *
 * Every commit is checked against the table's features (`table-features.ts`) and carries an
 * `inCommitTimestamp` when the table has in-commit timestamps enabled. After a commit whose version is a
 * multiple of `delta.checkpointInterval` (default 10) a classic checkpoint and `_last_checkpoint` are written
 * and expired log files are deleted; that work never fails the commit, which is already durable.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, mkdir, open, stat, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isTributaryError, messageOf, TributaryError } from '../core/errors.js';
import { describeStorageFull, type StorageSpace, storageFullReason } from '../core/storage-full.js';
import type { Action, CommitInfo, Metadata, Protocol } from './actions.js';
import { writeCheckpoint } from './checkpoint-writer.js';
import { checkConflict, type IsolationLevel, type ReadSet } from './conflict-checker.js';
import { cleanupExpiredLogs } from './log-cleanup.js';
import { commitFileName, LOG_DIR, latestLogVersion, listLogFiles, readCommitActions } from './log-files.js';
import { type StructType, schemaString } from './schema.js';
import { isDeltaTable, loadSnapshot, type Snapshot } from './snapshot.js';
import {
  checkCommitFeatures,
  checkWriteSupport,
  isFeatureSupported,
  protocolFor,
  type WriteSupportOptions,
} from './table-features.js';
import { checkpointInterval, expiredLogCleanupEnabled, isEnabled } from './table-properties.js';

export { commitFileName } from './log-files.js';

export interface CommitRequest {
  /** Spark operation name: `WRITE`, `MERGE`, `DELETE`, `CREATE TABLE`, `OPTIMIZE`, ... */
  operation: string;
  /**
   * Spark convention: every value is written as a string — strings as they are, everything else as its JSON
   * (`{"mode":"Append","partitionBy":"[]","isManaged":"false"}`); null stays null.
   */
  operationParameters?: Record<string, unknown>;
  operationMetrics?: Record<string, string>;
  /**
   * Whether the commit only appends without having read the table. Concurrent writers under WriteSerializable
   * ignore blind appends when checking conflicts. Default: true when every file action is an `add` (Spark's
   * rule for writers that read no files); pass false when the new files depend on data that was read (MERGE).
   */
  isBlindAppend?: boolean;
  /** Written to `commitInfo.isolationLevel` when given (`commitWithRetry` always writes it). */
  isolationLevel?: IsolationLevel;
}

/** Where post-commit problems are reported (a failed checkpoint does not fail the commit). */
export interface DeltaWriteLog {
  warn(message: string): void;
}

export interface CommitOptions {
  /**
   * The snapshot at the read version that the actions were derived from. Saves reading the table's protocol
   * and metadata again; without it they come from a per-process cache or a `loadSnapshot`.
   */
  snapshot?: Snapshot | null;
  /**
   * Also refuse tables this writer cannot write rows to ({@link checkWriteSupport}) and CDF-enabled rewrites
   * without cdc actions. Off by default in `commit` because maintenance operations gate features per
   * operation themselves; on by default in `commitWithRetry`. Pass `{honouredFeatures}` to declare features
   * the caller honours itself.
   */
  checkWriteSupport?: boolean | WriteSupportOptions;
  /** Checkpoint and log cleanup after the commit when due. Default true. */
  postCommit?: boolean;
  /** Default: a process warning. */
  log?: DeltaWriteLog;
  /** Clock in ms since the epoch, for commit timestamps and retention. Default `Date.now`. */
  now?: () => number;
}

/** Reader 1 / writer 2: readable and writable by every Delta engine (Spark, delta-rs, DuckDB, Trino, ...). */
export const DEFAULT_PROTOCOL: Protocol = Object.freeze({ minReaderVersion: 1, minWriterVersion: 2 });

/** `part-00000-<uuid>-c000.snappy.parquet`: unique, so data files are never overwritten. */
export function newDataFileName(): string {
  return `part-00000-${randomUUID()}-c000.snappy.parquet`;
}

/** A `metaData` action for a new table: random UUID id, `createdTime` now, Parquet format. */
export function newTableMetadata(
  schema: StructType,
  options: {
    partitionColumns?: string[];
    configuration?: Record<string, string>;
    name?: string;
    description?: string;
  } = {},
): Metadata {
  const metadata: Metadata = {
    id: randomUUID(),
    format: { provider: 'parquet', options: {} },
    schemaString: schemaString(schema),
    partitionColumns: [...(options.partitionColumns ?? [])],
    configuration: { ...(options.configuration ?? {}) },
    createdTime: Date.now(),
  };
  if (options.name !== undefined) metadata.name = options.name;
  if (options.description !== undefined) metadata.description = options.description;
  return metadata;
}

let engineVersion: string | undefined;

/** Tributary's version from package.json, found by walking up from this module (works from src/ and dist/). */
function tributaryVersion(): string {
  if (engineVersion !== undefined) return engineVersion;
  engineVersion = 'unknown';
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'tributary' && typeof pkg.version === 'string') {
        engineVersion = pkg.version;
        break;
      }
    } catch {
      // not here; keep walking up
    }
    dir = path.dirname(dir);
  }
  return engineVersion;
}

function invalid(message: string): TributaryError {
  return new TributaryError('INTERNAL', `Invalid Delta commit: ${message}`);
}

/** The per-commit rules of the protocol; a violation is a bug in the caller, so it never reaches the log. */
function validate(readVersion: number, actions: readonly Action[]): void {
  if (!Number.isInteger(readVersion) || readVersion < -1) throw invalid(`readVersion ${readVersion}`);
  let protocols = 0;
  let metadatas = 0;
  const adds = new Set<string>();
  const removes = new Set<string>();
  const txns = new Set<string>();
  for (const action of actions) {
    if ('protocol' in action) protocols++;
    else if ('metaData' in action) metadatas++;
    else if ('add' in action) {
      const key = `${action.add.path}\u0000${JSON.stringify(action.add.deletionVector ?? null)}`;
      if (adds.has(key)) throw invalid(`file ${action.add.path} is added twice`);
      adds.add(key);
    } else if ('remove' in action) {
      const key = `${action.remove.path}\u0000${JSON.stringify(action.remove.deletionVector ?? null)}`;
      if (removes.has(key)) throw invalid(`file ${action.remove.path} is removed twice`);
      removes.add(key);
    } else if ('txn' in action) {
      if (txns.has(action.txn.appId)) throw invalid(`two txn actions for app ${action.txn.appId}`);
      txns.add(action.txn.appId);
    }
  }
  if (protocols > 1) throw invalid('more than one protocol action');
  if (metadatas > 1) throw invalid('more than one metaData action');
  if (readVersion === -1 && (protocols === 0 || metadatas === 0)) {
    throw invalid('creating a table (readVersion -1) needs a protocol and a metaData action');
  }
}

function buildCommitInfo(
  readVersion: number,
  actions: readonly Action[],
  request: CommitRequest,
  timestamp: number,
): CommitInfo {
  const onlyAdds = actions.every((a) => !('remove' in a) && !('cdc' in a));
  const info: CommitInfo = {
    timestamp,
    operation: request.operation,
    operationParameters: Object.fromEntries(
      Object.entries(request.operationParameters ?? {}).map(([k, v]) => [
        k,
        typeof v === 'string' || v === null ? v : JSON.stringify(v),
      ]),
    ),
  };
  Object.assign(info, {
    ...(readVersion >= 0 ? { readVersion } : {}),
    ...(request.isolationLevel ? { isolationLevel: request.isolationLevel } : {}),
    isBlindAppend: request.isBlindAppend ?? onlyAdds,
    ...(request.operationMetrics ? { operationMetrics: request.operationMetrics } : {}),
    engineInfo: `Tributary/${tributaryVersion()}`,
    txnId: randomUUID(),
  });
  for (const action of actions) if ('commitInfo' in action) Object.assign(info, action.commitInfo);
  return info;
}

/** Free and total bytes of the file system holding `dir`, for the message of a full disk. */
async function storageSpace(dir: string): Promise<StorageSpace | undefined> {
  try {
    const s = await statfs(dir);
    return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
  } catch {
    return undefined;
  }
}

async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch (error) {
    // Some file systems refuse fsync on directories; the link itself is still atomic there.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw error;
  } finally {
    await handle.close();
  }
}

/**
 * The `protocol` and `metaData` actions that create a table: the protocol comes from {@link protocolFor}, so
 * table properties such as `delta.enableDeletionVectors` or `delta.enableChangeDataFeed` get the protocol
 * versions and feature lists they need. Commit them with `readVersion` -1.
 */
export function newTableActions(
  schema: StructType,
  options: Parameters<typeof newTableMetadata>[1] = {},
): [{ protocol: Protocol }, { metaData: Metadata }] {
  const metaData = newTableMetadata(schema, options);
  return [{ protocol: protocolFor(metaData.configuration, schema) }, { metaData }];
}

// ---------------------------------------------------------------------------------------------------------------
// Table state at the read version

interface TableState {
  protocol: Protocol;
  metadata: Metadata;
}

/**
 * Protocol and metadata by table and version, from this process's own commits and loads. An entry is only
 * trusted while the commit file is the very same file (device, inode, size, mtime, first bytes): a table
 * deleted and re-created at the same path restarts its versions.
 */
const stateCache = new Map<string, { fingerprint: string; state: TableState }>();
const STATE_CACHE_SIZE = 256;

async function commitFingerprint(root: string, version: number): Promise<string | undefined> {
  try {
    const handle = await open(path.join(root, LOG_DIR, commitFileName(version)), 'r');
    try {
      const s = await handle.stat();
      // The head holds commitInfo with its random txnId: an inode reused within the same millisecond by a
      // re-created table still differs there.
      const head = Buffer.alloc(4096);
      const { bytesRead } = await handle.read(head, 0, head.length, 0);
      const digest = createHash('sha1').update(head.subarray(0, bytesRead)).digest('hex');
      return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${digest}`;
    } finally {
      await handle.close();
    }
  } catch {
    return undefined;
  }
}

async function remember(root: string, version: number, state: TableState): Promise<void> {
  const fingerprint = await commitFingerprint(root, version);
  if (fingerprint === undefined) return;
  const key = `${root}\u0000${version}`;
  stateCache.delete(key);
  stateCache.set(key, { fingerprint, state });
  if (stateCache.size > STATE_CACHE_SIZE) stateCache.delete(stateCache.keys().next().value as string);
}

async function stateAt(
  root: string,
  version: number,
  snapshot: Snapshot | null | undefined,
): Promise<TableState> {
  if (snapshot && snapshot.version === version && path.resolve(snapshot.tableRoot) === root) {
    return { protocol: snapshot.protocol, metadata: snapshot.metadata };
  }
  const cached = stateCache.get(`${root}\u0000${version}`);
  if (cached && cached.fingerprint === (await commitFingerprint(root, version))) return cached.state;
  const loaded = await loadSnapshot(root, { version });
  const state = { protocol: loaded.protocol, metadata: loaded.metadata };
  await remember(root, version, state);
  return state;
}

function nextState(base: TableState | undefined, actions: readonly Action[]): TableState {
  let protocol = base?.protocol;
  let metadata = base?.metadata;
  for (const a of actions) {
    if ('protocol' in a) protocol = a.protocol;
    else if ('metaData' in a) metadata = a.metaData;
  }
  // validate() guarantees both for a new table, and a base has both.
  return { protocol: protocol as Protocol, metadata: metadata as Metadata };
}

function ictActive(state: TableState | undefined): boolean {
  return (
    state !== undefined &&
    isFeatureSupported(state.protocol, 'inCommitTimestamp') &&
    isEnabled(state.metadata.configuration, 'delta.enableInCommitTimestamps')
  );
}

/** The commit timestamp of `version`: its `inCommitTimestamp`, else the commit file's mtime. */
async function commitTimestampOf(root: string, version: number): Promise<number> {
  const handle = await open(path.join(root, LOG_DIR, commitFileName(version)), 'r');
  try {
    // Only the first line (commitInfo) matters; read up to its newline, however long it is.
    const chunks: Buffer[] = [];
    for (let position = 0; ; ) {
      const chunk = Buffer.alloc(65_536);
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, position);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      position += bytesRead;
      if (chunk.subarray(0, bytesRead).includes(0x0a)) break;
    }
    const firstLine = Buffer.concat(chunks).toString('utf8').split('\n')[0] ?? '';
    try {
      const ict = (JSON.parse(firstLine) as { commitInfo?: { inCommitTimestamp?: unknown } }).commitInfo
        ?.inCommitTimestamp;
      if (typeof ict === 'number') return ict;
    } catch {
      // Not a JSON first line: the commit predates in-commit timestamps or was written by a broken writer.
    }
    return (await handle.stat()).mtimeMs;
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Writing one version

interface Draft {
  root: string;
  /** The version the actions were derived from (-1: table creation); recorded in commitInfo. */
  readVersion: number;
  actions: readonly Action[];
  request: CommitRequest;
  base: TableState | undefined;
  next: TableState;
}

/**
 * Writes `draft` as `version`, put-if-absent. Returns the table state after it (the metadata gains the ICT
 * enablement properties when this commit turns in-commit timestamps on).
 */
async function writeVersion(draft: Draft, version: number, now: number): Promise<TableState> {
  const { root, actions } = draft;
  const logDir = path.join(root, LOG_DIR);
  let state = draft.next;
  let body = actions;
  let ict: number | undefined;
  if (ictActive(draft.next)) {
    // Strictly increasing across versions even when clocks disagree (protocol: max(now, previous + 1)).
    ict = version === 0 ? now : Math.max(now, Math.floor(await commitTimestampOf(root, version - 1)) + 1);
    if (version > 0 && !ictActive(draft.base)) {
      // Enabling on an existing table: readers need to know from where timestamps are in-commit ones.
      const metadata: Metadata = {
        ...draft.next.metadata,
        configuration: {
          ...draft.next.metadata.configuration,
          'delta.inCommitTimestampEnablementVersion': String(version),
          'delta.inCommitTimestampEnablementTimestamp': String(ict),
        },
      };
      state = { protocol: draft.next.protocol, metadata };
      body = actions.map((a) => ('metaData' in a ? { metaData: metadata } : a));
    }
  }
  const info = buildCommitInfo(draft.readVersion, body, draft.request, ict ?? now);
  if (ict !== undefined) info.inCommitTimestamp = ict;
  const lines = [JSON.stringify({ commitInfo: info })];
  for (const action of body) if (!('commitInfo' in action)) lines.push(JSON.stringify(action));
  const text = `${lines.join('\n')}\n`;

  const finalPath = path.join(logDir, commitFileName(version));
  // Dot-prefixed so no reader (nor our listing) mistakes it for a log entry if we crash before unlinking.
  const tempPath = path.join(logDir, `.${commitFileName(version)}.${randomUUID()}.tmp`);
  let linked = false;
  try {
    const handle = await open(tempPath, 'wx');
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(tempPath, finalPath);
      linked = true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new TributaryError(
          'DELTA_CONFLICT',
          `Delta commit ${version} of ${root} was written by a concurrent writer first`,
          { hint: 'Reload the snapshot, rebuild the change against it, and retry.' },
        );
      }
      throw error;
    }
    await syncDirectory(logDir);
  } catch (error) {
    if (error instanceof TributaryError) throw error;
    const full = storageFullReason(error);
    if (full !== undefined) {
      // The temp file is unlinked below. Before the put-if-absent link nothing is visible; after it (only the
      // directory fsync failed) the version is complete. Readers never see part of a commit.
      const outcome = linked
        ? `The commit is in the log, but its directory could not be synced.`
        : `Nothing was committed; the table stays at version ${version - 1}.`;
      throw new TributaryError(
        'DELTA_STORAGE_FULL',
        `Cannot write Delta commit ${finalPath}: ${describeStorageFull(full, await storageSpace(logDir))}. ${outcome}`,
        {
          cause: error,
          hint: `Free space on the file system that holds ${root}${full === 'EDQUOT' ? ' or raise the quota' : ''}, then retry. Data files written for this commit are unreferenced and harmless; VACUUM removes them once they are past the retention period.`,
        },
      );
    }
    throw new TributaryError('DELTA_CORRUPT', `Cannot write Delta commit ${finalPath}: ${messageOf(error)}`, {
      cause: error,
      retry: 'transient',
    });
  } finally {
    await unlink(tempPath).catch(() => undefined);
  }
  return state;
}

const defaultLog: DeltaWriteLog = {
  warn: (message) => process.emitWarning(message, { code: 'TRIBUTARY_DELTA_POST_COMMIT' }),
};

/** Checkpoint and cleanup when due. Never throws: the commit is durable whatever happens here. */
async function afterCommit(
  root: string,
  version: number,
  state: TableState,
  options: CommitOptions,
): Promise<void> {
  await remember(root, version, state).catch(() => undefined);
  if (options.postCommit === false) return;
  const log = options.log ?? defaultLog;
  const now = options.now ?? Date.now;
  try {
    const { configuration } = state.metadata;
    if (version === 0 || version % checkpointInterval(configuration) !== 0) return;
    await writeCheckpoint(root, version, { now: now() });
    if (expiredLogCleanupEnabled(configuration))
      await cleanupExpiredLogs(root, { configuration, now: now() });
  } catch (error) {
    log.warn(
      `Delta post-commit work for ${root} version ${version} failed (the commit is durable): ${messageOf(error)}`,
    );
  }
}

function dataWriterOption(
  option: CommitOptions['checkWriteSupport'],
  fallback: boolean,
): false | WriteSupportOptions {
  const value = option ?? fallback;
  return value === false ? false : value === true ? {} : value;
}

/**
 * Commits `actions` as version `readVersion + 1` (version 0 when `readVersion` is -1, which creates
 * `_delta_log`). A `commitInfo` is written first automatically (timestamp, operation, operationParameters with
 * each value JSON-stringified as Spark does, operationMetrics, engineInfo `Tributary/<version>`, isBlindAppend,
 * readVersion, txnId, and `inCommitTimestamp` when the table has in-commit timestamps enabled); fields of a
 * `commitInfo` passed in `actions` are merged into it.
 *
 * Before writing, the actions are checked against the table's protocol and properties
 * (`checkCommitFeatures`: appendOnly, consistent protocol/metadata changes, ...; with
 * `options.checkWriteSupport` also the data writer's feature check). After writing, a checkpoint and log
 * cleanup run when the version is a multiple of `delta.checkpointInterval` (see {@link CommitOptions}).
 *
 * Atomicity: the commit is written to a temp file in `_delta_log`, fsynced, then hard-linked to its final name,
 * which fails if the name exists; the directory is fsynced so the new entry survives a crash.
 *
 * @returns the new version.
 * @throws `DELTA_CONFLICT` (transient) when another writer already committed that version;
 *   `DELTA_TABLE_NOT_FOUND` when `readVersion >= 0` and the table or that version does not exist;
 *   `DELTA_PROTOCOL` when the table's features forbid the commit (naming the feature);
 *   `DELTA_STORAGE_FULL` (transient) when the disk is full or over quota (nothing is committed);
 *   `INTERNAL` when the actions break the protocol's per-commit rules.
 */
export async function commit(
  tableRoot: string,
  readVersion: number,
  actions: readonly Action[],
  request: CommitRequest,
  options: CommitOptions = {},
): Promise<number> {
  validate(readVersion, actions);
  const root = path.resolve(tableRoot);
  const logDir = path.join(root, LOG_DIR);
  const version = readVersion + 1;
  if (readVersion === -1) {
    await mkdir(logDir, { recursive: true });
  } else {
    // Committing on top of a version that does not exist would leave a gap that makes the table unreadable.
    try {
      await stat(path.join(logDir, commitFileName(readVersion)));
    } catch {
      throw new TributaryError(
        'DELTA_TABLE_NOT_FOUND',
        `Cannot commit to ${root}: version ${readVersion} (the read version) does not exist`,
        { hint: 'Load a snapshot of the table and commit against its version.' },
      );
    }
  }
  const base = readVersion >= 0 ? await stateAt(root, readVersion, options.snapshot) : undefined;
  const next = nextState(base, actions);
  const draft: Draft = { root, readVersion, actions, request, base, next };
  checkCommitFeatures(next.protocol, next.metadata, actions, root, {
    ...(base ? { previous: base.metadata } : {}),
    dataWriter: dataWriterOption(options.checkWriteSupport, false),
  });
  const state = await writeVersion(draft, version, (options.now ?? Date.now)());
  await afterCommit(root, version, state, options);
  return version;
}

// ---------------------------------------------------------------------------------------------------------------
// Commit with conflict resolution

/** What `build` returns: the commit and what it depended on. */
export interface TransactionPlan {
  actions: Action[];
  request: CommitRequest;
  /**
   * What the actions were derived from. Omit it for a blind append (new rows that depend on no table data):
   * such a commit is moved past any concurrent commit that does not change protocol/metadata, write the same
   * txn appId or domain, or remove the same files. Give it for read-modify-write (MERGE, UPDATE, DELETE): the
   * files read (`files`, or `wholeTable`) and which concurrently added files the read would have matched.
   */
  readSet?: ReadSet;
  /** Default WriteSerializable (Spark's table default); SnapshotIsolation for dataChange=false rewrites. */
  isolationLevel?: IsolationLevel;
}

export interface CommitWithRetryOptions extends Omit<CommitOptions, 'snapshot'> {
  /** The snapshot to build the first attempt on (null: the table does not exist yet). Default: the latest. */
  snapshot?: Snapshot | null;
  /** Commit attempts in all, moves and rebuilds included. Default 15 (delta-rs' default). */
  maxAttempts?: number;
  signal?: AbortSignal;
}

export interface CommitResult {
  version: number;
  /** Commit attempts made (1 when no one raced). */
  attempts: number;
  /** Times `build` ran (1 when the first plan was committed, possibly moved past concurrent commits). */
  builds: number;
}

async function latestSnapshot(root: string): Promise<Snapshot | null> {
  return (await isDeltaTable(root)) ? loadSnapshot(root) : null;
}

/**
 * Optimistic transaction: `build(snapshot)` derives a {@link TransactionPlan} from a snapshot (null when the
 * table does not exist, so `build` creates it) and it is committed at `snapshot.version + 1`. When another
 * writer committed first, each winning commit is checked (`checkConflict`, Spark's rules):
 *
 * - none conflicts → the same actions are committed at the next free version, without calling `build`
 *   (concurrent blind appends both succeed this way);
 * - the plan's inputs changed (a file it removes or read was removed, or data it would have read was added)
 *   → `build` runs again on the new latest snapshot;
 * - the winner changed protocol or metadata, wrote the same domain, or committed a txn for an appId the plan
 *   writes or read → `DELTA_CONFLICT` at once (re-deciding is the caller's business, e.g. from its txn
 *   version).
 *
 * The table must be writable by a data writer ({@link checkWriteSupport}) unless `options.checkWriteSupport`
 * says otherwise. `build` may run several times and must not have side effects beyond writing new,
 * uniquely named data files (an abandoned plan's files are simply never referenced; VACUUM removes them).
 *
 * @throws `DELTA_CONFLICT` when a winner conflicts irreconcilably or after `maxAttempts` attempts; whatever
 *   `build` throws; the errors of {@link commit}.
 */
export async function commitWithRetry(
  tableRoot: string,
  build: (snapshot: Snapshot | null) => Promise<TransactionPlan>,
  options: CommitWithRetryOptions = {},
): Promise<CommitResult> {
  const root = path.resolve(tableRoot);
  const maxAttempts = options.maxAttempts ?? 15;
  const dataWriter = dataWriterOption(options.checkWriteSupport, true);
  const now = options.now ?? Date.now;
  let snapshot = options.snapshot === undefined ? await latestSnapshot(root) : options.snapshot;
  let attempts = 0;
  let builds = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    if (snapshot && dataWriter) checkWriteSupport(snapshot.protocol, snapshot.metadata, root, dataWriter);
    const plan = await build(snapshot);
    builds++;
    const readVersion = snapshot?.version ?? -1;
    validate(readVersion, plan.actions);
    const base = snapshot ? { protocol: snapshot.protocol, metadata: snapshot.metadata } : undefined;
    const next = nextState(base, plan.actions);
    checkCommitFeatures(next.protocol, next.metadata, plan.actions, root, {
      ...(base ? { previous: base.metadata } : {}),
      dataWriter,
    });
    const isolationLevel = plan.isolationLevel ?? 'WriteSerializable';
    const draft: Draft = {
      root,
      readVersion,
      actions: plan.actions,
      request: { ...plan.request, isolationLevel },
      base,
      next,
    };
    if (readVersion === -1) await mkdir(path.join(root, LOG_DIR), { recursive: true });
    let version = readVersion + 1;
    let rebuild = false;
    while (!rebuild) {
      options.signal?.throwIfAborted();
      attempts++;
      try {
        const state = await writeVersion(draft, version, now());
        await afterCommit(root, version, state, options);
        return { version, attempts, builds };
      } catch (error) {
        if (!isTributaryError(error) || error.code !== 'DELTA_CONFLICT') throw error;
      }
      if (attempts >= maxAttempts) {
        throw new TributaryError(
          'DELTA_CONFLICT',
          `${plan.request.operation} on ${root} gave up after ${attempts} attempts: concurrent writers kept committing first`,
          { hint: 'Retry later, or reduce the number of concurrent writers to this table.' },
        );
      }
      if (readVersion === -1) {
        // Someone else created the table: our plan assumed it did not exist.
        rebuild = true;
        break;
      }
      const latest = latestLogVersion(await listLogFiles(root));
      for (let v = version; v <= latest && !rebuild; v++) {
        const verdict = checkConflict(
          root,
          { actions: plan.actions, ...(plan.readSet ? { readSet: plan.readSet } : {}), isolationLevel },
          { version: v, actions: await readCommitActions(root, v) },
        );
        if (verdict.kind === 'fail') {
          throw new TributaryError(
            'DELTA_CONFLICT',
            `${plan.request.operation} on ${root} conflicts with a concurrent commit: ${verdict.reason}`,
            { hint: 'Reload the table and decide again.' },
          );
        }
        rebuild = verdict.kind === 'rebuild';
      }
      version = latest + 1;
    }
    snapshot = await latestSnapshot(root);
  }
}
