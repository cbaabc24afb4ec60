/**
 * refreshSnapshot and latestSnapshot: a snapshot brought up to date by replaying only the commits after it must
 * equal a fresh load of the table, and must never be stale: a table replaced under it (same version, other
 * files), a commit after it that only a checkpoint covers, or a table that went away are all detected.
 */
import { mkdtemp, rm, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Action, AddFile } from './actions.js';
import { writeCheckpoint } from './checkpoint-writer.js';
import { commit, commitFileName, newTableActions } from './commit.js';
import { latestSnapshot } from './latest-snapshot.js';
import { LOG_DIR } from './log-files.js';
import type { StructType } from './schema.js';
import { loadSnapshot, refreshSnapshot, type Snapshot } from './snapshot.js';

const schema: StructType = {
  type: 'struct',
  fields: [{ name: 'id', type: 'long', nullable: false, metadata: {} }],
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tributary-latest-snapshot-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** An add of a file that need not exist: replay never opens data files. */
function add(name: string): AddFile {
  return { path: name, partitionValues: {}, size: 1, modificationTime: 0, dataChange: true };
}

async function write(root: string, version: number, actions: readonly Action[], app = 'app'): Promise<void> {
  await commit(root, version - 1, [...actions, { txn: { appId: app, version } }], { operation: 'WRITE' });
}

/** What a reader would see: the comparable parts of a snapshot. */
function state(s: Snapshot | null) {
  return (
    s && {
      version: s.version,
      files: s.files.map((f) => f.path).sort(),
      txn: s.txnVersion('app'),
      columns: s.schema.fields.map((f) => f.name),
    }
  );
}

describe('refreshSnapshot', () => {
  it('replays the commits made since on top of the previous snapshot, equal to a fresh load', async () => {
    const root = path.join(dir, 'grows');
    await write(root, 0, [...newTableActions(schema), { add: add('a.parquet') }]);
    await write(root, 1, [{ add: add('b.parquet') }]);
    const first = await loadSnapshot(root);
    expect(await refreshSnapshot(first)).toBe(first);

    await write(root, 2, [{ remove: { path: 'a.parquet', deletionTimestamp: 1, dataChange: true } }]);
    const wider: StructType = {
      ...schema,
      fields: [...schema.fields, { name: 'note', type: 'string', nullable: true, metadata: {} }],
    };
    await write(root, 3, [
      { metaData: { ...first.metadata, schemaString: JSON.stringify(wider) } },
      { add: add('c.parquet') },
    ]);
    const refreshed = await refreshSnapshot(first);
    expect(state(refreshed)).toEqual(state(await loadSnapshot(root)));
    expect(state(refreshed)).toEqual({
      version: 3,
      files: ['b.parquet', 'c.parquet'],
      txn: 3,
      columns: ['id', 'note'],
    });
    // The earlier snapshot is unchanged by the replay on top of it.
    expect(state(first)).toEqual({ version: 1, files: ['a.parquet', 'b.parquet'], txn: 1, columns: ['id'] });
  });

  it('loads afresh a table replaced under it, though it reached the same version', async () => {
    const root = path.join(dir, 'replaced');
    await write(root, 0, [...newTableActions(schema), { add: add('old.parquet') }]);
    const before = await loadSnapshot(root);
    await rm(root, { recursive: true });
    await write(root, 0, [...newTableActions(schema), { add: add('new.parquet') }]);
    expect(state(await refreshSnapshot(before))?.files).toEqual(['new.parquet']);
  });

  it('loads afresh when a commit after it is covered only by a checkpoint', async () => {
    const root = path.join(dir, 'checkpointed');
    await write(root, 0, [...newTableActions(schema), { add: add('a.parquet') }]);
    const before = await loadSnapshot(root);
    await write(root, 1, [{ add: add('b.parquet') }]);
    await write(root, 2, [{ add: add('c.parquet') }]);
    await writeCheckpoint(root, 2);
    // Log cleanup removed commit 1: only the checkpoint at 2 covers it.
    await unlink(path.join(root, LOG_DIR, commitFileName(1)));
    await write(root, 3, [{ add: add('d.parquet') }]);
    expect(state(await refreshSnapshot(before))).toEqual(state(await loadSnapshot(root)));
    expect(state(await refreshSnapshot(before))?.files).toEqual([
      'a.parquet',
      'b.parquet',
      'c.parquet',
      'd.parquet',
    ]);
  });
});

describe('latestSnapshot', () => {
  it('follows a table from absent to created, through commits, to removed', async () => {
    const root = path.join(dir, 'lifecycle');
    expect(await latestSnapshot(root)).toBeNull();
    await write(root, 0, [...newTableActions(schema), { add: add('a.parquet') }]);
    expect(state(await latestSnapshot(root))?.files).toEqual(['a.parquet']);
    await write(root, 1, [{ add: add('b.parquet') }], 'other writer');
    expect(state(await latestSnapshot(root))?.files).toEqual(['a.parquet', 'b.parquet']);
    await rm(root, { recursive: true });
    expect(await latestSnapshot(root)).toBeNull();
  });
});
