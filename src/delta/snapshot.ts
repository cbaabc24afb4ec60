/**
 * Reading a Delta table: log replay into a {@link Snapshot} of one version.
 *
 * Replay = newest complete checkpoint at or below the target version (classic, multi-part, or v2 with
 * sidecars) + the JSON commits after it, which must be contiguous. Files are reconciled by
 * (canonical path, deletion vector id); protocol and metadata are latest-wins; txn latest per app id.
 *
 * `_delta_log/_last_checkpoint` is read as a hint only (checksum-validated when it has one): the directory is
 * always listed, a stale hint loses to a newer complete checkpoint, and a corrupt one is ignored. Log
 * compaction files (`x.y.compacted.json`) are optional accelerators and are not used.
 *
 * Tables whose reader protocol needs something this reader does not implement (shredded variants,
 * catalog-managed tables, unknown features) are refused with `DELTA_PROTOCOL` naming the feature, rather than
 * listed with files that would read back as wrong data.
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { messageOf, TributaryError } from '../core/errors.js';
import {
  type AddFile,
  type DomainMetadata,
  deletionVectorId,
  type Metadata,
  type Protocol,
  type RawAction,
  type RemoveFile,
  type Txn,
} from './actions.js';
import { columnMappingMode } from './column-mapping.js';
import { readParquetActions } from './duckdb.js';
import { readLastCheckpoint } from './last-checkpoint-hint.js';
import { listLogFiles, parseLogText, readFirstLine } from './log-files.js';
import { resolveTablePath } from './paths.js';
import { parseSchema, type StructType } from './schema.js';

/** The state of a table at one version. Immutable. */
export interface Snapshot {
  /** Absolute path of the table root (the directory holding `_delta_log`). */
  readonly tableRoot: string;
  readonly version: number;
  readonly protocol: Protocol;
  readonly metadata: Metadata;
  /** `metadata.schemaString`, parsed. */
  readonly schema: StructType;
  /** Active files after replay, in no particular order. */
  readonly files: readonly AddFile[];
  /** Latest `domainMetadata` per domain, tombstones dropped. Preserve domains you do not understand. */
  readonly domainMetadata: ReadonlyMap<string, DomainMetadata>;
  /**
   * Commit timestamp (ms) of `version`: `commitInfo.inCommitTimestamp` when present, else the commit file's
   * mtime (the checkpoint's when the commit file was cleaned up).
   */
  readonly timestamp: number;
  /** The checkpoint replay started from (undefined: replayed from version 0). For diagnostics. */
  readonly checkpointVersion?: number | undefined;
  /** Latest `txn.version` committed by `appId`, or undefined when it never committed. */
  txnVersion(appId: string): number | undefined;
  /** Absolute local path of a file: decodes the percent-encoded relative URI or absolute `file:` URI. */
  dataFilePath(add: AddFile): string;
}

export interface LoadSnapshotOptions {
  /** Time travel to this version. */
  version?: number | undefined;
  /** Time travel to the latest version committed at or before this instant. */
  timestamp?: Date | undefined;
  signal?: AbortSignal | undefined;
}

const EMPTY_SCHEMA = '{"type":"struct","fields":[]}';

/**
 * Reader features this reader implements: log-layer ones (v2Checkpoint, vacuumProtocolCheck) here, data-layer
 * ones in `scan.ts` (deletion vectors, column mapping, type widening casts, timestamp_ntz, unshredded variant).
 */
export const SUPPORTED_READER_FEATURES: ReadonlySet<string> = new Set([
  'columnMapping',
  'deletionVectors',
  'timestampNtz',
  'typeWidening',
  'typeWidening-preview',
  'v2Checkpoint',
  'vacuumProtocolCheck',
  'variantType',
  'variantType-preview',
]);

/** Known reader features deliberately not supported, with the reason given to the user. */
const REFUSED_READER_FEATURES: ReadonlyMap<string, string> = new Map([
  ['variantShredding-preview', 'shredded variant columns must be reassembled from typed_value columns'],
  ['catalogManaged', 'the catalog, not the file system, decides which commits exist'],
  ['catalogOwned-preview', 'the catalog, not the file system, decides which commits exist'],
]);

// ---------------------------------------------------------------------------------------------------------------
// Listing

/** @internal A checkpoint found by listing `_delta_log`. */
export interface CheckpointCandidate {
  version: number;
  /** Absolute paths; several for multi-part. */
  files: string[];
  kind: 'classic' | 'multi-part' | 'v2';
}

