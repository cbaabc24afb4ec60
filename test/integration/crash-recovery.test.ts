/**
 * A run killed with SIGKILL at any point, then run again, leaves bronze equal to the source: nothing lost,
 * nothing duplicated, and no staged segment applied twice (invariants 1-3 and 6 of docs/architecture.md).
 * Crash points are hit deterministically through TRIBUTARY_FAULT, then at random moments.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/testing/seeded-random.js';
import { type PipelineFixture, pipelineFixture, sourceAndBronze } from '../harness/pipeline-fixture.js';

const SMALL_SEGMENTS = { TRIBUTARY_SNAPSHOT_CHUNK_ROWS: '400', TRIBUTARY_SEGMENT_MAX_CHANGES: '150' };

/** Deterministic workload: inserts, updates (some of the key), deletes, in several transactions. */
async function mutate(f: PipelineFixture, seed: number, transactions = 12): Promise<void> {
  const rand = seededRandom(seed);
  for (let t = 0; t < transactions; t++) {
    await f.conn.query('START TRANSACTION');
    for (let i = 0; i < 40; i++) {
      const id = 1 + Math.floor(rand() * 4000);
      const op = rand();
      if (op < 0.4) {
        await f.conn.query(
          'INSERT INTO items (id, label, qty) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE qty = qty + 1',
          [id, `new-${seed}-${t}-${i}`, i],
        );
      } else if (op < 0.75) {
        await f.conn.query('UPDATE items SET label = ?, qty = qty * 2 WHERE id = ?', [
          `upd-${seed}-${t}-${i}`,
          id,
        ]);
      } else if (op < 0.8) {
        // Moves a row to another key: a delete of the old key and an insert of the new one.
        await f.conn.query('UPDATE IGNORE items SET id = id + 5000 WHERE id = ?', [id]);
      } else {
        await f.conn.query('DELETE FROM items WHERE id = ?', [id]);
      }
    }
    await f.conn.query('COMMIT');
  }
}

async function expectConverged(f: PipelineFixture): Promise<void> {
  const { source, bronze } = await sourceAndBronze(f, 'items', 'id');
  expect(bronze.map(({ _commit_timestamp, ...rest }) => rest)).toEqual(source);
  const [dups] = await f.sql('SELECT count(*) AS n, count(DISTINCT id) AS d FROM bronze.items');
  expect(dups?.['n']).toBe(dups?.['d']);
}

/** Each commit's txn version for the pipeline; a segment applied twice would repeat or reorder one. */
async function txnVersions(f: PipelineFixture): Promise<number[]> {
  const log = join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', 'items', '_delta_log');
  const versions: number[] = [];
  for (const name of (await readdir(log)).filter((n) => n.endsWith('.json')).sort()) {
    for (const line of (await readFile(join(log, name), 'utf8')).split('\n')) {
      if (line.includes('"txn"'))
        versions.push((JSON.parse(line) as { txn: { version: number } }).txn.version);
    }
  }
  return versions;
}

async function segmentDirs(f: PipelineFixture): Promise<string[]> {
  const dir = join(f.dir, 'lakehouse', 'retail_analytics', 'landing', 'ingestion_volume', 'gw');
  return (await readdir(dir)).filter((n) => n.startsWith('seg-')).sort();
}

describe('crash recovery', () => {
  let f: PipelineFixture;

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'crash',
      setup: async (conn) => {
        await conn.query('CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(100), qty INT)');
        const rows = Array.from({ length: 3000 }, (_, i) => [i + 1, `item-${i + 1}`, i % 17]);
        await conn.query('INSERT INTO items VALUES ?', [rows]);
      },
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  const crashAt = async (fault: string) => {
    const r = await f.cli(['run', 'p', '--once'], { env: { ...SMALL_SEGMENTS, TRIBUTARY_FAULT: fault } });
    expect(r.signal, `expected the run to die at ${fault}; stderr:\n${r.stderr}`).toBe('SIGKILL');
  };
  const recover = async () => {
    const r = await f.cli(['run', 'p', '--once'], { env: SMALL_SEGMENTS });
    expect(r.code, r.stderr).toBe(0);
  };

  it('resumes a killed snapshot after its last staged chunk, and converges with changes made meanwhile', async () => {
    await crashAt('after-snapshot-segment:3');
    const staged = await segmentDirs(f);
    expect(staged.length).toBe(3);
    // Changes behind and ahead of the resume point, while Tributary is down.
    await f.conn.query("UPDATE items SET label = 'changed-early' WHERE id IN (1, 2, 3)");
    await f.conn.query('DELETE FROM items WHERE id IN (10, 2999)');
    await f.conn.query("INSERT INTO items VALUES (-5, 'below-every-key', 1), (9000, 'above', 2)");
    const r = await f.cli(['run', 'p', '--once'], { env: SMALL_SEGMENTS });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('resuming the snapshot');
    // Nothing staged before the crash was thrown away or read again.
    const after = await segmentDirs(f);
    expect(after.slice(0, 3)).toEqual(staged);
    await expectConverged(f);
  });

  it('recovers from kills at every crash point of incremental runs', async () => {
    let seed = 1;
    for (const fault of [
      'after-stream-segment:1',
      'after-stream-segment:2',
      'before-delta-commit:1',
      'after-delta-commit:1',
    ]) {
      await mutate(f, seed++);
      await crashAt(fault);
      await recover();
      await expectConverged(f);
    }
    const versions = await txnVersions(f);
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
    expect(new Set(versions).size).toBe(versions.length);
  });

  it('recovers from kills at random moments, repeatedly', async () => {
    let seed = 100;
    let killed = 0;
    for (let i = 0; i < 12; i++) {
      await mutate(f, seed++, 6);
      const r = await f.cli(['run', 'p', '--once'], {
        env: SMALL_SEGMENTS,
        killAfterMs: 150 + ((i * 197) % 900),
      });
      if (r.signal === 'SIGKILL') killed++;
      else expect(r.code, r.stderr).toBe(0);
    }
    await recover();
    await expectConverged(f);
    // The kills must have landed mid-run at least sometimes, or this test proves nothing.
    expect(killed).toBeGreaterThan(0);
  });
});
