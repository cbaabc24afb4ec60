/**
 * A full staging disk while a segment is written: STAGING_FULL naming the volume, the unsealed segment
 * removed, the gateway state (and so the position) unchanged. The real thing, on a tmpfs, is in
 * test/integration/staging-full.test.ts; here the two ways it surfaces are simulated: DuckDB's COPY failing
 * with its IO error text, and Node's write failing with errno ENOSPC / EDQUOT.
 */
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { isTributaryError, TributaryError } from '../core/errors.js';
import { asPosition } from '../core/position.js';
import type { TableSchema } from '../core/table.js';
import { DuckDb } from '../engine/duckdb.js';
import { INITIAL_GATEWAY_STATE } from './segment-format.js';
import { type SegmentDraft, StagingVolume } from './staging-volume.js';

const failWrite = vi.hoisted(() => ({ code: undefined as string | undefined }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>();
  return {
    ...actual,
    writeFile: (async (...args: Parameters<typeof actual.writeFile>) => {
      if (failWrite.code) {
        const code = failWrite.code;
        throw Object.assign(new Error(`${code}: write failed, write`), {
          code,
          errno: -28,
          syscall: 'write',
        });
      }
      return actual.writeFile(...args);
    }) as typeof actual.writeFile,
  };
});

const SCHEMA: TableSchema = {
  id: { schema: 'shop', table: 'items' },
  columns: [
    { name: 'id', type: 'long', nullable: false, sourceType: 'bigint' },
    { name: 'name', type: 'string', nullable: true, sourceType: 'varchar(20)' },
  ],
  primaryKey: ['id'],
};

function draft(seq: number): SegmentDraft {
  return {
    seq,
    origin: 'stream',
    snapshot: null,
    startPosition: asPosition(String(seq - 1).padStart(8, '0')),
    endPosition: asPosition(String(seq).padStart(8, '0')),
    firstCommitTime: null,
    lastCommitTime: null,
    tables: new Map([
      [
        'shop.items',
        {
          schema: SCHEMA,
          reset: false,
          rows: [{ ord: 0, op: 'c', commitUs: 1n, row: { id: String(seq), name: `n${seq}` } }],
        },
      ],
    ]),
    state: { ...INITIAL_GATEWAY_STATE, seq, position: asPosition(String(seq).padStart(8, '0')) },
  };
}

let dir: string;
let db: DuckDb;
let volume: StagingVolume;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'staging-full-'));
  db = await DuckDb.open();
  volume = new StagingVolume(path.join(dir, 'volume', 'gw'), 'gw');
  await volume.writeSegment(db, draft(1));
});

afterEach(() => {
  failWrite.code = undefined;
  vi.restoreAllMocks();
});

afterAll(async () => {
  await db?.[Symbol.asyncDispose]();
  await rm(dir, { recursive: true, force: true });
});

/** What is under `.tmp/`, where unsealed segments are written. */
async function unsealed(dir: string): Promise<string[]> {
  return readdir(path.join(dir, '.tmp')).catch(() => []);
}

async function expectUnchanged(): Promise<void> {
  expect((await readdir(volume.dir)).filter((n) => !n.startsWith('.')).sort()).toEqual(['seg-000000000001']);
  expect(await unsealed(volume.dir)).toEqual([]);
  expect(await volume.listSegments()).toEqual([1]);
  expect((await volume.loadState()).position).toBe(asPosition('00000001'));
}

async function failure(promise: Promise<unknown>): Promise<TributaryError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isTributaryError(error)) throw new Error(`expected a TributaryError, got ${String(error)}`);
  return error;
}

describe('StagingVolume.writeSegment on a full disk', () => {
  it("turns DuckDB's IO error for the Parquet COPY into STAGING_FULL and leaves no unsealed directory", async () => {
    const run = db.run.bind(db);
    vi.spyOn(db, 'run').mockImplementation(async (sql) => {
      if (sql.startsWith('COPY')) {
        const message = `IO Error: Could not write file "${volume.dir}/x.parquet": No space left on device`;
        throw new TributaryError('SQL_ERROR', message, { cause: new Error(message) });
      }
      return run(sql);
    });
    const error = await failure(volume.writeSegment(db, draft(2)));
    expect(error.code).toBe('STAGING_FULL');
    expect(error.retry).toBe('transient');
    expect(error.message).toContain(path.join(dir, 'volume'));
    expect(error.message).toContain('writing segment 2');
    expect(error.message).toMatch(/no space left on device \(ENOSPC\); [\d.]+ \w+ free of [\d.]+ \w+/);
    expect(error.message).toContain('gateway position did not advance');
    expect(error.hint).toContain('Free space on the file system that holds');
    await expectUnchanged();
  });

  it('turns ENOSPC and EDQUOT from writing the manifest into STAGING_FULL', async () => {
    for (const code of ['ENOSPC', 'EDQUOT']) {
      failWrite.code = code;
      const error = await failure(volume.writeSegment(db, draft(2)));
      failWrite.code = undefined;
      expect(error.code).toBe('STAGING_FULL');
      expect(error.message).toContain(`(${code})`);
      expect(error.hint).toContain(code === 'EDQUOT' ? 'Raise the disk quota' : 'Free space');
      await expectUnchanged();
    }
  });

  it('rethrows any other failure as it is, and still removes the unsealed directory', async () => {
    failWrite.code = 'EIO';
    const error = await volume.writeSegment(db, draft(2)).catch((e: unknown) => e);
    expect(isTributaryError(error)).toBe(false);
    expect((error as NodeJS.ErrnoException).code).toBe('EIO');
    failWrite.code = undefined;
    await expectUnchanged();
  });

  it('seals the segment once space is back', async () => {
    await volume.writeSegment(db, draft(2));
    expect(await volume.listSegments()).toEqual([1, 2]);
    expect((await volume.loadState()).position).toBe(asPosition('00000002'));
  });

  it("removes a crashed writer's unsealed directory when the state is loaded", async () => {
    const leftover = path.join(volume.dir, '.tmp', 'seg-000000000003-999999');
    await mkdir(leftover, { recursive: true });
    await writeFile(path.join(leftover, 'part.parquet'), 'half');
    expect((await volume.loadState()).seq).toBe(2);
    expect(await unsealed(volume.dir)).toEqual([]);
    // One an earlier version left beside the sealed segments, in a volume this process has not loaded yet.
    const older = new StagingVolume(path.join(dir, 'volume', 'older'), 'older');
    await older.writeSegment(db, draft(1));
    const legacy = path.join(older.dir, '.tmp-seg-000000000002-999999');
    await mkdir(legacy);
    expect((await older.loadState()).seq).toBe(1);
    expect(await readdir(older.dir)).not.toContain('.tmp-seg-000000000002-999999');
  });
});

describe('StagingVolume.readManifest', () => {
  it('reads a segment sealed again under the same number afresh, though the first one was read before', async () => {
    const other = new StagingVolume(path.join(dir, 'volume', 'again'), 'again');
    await other.writeSegment(db, draft(1));
    expect((await other.readManifest(1)).endPosition).toBe(asPosition('00000001'));
    // The gateway directory is removed to start over, and segment 1 is sealed again with other content.
    await rm(other.dir, { recursive: true, force: true });
    await other.writeSegment(db, { ...draft(1), endPosition: asPosition('00000042') });
    expect((await other.readManifest(1)).endPosition).toBe(asPosition('00000042'));
  });
});