/** @internal The classified contents of `_delta_log`. Used by `change-data-feed.ts`. */
export interface LogListing {
  logDir: string;
  /** version → absolute path of `<v>.json`. */
  commits: Map<number, string>;
  /** Complete checkpoints, newest first. */
  checkpoints: CheckpointCandidate[];
}

/**
 * @internal Lists and classifies `<tableRoot>/_delta_log` (`listLogFiles` does the classifying), with absolute
 * paths as replay wants them. `DELTA_TABLE_NOT_FOUND` when it does not exist.
 */
export async function listLog(tableRoot: string): Promise<LogListing> {
  const listing = await listLogFiles(tableRoot);
  const absolute = (name: string) => path.join(listing.logDir, name);
  return {
    logDir: listing.logDir,
    commits: new Map([...listing.commits].map(([version, name]) => [version, absolute(name)])),
    checkpoints: listing.checkpoints.map((c) => ({
      version: c.version,
      kind: c.kind,
      files: c.names.map(absolute),
    })),
  };
}

/** @internal The newest version the listing can reconstruct, or -1 for an empty log. */
export function latestVersion(listing: LogListing): number {
  let latest = -1;
  for (const v of listing.commits.keys()) if (v > latest) latest = v;
  for (const c of listing.checkpoints) if (c.version > latest) latest = c.version;
  return latest;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading log files

/** @internal The actions of one JSON commit. `DELTA_CORRUPT` naming the file and line when it is not NDJSON. */
export async function readCommit(file: string): Promise<RawAction[]> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new TributaryError('DELTA_CORRUPT', `Cannot read Delta commit ${file}: ${messageOf(error)}`, {
      cause: error,
    });
  }
  return parseLogText(text, file);
}

/** Actions of a checkpoint, with v2 sidecars expanded. */
async function readCheckpoint(candidate: CheckpointCandidate, logDir: string): Promise<RawAction[]> {
  const first = candidate.files[0] as string;
  const actions = first.endsWith('.json')
    ? parseLogText(await readFile(first, 'utf8'), first)
    : // Checkpoint removes are tombstones that replay ignores (see apply); skipping them at read time saves most
      // of a large checkpoint's decoding.
      await readParquetActions(candidate.files, { skip: ['remove'] });
  const sidecars: string[] = [];
  const rest: RawAction[] = [];
  for (const action of actions) {
    const sidecar = action.sidecar as { path?: unknown } | undefined;
    if (sidecar && typeof sidecar.path === 'string') {
      sidecars.push(resolveTablePath(path.join(logDir, '_sidecars'), sidecar.path, first));
    } else {
      rest.push(action);
    }
  }
  if (sidecars.length > 0) rest.push(...(await readParquetActions(sidecars, { skip: ['remove'] })));
  return rest;
}

/** First line of a commit: `commitInfo` is written first, and with in-commit timestamps it must be. */
async function readFirstAction(file: string): Promise<RawAction | undefined> {
  const line = await readFirstLine(file);
  if (!line) return undefined;
  try {
    return JSON.parse(line) as RawAction;
  } catch {
    return undefined;
  }
}

/** The commit's in-commit timestamp (ms), when its first action is a `commitInfo` carrying one. */
async function inCommitTimestamp(file: string): Promise<number | undefined> {
  const first = await readFirstAction(file);
  const info = first?.commitInfo as { inCommitTimestamp?: unknown } | undefined;
  return info && typeof info.inCommitTimestamp === 'number' ? info.inCommitTimestamp : undefined;
}

/**
 * @internal The timestamp (ms) of a commit: its in-commit timestamp when it has one (every commit after ICT
 * enablement must), else the file's mtime, which is what the protocol prescribes before enablement.
 */
export async function commitTimestamp(file: string): Promise<number> {
  return (await inCommitTimestamp(file)) ?? Math.floor((await stat(file)).mtimeMs);
}

// ---------------------------------------------------------------------------------------------------------------
// Replay

class ReplayState {
  protocol: Protocol | undefined;
  metadata: Metadata | undefined;
  readonly files = new Map<string, AddFile>();
  readonly txns = new Map<string, Txn>();
  readonly domains = new Map<string, DomainMetadata>();

  constructor(private readonly tableRoot: string) {}

