import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTributaryError } from '../../core/errors.js';
import { asPosition } from '../../core/position.js';
import type { SourceShape } from './ddl-shapes.js';
import { SchemaHistory } from './schema-history.js';

const shape = (...names: string[]): SourceShape => ({
  charset: 'utf8mb4',
  columns: names.map((name) => ({ name, type: 'int(11)', charset: null })),
});
const p = (n: number) => asPosition(`~${String(n).padStart(24, '0')} mysql-bin.000001:00000000000000000004`);

describe('SchemaHistory', () => {
  let dir: string;
  let path: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'schema-history-'));
    path = join(dir, 'sub', 'history.jsonl');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('gives each table its last shape at or before a position, or its first after it, and survives a reopen', async () => {
    const history = new SchemaHistory(path);
    await history.record([
      { position: p(10), table: 's.a', shape: shape('id') },
      { position: p(30), table: 's.b', shape: shape('id', 'x') },
    ]);
    // Recorded out of order (a snapshot's table read by a later transaction): kept in position order.
    await history.record([
      { position: p(20), table: 's.a', shape: shape('id', 'v') },
      { position: p(15), table: 's.c', shape: null },
    ]);
    for (const h of [history, new SchemaHistory(path)]) {
      const at = await h.at(p(25));
      expect(at.get('s.a')?.columns.map((c) => c.name)).toEqual(['id', 'v']);
      expect(at.get('s.b')?.columns.map((c) => c.name)).toEqual(['id', 'x']);
      expect(at.get('s.c')).toBeNull();
      expect((await h.at(p(12))).get('s.a')?.columns.map((c) => c.name)).toEqual(['id']);
      expect((await h.at(p(5))).get('s.a')?.columns.map((c) => c.name)).toEqual(['id']);
      expect((await h.at(p(5))).has('s.d')).toBe(false);
    }
  });

  it('ignores a torn last line (a crash during an append) and refuses a corrupt one before it', async () => {
    await new SchemaHistory(path).record([{ position: p(10), table: 's.a', shape: shape('id') }]);
    await appendFile(path, '{"position":"~0000');
    const reopened = new SchemaHistory(path);
    expect((await reopened.at(p(10))).get('s.a')?.columns).toHaveLength(1);
    // The next entry starts a line of its own, so the torn one stays the only bad line, and stays ignorable.
    await reopened.record([{ position: p(20), table: 's.a', shape: shape('id', 'v') }]);
    expect((await new SchemaHistory(path).at(p(20))).get('s.a')?.columns).toHaveLength(2);

    // A whole last entry without its newline: the next append adds the newline first.
    await writeFile(path, (await readFile(path, 'utf8')).trimEnd());
    const unterminated = new SchemaHistory(path);
    await unterminated.record([{ position: p(30), table: 's.b', shape: shape('id') }]);
    const both = await new SchemaHistory(path).at(p(30));
    expect([both.get('s.a')?.columns.length, both.get('s.b')?.columns.length]).toEqual([2, 1]);

    await writeFile(path, `not json\n${await readFile(path, 'utf8')}`);
    const error = await new SchemaHistory(path).at(p(10)).catch((e: unknown) => e);
    expect(isTributaryError(error) && error.code).toBe('STAGING_CORRUPT');
    expect(String((error as Error).message)).toContain(`${path} is unreadable at line 1`);
  });

  it('compacts away entries no later start can need', async () => {
    const history = new SchemaHistory(path);
    const entries = Array.from({ length: 1_200 }, (_, i) => ({
      position: p(i),
      table: `s.t${i % 3}`,
      shape: shape('id', `c${i}`),
    }));
    await history.record(entries);
    const at = await history.at(p(1_100));
    expect(at.get('s.t0')?.columns[1]?.name).toBe('c1098');
    const lines = (await readFile(path, 'utf8')).trim().split('\n');
    // The last entry per table at or before 1,100, and the 99 after it.
    expect(lines).toHaveLength(3 + 99);
    const reopened = await new SchemaHistory(path).at(p(1_150));
    expect(reopened.get('s.t1')?.columns[1]?.name).toBe('c1150');
    expect(reopened.get('s.t2')?.columns[1]?.name).toBe('c1148');
  });
});
