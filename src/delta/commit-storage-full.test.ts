/**
 * A full disk (ENOSPC) or quota (EDQUOT) while a commit file is written: DELTA_STORAGE_FULL, no temp file and
 * no commit file left, the table readable at its previous version, and the same commit succeeding once space
 * is back. The full pipeline on a real tmpfs is in test/integration/staging-full.test.ts.
 */
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { isTributaryError, type TributaryError } from '../core/errors.js';
import { commit, DEFAULT_PROTOCOL, newTableMetadata } from './commit.js';
import type { StructType } from './schema.js';
import { loadSnapshot } from './snapshot.js';

const failCommitWrite = vi.hoisted(() => ({ code: undefined as string | undefined }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>();
  const open = (async (...args: Parameters<typeof actual.open>) => {
    const handle = await actual.open(...args);
    const code = failCommitWrite.code;
    // Only the commit's temp file, `_delta_log/.<version>.json.<uuid>.tmp`, fails to be written.
    if (code === undefined || !/[/\\]_delta_log[/\\]\.\d{20}\.json\..+\.tmp$/.test(String(args[0])))
      return handle;
    return new Proxy(handle, {
      get(target, property) {
        if (property === 'writeFile') {
          return async () => {
            throw Object.assign(new Error(`${code}: write failed, write`), { code, syscall: 'write' });
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }) as typeof actual.open;
  return { ...actual, open };
});

const schema: StructType = {
  type: 'struct',
  fields: [{ name: 'id', type: 'long', nullable: false, metadata: {} }],
};

let dir: string;
let root: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'delta-full-'));
  root = path.join(dir, 't');
  await commit(root, -1, [{ protocol: DEFAULT_PROTOCOL }, { metaData: newTableMetadata(schema) }], {
    operation: 'CREATE TABLE',
  });
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('commit on a full disk', () => {
  for (const code of ['ENOSPC', 'EDQUOT']) {
    it(`throws DELTA_STORAGE_FULL on ${code} and leaves the table at its previous version`, async () => {
      failCommitWrite.code = code;
      const error = (await commit(root, 0, [{ txn: { appId: 'a', version: 1 } }], {
        operation: 'WRITE',
      }).catch((e: unknown) => e)) as TributaryError;
      failCommitWrite.code = undefined;
      expect(isTributaryError(error)).toBe(true);
      expect(error.code).toBe('DELTA_STORAGE_FULL');
      expect(error.retry).toBe('transient');
      expect(error.message).toContain(`(${code})`);
      expect(error.message).toContain('Nothing was committed; the table stays at version 0');
      expect(error.hint).toContain(root);
      expect(await readdir(path.join(root, '_delta_log'))).toEqual(['00000000000000000000.json']);
      expect((await loadSnapshot(root)).version).toBe(0);
    });
  }

  it('commits once space is back', async () => {
    expect(await commit(root, 0, [{ txn: { appId: 'a', version: 1 } }], { operation: 'WRITE' })).toBe(1);
    expect((await loadSnapshot(root)).txnVersion('a')).toBe(1);
  });
});
