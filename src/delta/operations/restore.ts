/**
 * RESTORE: a new commit that makes the table's state that of an earlier version (DIGEST §12): the files live
 * then but not now are added back, the files live now but not then are removed (both `dataChange: true`), the
 * metadata of that version comes back when it differs, domain metadata is restored, and the protocol is never
 * downgraded. Fails, committing nothing, when a file to add back is gone (vacuumed).
 */
import { access } from 'node:fs/promises';
import { TributaryError } from '../../core/errors.js';
import { type Action, type AddFile, deletionVectorId } from '../actions.js';
import { commitWithRetry } from '../commit.js';
import { loadSnapshot, type Snapshot } from '../snapshot.js';
import { deletionVectorFile } from './dv-files.js';
import { removeOf } from './optimize.js';
import { checkWriteSupport } from './write-support.js';

export type RestoreTarget = { readonly version: number } | { readonly timestamp: Date };

export interface RestoreMetrics {
  readonly tableSizeAfterRestore: number;
  readonly numOfFilesAfterRestore: number;
  readonly numRemovedFiles: number;
  readonly numRestoredFiles: number;
  readonly removedFilesSize: number;
  readonly restoredFilesSize: number;
}

export interface RestoreResult {
  readonly tableRoot: string;
  /** The version whose state was restored. */
  readonly restoredVersion: number;
  /** The new version. */
  readonly version: number;
  readonly metrics: RestoreMetrics;
}

function fileKey(snapshot: Snapshot, add: AddFile): string {
  return `${snapshot.dataFilePath(add)}\u0000${deletionVectorId(add.deletionVector)}`;
}

async function missingFiles(snapshot: Snapshot, adds: readonly AddFile[]): Promise<string[]> {
  const missing: string[] = [];
  for (const add of adds) {
    const files = [snapshot.dataFilePath(add)];
    if (add.deletionVector) {
      const dv = deletionVectorFile(snapshot.tableRoot, add.deletionVector);
      if (dv) files.push(dv);
    }
    for (const file of files) {
      try {
        await access(file);
      } catch {
        missing.push(file);
      }
    }
  }
  return missing;
}

function maxProtocol(current: Snapshot, old: Snapshot): Action | undefined {
  const a = current.protocol;
  const b = old.protocol;
  const reader = Math.max(a.minReaderVersion, b.minReaderVersion);
  const writer = Math.max(a.minWriterVersion, b.minWriterVersion);
  const readerFeatures = [...new Set([...(a.readerFeatures ?? []), ...(b.readerFeatures ?? [])])].sort();
  const writerFeatures = [...new Set([...(a.writerFeatures ?? []), ...(b.writerFeatures ?? [])])].sort();
  const same =
    reader === a.minReaderVersion &&
    writer === a.minWriterVersion &&
    readerFeatures.length === (a.readerFeatures ?? []).length &&
    writerFeatures.length === (a.writerFeatures ?? []).length;
  if (same) return undefined;
  return {
    protocol: {
      minReaderVersion: reader,
      minWriterVersion: writer,
      ...(reader >= 3 ? { readerFeatures } : {}),
      ...(writer >= 7 ? { writerFeatures } : {}),
    },
  };
}

export async function restoreTable(tableRoot: string, target: RestoreTarget): Promise<RestoreResult> {
  const first = await loadSnapshot(tableRoot);
  const old = await loadSnapshot(
    first.tableRoot,
    'version' in target ? { version: target.version } : { timestamp: target.timestamp },
  );
  let metrics: RestoreMetrics | undefined;
  const result = await commitWithRetry(
    first.tableRoot,
    async (current) => {
      if (!current) throw new TributaryError('DELTA_TABLE_NOT_FOUND', `No Delta table at ${first.tableRoot}`);
      const plan = await planRestore(current, old);
      metrics = plan.metrics;
      return {
        actions: plan.actions,
        request: {
          operation: 'RESTORE',
          operationParameters:
            'version' in target ? { version: target.version } : { timestamp: target.timestamp.toISOString() },
          operationMetrics: Object.fromEntries(Object.entries(plan.metrics).map(([k, v]) => [k, String(v)])),
          isBlindAppend: false,
        },
        // The restore is computed from the whole current state: any concurrent data change means recomputing.
        readSet: { wholeTable: true },
      };
    },
    { snapshot: first, checkWriteSupport: false },
  );
  return {
    tableRoot: first.tableRoot,
    restoredVersion: old.version,
    version: result.version,
    metrics: metrics as RestoreMetrics,
  };
}

async function planRestore(
  current: Snapshot,
  old: Snapshot,
): Promise<{ actions: Action[]; metrics: RestoreMetrics }> {
  checkWriteSupport(current, 'RESTORE');
  const currentKeys = new Set(current.files.map((f) => fileKey(current, f)));
  const oldKeys = new Set(old.files.map((f) => fileKey(old, f)));
  const toAdd = old.files.filter((f) => !currentKeys.has(fileKey(old, f)));
  const toRemove = current.files.filter((f) => !oldKeys.has(fileKey(current, f)));

  if (toRemove.length > 0 && current.metadata.configuration['delta.appendOnly']?.toLowerCase() === 'true') {
    throw new TributaryError(
      'DELTA_PROTOCOL',
      `RESTORE of ${current.tableRoot} to version ${old.version} would remove files from an append-only table (delta.appendOnly = true)`,
      { hint: "Unset the property first: ALTER TABLE ... UNSET TBLPROPERTIES ('delta.appendOnly')." },
    );
  }
  const missing = await missingFiles(old, toAdd);
  if (missing.length > 0) {
    throw new TributaryError(
      'DELTA_CORRUPT',
      `Cannot restore ${current.tableRoot} to version ${old.version}: ${missing.length} of its files no longer exist ` +
        `(deleted by VACUUM?), e.g. ${missing.slice(0, 3).join(', ')}`,
      {
        hint: 'Restore to a later version whose files are still present; DESCRIBE HISTORY lists the versions.',
      },
    );
  }

  const now = Date.now();
  const actions: Action[] = [];
  const protocol = maxProtocol(current, old);
  if (protocol) actions.push(protocol);
  if (JSON.stringify(old.metadata) !== JSON.stringify(current.metadata)) {
    actions.push({ metaData: { ...old.metadata, id: current.metadata.id } });
  }
  for (const [domain, dm] of old.domainMetadata) {
    const present = current.domainMetadata.get(domain);
    if (!present || present.configuration !== dm.configuration) {
      actions.push({ domainMetadata: { ...dm, removed: false } });
    }
  }
  for (const [domain, dm] of current.domainMetadata) {
    if (!old.domainMetadata.has(domain)) actions.push({ domainMetadata: { ...dm, removed: true } });
  }
  for (const add of toAdd) actions.push({ add: { ...add, dataChange: true } });
  for (const add of toRemove) actions.push({ remove: removeOf(add, now, true) });

  const sum = (files: readonly AddFile[]) => files.reduce((s, f) => s + f.size, 0);
  return {
    actions,
    metrics: {
      tableSizeAfterRestore: sum(old.files),
      numOfFilesAfterRestore: old.files.length,
      numRemovedFiles: toRemove.length,
      numRestoredFiles: toAdd.length,
      removedFilesSize: sum(toRemove),
      restoredFilesSize: sum(toAdd),
    },
  };
}
