import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Warehouse } from '../../catalog/warehouse.js';
import { SqlSession } from '../sql-session.js';

describe('LIST', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'tributary-list-'));
    await mkdir(join(root, 'cat', 'landing', 'vol', 'gw', 'seg-000000000001'), { recursive: true });
    await writeFile(join(root, 'cat', 'landing', 'vol', 'gw', 'seg-000000000001', '_manifest.json'), '{}');
    await writeFile(join(root, 'cat', 'landing', 'vol', '.tributary-volume'), 'cat.landing.vol\n');
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('lists one level of a volume, hidden files left out, with dbfs paths', async () => {
    await using session = await SqlSession.open(new Warehouse(root));
    const top = await session.execute("LIST 'dbfs:/Volumes/cat/landing/vol/'");
    expect(top.rows.map((r) => [r['path'], r['name'], r['size']])).toEqual([
      ['dbfs:/Volumes/cat/landing/vol/gw/', 'gw/', 0],
    ]);
    const inner = await session.execute("LIST '/Volumes/cat/landing/vol/gw/seg-000000000001'");
    expect(inner.rows.map((r) => [r['name'], r['size']])).toEqual([['_manifest.json', 2]]);
  });

  it('refuses paths outside a volume, and names a missing one', async () => {
    await using session = await SqlSession.open(new Warehouse(root));
    await expect(session.execute("LIST '/etc'")).rejects.toThrow(/volume path/);
    await expect(session.execute("LIST 'dbfs:/Volumes/cat/landing/vol/../../../..'")).rejects.toThrow(
      /leaves the volume/,
    );
    await expect(session.execute("LIST 'dbfs:/Volumes/cat/landing/nope/'")).rejects.toThrow(
      /No such volume path/,
    );
  });
});