  /** A copy to replay further commits into, leaving this one (a snapshot's) as it is. */
  clone(): ReplayState {
    const copy = new ReplayState(this.tableRoot);
    copy.protocol = this.protocol;
    copy.metadata = this.metadata;
    for (const [k, v] of this.files) copy.files.set(k, v);
    for (const [k, v] of this.txns) copy.txns.set(k, v);
    for (const [k, v] of this.domains) copy.domains.set(k, v);
    return copy;
  }

  key(p: string, dv: unknown, source: string): string {
    return `${resolveTablePath(this.tableRoot, p, source)}\u0000${deletionVectorId(dv as AddFile['deletionVector'])}`;
  }

  /**
   * Applies one commit (or checkpoint). Actions within a commit are unordered; removes go first so that a commit
   * which both removes and re-adds the same key leaves the file live.
   */
  apply(actions: readonly RawAction[], source: string, isCheckpoint: boolean): void {
    const adds: AddFile[] = [];
    for (const action of actions) {
      if ('add' in action) {
        adds.push(requireFileAction(action.add, 'add', source) as AddFile);
      } else if ('remove' in action) {
        // Checkpoint removes are tombstones kept for VACUUM; they never cancel the checkpoint's own adds.
        if (isCheckpoint) continue;
        const remove = requireFileAction(action.remove, 'remove', source) as RemoveFile;
        this.files.delete(this.key(remove.path, remove.deletionVector, source));
      } else if ('metaData' in action) {
        this.metadata = normaliseMetadata(action.metaData, source);
      } else if ('protocol' in action) {
        this.protocol = normaliseProtocol(action.protocol, source);
      } else if ('txn' in action) {
        const txn = action.txn as Txn | null;
        if (txn && typeof txn.appId === 'string') this.txns.set(txn.appId, txn);
      } else if ('domainMetadata' in action) {
        const dm = action.domainMetadata as DomainMetadata | null;
        if (dm && typeof dm.domain === 'string') {
          if (dm.removed) this.domains.delete(dm.domain);
          else this.domains.set(dm.domain, dm);
        }
      }
      // commitInfo, cdc, checkpointMetadata and unknown actions do not contribute to table state.
    }
    for (const add of adds) {
      add.partitionValues ??= {};
      this.files.set(this.key(add.path, add.deletionVector, source), add);
    }
  }
}

function requireFileAction(value: unknown, kind: string, source: string): { path: string } {
  if (typeof value !== 'object' || value === null || typeof (value as { path?: unknown }).path !== 'string') {
    throw new TributaryError('DELTA_CORRUPT', `Delta log file ${source} has a ${kind} action without a path`);
  }
  return value as { path: string };
}

function normaliseProtocol(value: unknown, source: string): Protocol {
  const p = value as Partial<Protocol> | null;
  if (!p || typeof p.minReaderVersion !== 'number' || typeof p.minWriterVersion !== 'number') {
    throw new TributaryError('DELTA_CORRUPT', `Delta log file ${source} has an invalid protocol action`);
  }
  return p as Protocol;
}

function normaliseMetadata(value: unknown, source: string): Metadata {
  const m = value as Partial<Metadata> | null;
  if (!m || typeof m.id !== 'string') {
    throw new TributaryError('DELTA_CORRUPT', `Delta log file ${source} has an invalid metaData action`);
  }
  // Databricks DLT (and Spark's own log tests) create tables with no schema yet: a table without columns.
  if (typeof m.schemaString !== 'string') m.schemaString = EMPTY_SCHEMA;
  m.partitionColumns ??= [];
  m.configuration ??= {};
  m.format ??= { provider: 'parquet', options: {} };
  m.format.options ??= {};
  return m as Metadata;
}

/**
 * Throws `DELTA_PROTOCOL` when reading this table correctly needs a feature this reader lacks. Exported so a
 * writer can check before it commits against a table (writer features are its own business).
 */
