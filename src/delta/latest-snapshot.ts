/**
 * The latest snapshot of each table a long-running process works on, kept between reads and brought up to
 * date by {@link refreshSnapshot}: one directory listing and the new commits, instead of the checkpoint and
 * every commit after it. A pipeline round reads each bronze table several times (before its merge, after
 * its commit, for staging retention), and a continuous run does so round after round.
 *
 * Safe across processes and writers: every read lists the log, so another writer's commits are replayed
 * like ours, and a table replaced or removed under the cache is loaded afresh or reported absent.
 */
import path from 'node:path';
import { isTributaryError } from '../core/errors.js';
import { isDeltaTable, loadSnapshot, refreshSnapshot, type Snapshot } from './snapshot.js';

const known = new Map<string, Snapshot>();

/** The table's latest snapshot, or null when there is no Delta table at `tableRoot` (yet, or any more). */
export async function latestSnapshot(tableRoot: string): Promise<Snapshot | null> {
  const root = path.resolve(tableRoot);
  const previous = known.get(root);
  let snapshot: Snapshot | null;
  try {
    snapshot = previous
      ? await refreshSnapshot(previous)
      : (await isDeltaTable(root))
        ? await loadSnapshot(root)
        : null;
  } catch (error) {
    known.delete(root);
    if (previous && isTributaryError(error) && error.code === 'DELTA_TABLE_NOT_FOUND') return null;
    throw error;
  }
  if (snapshot) known.set(root, snapshot);
  else known.delete(root);
  return snapshot;
}
