/**
 * Writing a Delta commit: optimistic concurrency with put-if-absent on `_delta_log/<version>.json`.
 *
 * The caller reads a snapshot at version r, derives its actions, and calls `commit(root, r, actions, ...)`,
 * which creates version r+1 only if no one else did. Losing the race throws `DELTA_CONFLICT` (retry class
 * transient): the caller must load a fresh snapshot, rebuild its actions (never re-send the same ones), and
 * try again. Conflict resolution against the winning commits (Delta §13) is the caller's decision for now.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, mkdir, open, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { messageOf, TributaryError } from '../core/errors.js';
import type { Action, CommitInfo, Metadata, Protocol } from './actions.js';
import { type StructType, schemaString } from './schema.js';

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

/** `_delta_log/<20-digit version>.json`. */
export function commitFileName(version: number): string {
  return `${String(version).padStart(20, '0')}.json`;
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

/**
 * Commits `actions` as version `readVersion + 1` (version 0 when `readVersion` is -1, which creates
 * `_delta_log`). A `commitInfo` is written first automatically (timestamp, operation, operationParameters with
 * each value JSON-stringified as Spark does, operationMetrics, engineInfo `Tributary/<version>`, isBlindAppend,
 * readVersion, txnId); fields of a `commitInfo` passed in `actions` are merged into it.
 *
 * Atomicity: the commit is written to a temp file in `_delta_log`, fsynced, then hard-linked to its final name,
 * which fails if the name exists; the directory is fsynced so the new entry survives a crash.
 *
 * @returns the new version.
 * @throws `DELTA_CONFLICT` (transient) when another writer already committed that version;
 *   `DELTA_TABLE_NOT_FOUND` when `readVersion >= 0` and the table or that version does not exist;
 *   `INTERNAL` when the actions break the protocol's per-commit rules.
 */
export async function commit(
  tableRoot: string,
  readVersion: number,
  actions: readonly Action[],
  request: CommitRequest,
): Promise<number> {
  validate(readVersion, actions);
  const root = path.resolve(tableRoot);
  const logDir = path.join(root, '_delta_log');
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

  const lines = [JSON.stringify({ commitInfo: buildCommitInfo(readVersion, actions, request) })];
  for (const action of actions) if (!('commitInfo' in action)) lines.push(JSON.stringify(action));
  const body = `${lines.join('\n')}\n`;

  const finalPath = path.join(logDir, commitFileName(version));
  // Dot-prefixed so no reader (nor our listing) mistakes it for a log entry if we crash before unlinking.
  const tempPath = path.join(logDir, `.${commitFileName(version)}.${randomUUID()}.tmp`);
  try {
    const handle = await open(tempPath, 'wx');
    try {
      await handle.writeFile(body, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await link(tempPath, finalPath);
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
    throw new TributaryError('DELTA_CORRUPT', `Cannot write Delta commit ${finalPath}: ${messageOf(error)}`, {
      cause: error,
      retry: 'transient',
    });
  } finally {
    await unlink(tempPath).catch(() => undefined);
  }
  return version;
}

function buildCommitInfo(
  readVersion: number,
  actions: readonly Action[],
  request: CommitRequest,
): CommitInfo {
  const onlyAdds = actions.every((a) => !('remove' in a) && !('cdc' in a));
  const info: CommitInfo = {
    timestamp: Date.now(),
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
    isBlindAppend: request.isBlindAppend ?? onlyAdds,
    ...(request.operationMetrics ? { operationMetrics: request.operationMetrics } : {}),
    engineInfo: `Tributary/${tributaryVersion()}`,
    txnId: randomUUID(),
  });
  for (const action of actions) if ('commitInfo' in action) Object.assign(info, action.commitInfo);
  return info;
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