export function checkReadSupport(protocol: Protocol, metadata: Metadata, tableRoot: string): void {
  const { minReaderVersion: reader } = protocol;
  if (reader !== 1 && reader !== 2 && reader !== 3) {
    throw new TributaryError(
      'DELTA_PROTOCOL',
      `Delta table ${tableRoot} requires reader version ${reader}; Tributary supports reader versions 1 to 3`,
      { hint: 'The table was written by a newer Delta engine; read it with that engine.' },
    );
  }
  // Reader 2 is column mapping; an unknown mode must not be read with guessed names.
  columnMappingMode(metadata, tableRoot);
  if (reader !== 3) return;
  for (const feature of protocol.readerFeatures ?? []) {
    if (SUPPORTED_READER_FEATURES.has(feature)) continue;
    const why = REFUSED_READER_FEATURES.get(feature) ?? 'unknown to this reader';
    throw new TributaryError(
      'DELTA_PROTOCOL',
      `Delta table ${tableRoot} needs reader feature '${feature}', which Tributary does not support (${why})`,
      { hint: 'Read the table with an engine that supports the feature.' },
    );
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Public API

class SnapshotImpl implements Snapshot {
  readonly schema: StructType;
  readonly protocol: Protocol;
  readonly metadata: Metadata;
  readonly files: readonly AddFile[];
  readonly domainMetadata: ReadonlyMap<string, DomainMetadata>;

  constructor(
    readonly tableRoot: string,
    readonly version: number,
    /** The replayed state; never changed after this (refreshSnapshot replays into a clone). */
    readonly state: ReplayState & { protocol: Protocol; metadata: Metadata },
    readonly timestamp: number,
    readonly checkpointVersion: number | undefined,
    /** Identity of the commit file of `version` (see commitStamp); undefined when it was not there. */
    readonly commitStamp: string | undefined,
  ) {
    this.protocol = state.protocol;
    this.metadata = state.metadata;
    this.files = [...state.files.values()];
    this.domainMetadata = state.domains;
    this.schema = parseSchema(this.metadata.schemaString);
  }

  txnVersion(appId: string): number | undefined {
    return this.state.txns.get(appId)?.version;
  }

  dataFilePath(add: AddFile): string {
    return resolveTablePath(this.tableRoot, add.path, `the log of ${this.tableRoot}`);
  }
}

/** True when `tableRoot/_delta_log` exists and holds at least one commit or checkpoint. */
export async function isDeltaTable(tableRoot: string): Promise<boolean> {
  try {
    const listing = await listLog(path.resolve(tableRoot));
    return listing.commits.size > 0 || listing.checkpoints.length > 0;
  } catch {
    return false;
  }
}

/**
 * Loads the snapshot of `tableRoot` at the latest version, or at `options.version` / `options.timestamp`.
 *
 * Errors (`TributaryError`): `DELTA_TABLE_NOT_FOUND` when there is no `_delta_log` (or it holds no commit) or
 * the requested version does not exist; `DELTA_CORRUPT` for an unparseable commit (the file is named), a gap in
 * the commit versions, or a log without protocol or metaData; `DELTA_PROTOCOL` for an unsupported reader
 * version or feature (the feature is named).
 */
export async function loadSnapshot(tableRoot: string, options: LoadSnapshotOptions = {}): Promise<Snapshot> {
  const root = path.resolve(tableRoot);
  const { signal } = options;
  signal?.throwIfAborted();
  const listing = await listLog(root);
  const latest = latestVersion(listing);
  if (latest < 0) {
    throw new TributaryError(
      'DELTA_TABLE_NOT_FOUND',
      `No Delta table at ${root}: ${listing.logDir} is empty`,
      {
        hint: 'The table was never committed; create it first.',
      },
    );
  }
  let target = latest;
  if (options.version !== undefined) {
    if (!Number.isInteger(options.version) || options.version < 0 || options.version > latest) {
      throw new TributaryError(
        'DELTA_TABLE_NOT_FOUND',
        `Version ${options.version} of Delta table ${root} does not exist (latest is ${latest})`,
      );
    }
    target = options.version;
  } else if (options.timestamp !== undefined) {
    target = await versionAtTimestamp(listing, root, options.timestamp, latest, signal);
  }
  return replay(root, listing, target, signal);
}

async function replay(
  root: string,
  listing: LogListing,
  target: number,
  signal?: AbortSignal,
): Promise<Snapshot> {
  const candidates = await orderByHint(
    listing.checkpoints.filter((c) => c.version <= target),
    listing.logDir,
  );
  let lastError: unknown;
  // Newest checkpoint first; an unreadable one (partially written, corrupt) falls back to an older one or to
  // replaying from version 0, which is what a stale `_last_checkpoint` would have led to anyway.
  for (const candidate of [...candidates, undefined]) {
    const start = candidate ? candidate.version + 1 : 0;
    const missing = firstMissingCommit(listing, start, target);
    if (missing !== undefined) {
      if (candidate === undefined && lastError === undefined)
        throw missingCommitError(root, listing, missing, target);
      continue;
    }
    const state = new ReplayState(root);
    if (candidate) {
      try {
        state.apply(await readCheckpoint(candidate, listing.logDir), candidate.files[0] as string, true);
      } catch (error) {
        lastError = new TributaryError(
          'DELTA_CORRUPT',
          `Unreadable Delta checkpoint ${candidate.files.join(', ')}: ${messageOf(error)}`,
          { cause: error },
        );
        continue;
      }
    }
    for (let v = start; v <= target; v++) {
      signal?.throwIfAborted();
      const file = listing.commits.get(v) as string;
      state.apply(await readCommit(file), file, false);
    }
    return finish(root, listing, target, state, candidate);
  }
  throw lastError;
}

/**
 * The listing is authoritative (local listing is cheap, and a stale hint must lose to a newer checkpoint), so the
 * hint only breaks ties: when several complete checkpoints exist for the newest version (classic and v2 UUID, or
 * a rewritten multi-part one), the one `_last_checkpoint` names is tried first.
 */
async function orderByHint(
  candidates: CheckpointCandidate[],
  logDir: string,
): Promise<CheckpointCandidate[]> {
  if (candidates.length < 2) return candidates;
  const read = await readLastCheckpoint(logDir);
  if (!read.ok) return candidates;
  const { hint } = read;
  const named = hint.v2Checkpoint?.path;
  const matches = (c: CheckpointCandidate): boolean =>
    c.version === hint.version &&
    (named !== undefined
      ? c.files.some((f) => path.basename(f) === path.basename(named))
      : hint.parts !== undefined
        ? c.kind === 'multi-part' && c.files.length === hint.parts
        : c.kind === 'classic');
  const preferred = candidates.filter(matches);
  if (preferred.length === 0) return candidates;
  return [...preferred, ...candidates.filter((c) => !matches(c))].sort((a, b) => b.version - a.version);
}

function firstMissingCommit(listing: LogListing, from: number, to: number): number | undefined {
  for (let v = from; v <= to; v++) if (!listing.commits.has(v)) return v;
  return undefined;
}

function missingCommitError(
  root: string,
  listing: LogListing,
  missing: number,
  target: number,
): TributaryError {
  const present = [...listing.commits.keys()].filter((v) => v > missing && v <= target);
  if (present.length > 0) {
    return new TributaryError(
      'DELTA_CORRUPT',
      `Delta log of ${root} is not contiguous: commit ${missing} is missing but later commits exist`,
      { hint: 'A commit file was deleted or never fully written; restore it from a backup.' },
    );
  }
  return new TributaryError(
    'DELTA_CORRUPT',
    `Delta log of ${root} cannot reconstruct version ${target}: commit ${missing} and any checkpoint covering it are missing`,
    { hint: 'The log history was cleaned up past this version; time travel this far back is impossible.' },
  );
}

async function finish(
  root: string,
  listing: LogListing,
  version: number,
  state: ReplayState,
  checkpoint: CheckpointCandidate | undefined,
  checkpointVersion = checkpoint?.version,
): Promise<Snapshot> {
  if (!state.protocol) {
    throw new TributaryError(
      'DELTA_CORRUPT',
      `Delta log of ${root} has no protocol action up to version ${version}`,
    );
  }
  if (!state.metadata) {
    throw new TributaryError(
      'DELTA_CORRUPT',
      `Delta log of ${root} has no metaData action up to version ${version}`,
    );
  }
  checkReadSupport(state.protocol, state.metadata, root);
  const commitFile = listing.commits.get(version);
  const timestamp = commitFile
    ? await commitTimestamp(commitFile)
    : (await stat(checkpoint?.files[0] as string)).mtimeMs;
  return new SnapshotImpl(
    root,
    version,
    state as ReplayState & { protocol: Protocol; metadata: Metadata },
    timestamp,
    checkpointVersion,
    commitFile ? await commitStamp(commitFile) : undefined,
  );
}

/** A commit file's identity: a table deleted and created anew may reach the same version with other files. */
async function commitStamp(file: string): Promise<string | undefined> {
  try {
    const s = await stat(file);
    return `${s.ino}:${s.size}:${s.mtimeMs}`;
  } catch {
    return undefined;
  }
}

/**
 * The latest snapshot of the table `previous` was read from, built on it: `previous` itself when nothing was
 * committed since, else the commits since replayed on top of its state. A round of a continuous pipeline
 * reads each table's snapshot several times; rebuilding it from the checkpoint each time cost most of a
 * round's Delta time. Loads afresh (as {@link loadSnapshot}) whenever the shortcut could be wrong: the commit
 * `previous` ended with is gone or is another file (the table was replaced), or a commit after it is missing
 * (only a checkpoint covers it).
 */
export async function refreshSnapshot(previous: Snapshot): Promise<Snapshot> {
  const root = previous.tableRoot;
  if (!(previous instanceof SnapshotImpl) || previous.commitStamp === undefined) return loadSnapshot(root);
  const listing = await listLog(root);
  const latest = latestVersion(listing);
  const own = listing.commits.get(previous.version);
  if (own === undefined || (await commitStamp(own)) !== previous.commitStamp) return loadSnapshot(root);
  if (latest === previous.version) return previous;
  if (latest < previous.version || firstMissingCommit(listing, previous.version + 1, latest) !== undefined)
    return loadSnapshot(root);
  const state = previous.state.clone();
  for (let v = previous.version + 1; v <= latest; v++) {
    const file = listing.commits.get(v) as string;
    state.apply(await readCommit(file), file, false);
  }
  return finish(root, listing, latest, state, undefined, previous.checkpointVersion);
}

/**
 * The latest version whose commit timestamp is ≤ `at`.
 *
 * With in-commit timestamps (`delta.enableInCommitTimestamps`), every commit from the enablement version on
 * carries a monotonic `commitInfo.inCommitTimestamp`, and those are the only valid timestamps for those
 * versions: they are found by binary search. Earlier versions (and tables without ICT) use file mtimes, made
 * monotonic (each at least 1 ms after the previous) as Spark does, because mtimes can go backwards after a copy.
 */
async function versionAtTimestamp(
  listing: LogListing,
  root: string,
  at: Date,
  latest: number,
  signal?: AbortSignal,
): Promise<number> {
  const target = at.getTime();
  // Only versions we can reconstruct: from the oldest checkpoint (or 0) onwards.
  const oldestCheckpoint = listing.checkpoints.at(-1)?.version;
  const floor = listing.commits.has(0) ? 0 : (oldestCheckpoint ?? 0);
  const versions = [...listing.commits.keys()].filter((v) => v >= floor).sort((a, b) => a - b);
  if (versions.length === 0) return checkFound(latest, root, at);
  const ict = (i: number) => inCommitTimestamp(listing.commits.get(versions[i] as number) as string);

  // ICT commits form a suffix of the log: find where it starts.
  let ictStart = versions.length;
  if ((await ict(versions.length - 1)) !== undefined) {
    let lo = 0;
    let hi = versions.length - 1;
    while (lo < hi) {
      signal?.throwIfAborted();
      const mid = (lo + hi) >>> 1;
      if ((await ict(mid)) !== undefined) hi = mid;
      else lo = mid + 1;
    }
    ictStart = lo;
  }
  if (ictStart < versions.length && target >= ((await ict(ictStart)) as number)) {
    let lo = ictStart;
    let hi = versions.length - 1;
    while (lo < hi) {
      signal?.throwIfAborted();
      const mid = (lo + hi + 1) >>> 1;
      if (((await ict(mid)) as number) <= target) lo = mid;
      else hi = mid - 1;
    }
    return versions[lo] as number;
  }

  let found: number | undefined;
  let previous = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < ictStart; i += 64) {
    signal?.throwIfAborted();
    const batch = versions.slice(i, Math.min(i + 64, ictStart));
    const times = await Promise.all(
      batch.map(async (v) => (await stat(listing.commits.get(v) as string)).mtimeMs),
    );
    for (let j = 0; j < batch.length; j++) {
      const ts = Math.max(Math.floor(times[j] as number), previous + 1);
      previous = ts;
      if (ts > target) return checkFound(found, root, at);
      found = batch[j];
    }
  }
  return checkFound(found, root, at);
}

function checkFound(found: number | undefined, root: string, at: Date): number {
  if (found === undefined) {
    throw new TributaryError(
      'DELTA_TABLE_NOT_FOUND',
      `Delta table ${root} has no version at or before ${at.toISOString()} (or its log was cleaned up)`,
    );
  }
  return found;
}
