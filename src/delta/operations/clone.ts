/**
 * SHALLOW CLONE: a new table whose log references the source's data files by absolute path (nothing is
 * copied). It has its own id and history, so writes to either table do not affect the other; but a VACUUM of
 * the source can delete files the clone still uses (VACUUM of the clone never deletes the source's files: they
 * are outside its directory).
 */
import { pathToFileURL } from 'node:url';
import { TributaryError } from '../../core/errors.js';
import { type Action, type AddFile, deletionVectorId, type Metadata } from '../actions.js';
import { commit, newTableMetadata } from '../commit.js';
import { isDeltaTable, loadSnapshot, type Snapshot } from '../snapshot.js';
import { absoluteDeletionVector } from './dv-files.js';
import { removeOf } from './optimize.js';
import { checkWriteSupport } from './write-support.js';

export interface ShallowCloneOptions {
  /** Replace the target when it exists (`CREATE OR REPLACE TABLE`). */
  replace?: boolean;
  /** Do nothing when the target exists (`CREATE TABLE IF NOT EXISTS`). */
  ifNotExists?: boolean;
  /** Properties set on the clone, over the source's. */
  properties?: Readonly<Record<string, string>>;
  /** How the source is named in the clone's history (default its path). */
  sourceName?: string;
}

export interface CloneMetrics {
  readonly sourceTableSize: number;
  readonly sourceNumOfFiles: number;
  readonly numRemovedFiles: number;
  readonly numCopiedFiles: number;
  readonly removedFilesSize: number;
  readonly copiedFilesSize: number;
}

export interface CloneResult {
  readonly tableRoot: string;
  /** The clone's new version, or null when it existed and `ifNotExists` was set. */
  readonly version: number | null;
  readonly sourceVersion: number;
  readonly metrics: CloneMetrics;
}

function absoluteAdd(source: Snapshot, add: AddFile): AddFile {
  const out: AddFile = { ...add, path: pathToFileURL(source.dataFilePath(add)).href, dataChange: true };
  if (add.deletionVector) out.deletionVector = absoluteDeletionVector(source.tableRoot, add.deletionVector);
  return out;
}

/** Clones `source` (a snapshot, so any version) into a new table at `targetRoot`. */
export async function shallowClone(
  source: Snapshot,
  targetRoot: string,
  options: ShallowCloneOptions = {},
): Promise<CloneResult> {
  checkWriteSupport(source, 'CLONE');
  const sourceTableSize = source.files.reduce((s, f) => s + f.size, 0);
  const base = {
    sourceTableSize,
    sourceNumOfFiles: source.files.length,
    numCopiedFiles: 0,
    copiedFilesSize: 0,
  };
  const exists = await isDeltaTable(targetRoot);
  if (exists && options.ifNotExists) {
    return {
      tableRoot: targetRoot,
      version: null,
      sourceVersion: source.version,
      metrics: { ...base, numRemovedFiles: 0, removedFilesSize: 0 },
    };
  }
  if (exists && !options.replace) {
    throw new TributaryError('SQL_ERROR', `Cannot create ${targetRoot}: a Delta table already exists there`, {
      hint: 'Use CREATE OR REPLACE TABLE to replace it, or CREATE TABLE IF NOT EXISTS to keep it.',
    });
  }
  const fresh = newTableMetadata(source.schema);
  const metadata: Metadata = {
    ...source.metadata,
    id: fresh.id,
    createdTime: fresh.createdTime as number,
    configuration: { ...source.metadata.configuration, ...(options.properties ?? {}) },
  };
  const adds = source.files.map((f) => ({ add: absoluteAdd(source, f) }) satisfies Action);
  const operationParameters = {
    source: options.sourceName ?? source.tableRoot,
    sourceVersion: source.version,
    isShallow: true,
  };
  const domains: Action[] = [...source.domainMetadata.values()].map((dm) => ({ domainMetadata: { ...dm } }));

  if (!exists) {
    const version = await commit(
      targetRoot,
      -1,
      [{ protocol: source.protocol }, { metaData: metadata }, ...domains, ...adds],
      {
        operation: 'CLONE',
        operationParameters,
        operationMetrics: metricStrings({ ...base, numRemovedFiles: 0, removedFilesSize: 0 }),
      },
    );
    return {
      tableRoot: targetRoot,
      version,
      sourceVersion: source.version,
      metrics: { ...base, numRemovedFiles: 0, removedFilesSize: 0 },
    };
  }

  // CREATE OR REPLACE: one commit on the existing table (its id and history stay).
  const target = await loadSnapshot(targetRoot);
  const now = Date.now();
  const replacedDomains: Action[] = [...target.domainMetadata.values()]
    .filter((dm) => !source.domainMetadata.has(dm.domain))
    .map((dm) => ({ domainMetadata: { ...dm, removed: true } }));
  // A file the clone keeps (same file, same deletion vector) is simply added again, not removed.
  const key = (href: string, add: AddFile) => `${href}\u0000${deletionVectorId(add.deletionVector)}`;
  const kept = new Set(adds.map((a) => key(a.add.path, a.add)));
  const removes = target.files
    .filter((f) => !kept.has(key(pathToFileURL(target.dataFilePath(f)).href, f)))
    .map((f) => ({ remove: removeOf(f, now, true) }) satisfies Action);
  const metrics: CloneMetrics = {
    ...base,
    numRemovedFiles: removes.length,
    removedFilesSize: removes.reduce((s, r) => s + (r.remove.size ?? 0), 0),
  };
  const protocol = {
    minReaderVersion: Math.max(source.protocol.minReaderVersion, target.protocol.minReaderVersion),
    minWriterVersion: Math.max(source.protocol.minWriterVersion, target.protocol.minWriterVersion),
  };
  const features = (a?: string[], b?: string[]) => [...new Set([...(a ?? []), ...(b ?? [])])].sort();
  const version = await commit(
    targetRoot,
    target.version,
    [
      {
        protocol: {
          ...protocol,
          ...(protocol.minReaderVersion >= 3
            ? { readerFeatures: features(source.protocol.readerFeatures, target.protocol.readerFeatures) }
            : {}),
          ...(protocol.minWriterVersion >= 7
            ? { writerFeatures: features(source.protocol.writerFeatures, target.protocol.writerFeatures) }
            : {}),
        },
      },
      { metaData: { ...metadata, id: target.metadata.id } },
      ...domains,
      ...replacedDomains,
      ...removes,
      ...adds,
    ],
    {
      operation: 'CLONE',
      operationParameters,
      operationMetrics: metricStrings(metrics),
      isBlindAppend: false,
    },
  );
  return { tableRoot: target.tableRoot, version, sourceVersion: source.version, metrics };
}

function metricStrings(metrics: CloneMetrics): Record<string, string> {
  return Object.fromEntries(Object.entries(metrics).map(([k, v]) => [k, String(v)]));
}
