/**
 * PostgreSQL: a run killed with SIGKILL at any point, then run again, leaves bronze equal to the source, and
 * the slot is never confirmed past what staging holds. A watcher polls pg_replication_slots throughout and
 * compares each confirmed_flush_lsn it sees with the gateway's staged position read right after it.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodePgPosition, parseLsn } from '../../src/sources/postgres/lsn.js';
import { seededRandom } from '../../src/testing/seeded-random.js';
import { type PgPipelineFixture, pgPipelineFixture } from '../harness/pg-pipeline-fixture.js';
import { pgAdmin } from '../harness/postgres.js';

const SMALL_SEGMENTS = { TRIBUTARY_SNAPSHOT_CHUNK_ROWS: '400', TRIBUTARY_SEGMENT_MAX_CHANGES: '150' };

async function mutate(f: PgPipelineFixture, seed: number, transactions = 12): Promise<void> {
  const rand = seededRandom(seed);
  for (let t = 0; t < transactions; t++) {
    await f.client.query('BEGIN');
    for (let i = 0; i < 40; i++) {
      const id = 1 + Math.floor(rand() * 4000);
      const op = rand();
      if (op < 0.4) {
        await f.client.query(
          'INSERT INTO items (id, label, qty) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET qty = items.qty + 1',
          [id, `new-${seed}-${t}-${i}`, i],
        );
      } else if (op < 0.75) {
        await f.client.query('UPDATE items SET label = $1, qty = qty * 2 WHERE id = $2', [
          `upd-${seed}-${t}-${i}`,
          id,
        ]);
      } else if (op < 0.8) {
        // Moves a row to another key: pgoutput sends the old key, and capture stages a delete and an insert.
        await f.client.query(
          'UPDATE items SET id = id + 5000 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM items WHERE id = $1 + 5000)',
          [id],
        );
      } else {
        await f.client.query('DELETE FROM items WHERE id = $1', [id]);
      }
    }
    await f.client.query('COMMIT');
  }
}

async function expectConverged(f: PgPipelineFixture): Promise<void> {
  const source = await f.client.query('SELECT id::text, label, qty::text FROM items ORDER BY id');
  const bronze = await f.sql(
    'SELECT CAST(id AS VARCHAR) AS id, label, CAST(qty AS VARCHAR) AS qty FROM bronze.items ORDER BY id',
  );
  expect(bronze).toEqual(source.rows);
}

function gatewayDir(f: PgPipelineFixture): string {
  return join(f.dir, 'lakehouse', 'retail_analytics', 'landing', 'ingestion_volume', 'gw');
}

/** The newest sealed segment's resume position, or undefined before the first full snapshot. */
async function stagedPosition(f: PgPipelineFixture): Promise<bigint | undefined> {
  let names: string[];
  try {
    names = (await readdir(gatewayDir(f))).filter((n) => n.startsWith('seg-')).sort();
  } catch {
    return undefined;
  }
  for (const name of names.reverse()) {
    try {
      const manifest = JSON.parse(await readFile(join(gatewayDir(f), name, '_manifest.json'), 'utf8')) as {
        state: { position: string | null };
      };
      return manifest.state.position === null ? undefined : decodePgPosition(manifest.state.position);
    } catch {
      // Removed by retention between the listing and the read: look at an older one... or the next poll.
    }
  }
  return undefined;
}

describe('crash recovery on PostgreSQL', () => {
  let f: PgPipelineFixture;
  const violations: string[] = [];
  let samples = 0;
  let watching = true;
  let watcher: Promise<void> | undefined;

  beforeAll(async () => {
    f = await pgPipelineFixture({
      prefix: 'pg_crash',
      setup: async (client) => {
        await client.query('CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(100), qty INT)');
        await client.query(
          "INSERT INTO items SELECT g, 'item-' || g, g % 17 FROM generate_series(1, 3000) g",
        );
      },
    });
    const admin = await pgAdmin();
    let created: bigint | undefined;
    watcher = (async () => {
      try {
        while (watching) {
          const r = await admin.query(
            "SELECT confirmed_flush_lsn::text AS lsn FROM pg_replication_slots WHERE slot_name = 'tributary_gw'",
          );
          const text = (r.rows[0] as { lsn: string | null } | undefined)?.lsn;
          if (text) {
            const confirmed = parseLsn(text);
            created ??= confirmed;
            const staged = await stagedPosition(f);
            samples++;
            if (staged === undefined ? confirmed !== created : confirmed > staged) {
              violations.push(`confirmed ${text} but staged ${staged?.toString(16) ?? 'nothing'}`);
            }
          }
          await new Promise((r) => setTimeout(r, 15));
        }
      } finally {
        await admin.end();
      }
    })();
  });
  afterAll(async () => {
    watching = false;
    await watcher;
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
    await f.client.query("UPDATE items SET label = 'changed-early' WHERE id IN (1, 2, 3)");
    await f.client.query('DELETE FROM items WHERE id IN (10, 2999)');
    await f.client.query("INSERT INTO items VALUES (-5, 'below-every-key', 1), (9000, 'above', 2)");
    const r = await f.cli(['run', 'p', '--once'], { env: SMALL_SEGMENTS });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('resuming the snapshot');
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
    expect(killed).toBeGreaterThan(0);
  });

  it('never saw the slot confirmed past what staging held', () => {
    expect(samples).toBeGreaterThan(50);
    expect(violations).toEqual([]);
  });
});
