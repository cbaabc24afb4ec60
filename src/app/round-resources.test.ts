/**
 * RoundResources without a source: one DuckDB for every caller, a failed open retried by the next caller, and
 * background tasks run one after another and awaited by dispose.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RoundResources } from './round-resources.js';

const saved = process.env['TRIBUTARY_MEMORY_LIMIT'];
afterEach(() => {
  if (saved === undefined) delete process.env['TRIBUTARY_MEMORY_LIMIT'];
  else process.env['TRIBUTARY_MEMORY_LIMIT'] = saved;
});

describe('RoundResources', () => {
  it('gives the round and a background task asking at once the same database', async () => {
    await using resources = new RoundResources();
    const [a, b] = await Promise.all([resources.db(), resources.db()]);
    expect(a).toBe(b);
    expect(await resources.db()).toBe(a);
  });

  it('reports a database that cannot open, and opens it for the next caller once it can', async () => {
    await using resources = new RoundResources();
    process.env['TRIBUTARY_MEMORY_LIMIT'] = 'plenty';
    await expect(resources.db()).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
    process.env['TRIBUTARY_MEMORY_LIMIT'] = '128MB';
    const db = await resources.db();
    expect(await db.rows("SELECT current_setting('memory_limit') AS m")).toEqual([{ m: '122.0 MiB' }]);
  });

  it('runs background tasks in order, past a failing one, and dispose waits for them', async () => {
    const done: number[] = [];
    const resources = new RoundResources();
    const later = (n: number, ms: number) => async () => {
      await new Promise((resolve) => setTimeout(resolve, ms));
      done.push(n);
    };
    resources.inBackground(later(1, 30));
    resources.inBackground(async () => {
      throw new Error('a broken events table');
    });
    resources.inBackground(later(2, 1));
    expect(done).toEqual([]);
    await resources[Symbol.asyncDispose]();
    expect(done).toEqual([1, 2]);
  });
});
