/**
 * applyStaged on SCD type 2 targets: a TRUNCATE (reset) in the middle of the staged segments ends one commit and
 * starts the next, the history before it is kept, the reset closes at its recorded commit time, and applying
 * again changes nothing (the txn action). SCD type 1 targets still skip everything before the reset.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deltaRows } from '../../test/harness/delta-rows.js';
import { asPosition } from '../core/position.js';
import type { TableSchema } from '../core/table.js';
import { loadSnapshot } from '../delta/snapshot.js';
import { DuckDb } from '../engine/duckdb.js';
import { INITIAL_GATEWAY_STATE, type StagedOp } from '../staging/segment-format.js';
import { StagingVolume } from '../staging/staging-volume.js';
import { type ApplyTarget, applyStaged, txnAppId } from './apply.js';
import { silentLogger } from './logger.js';

const SOURCE: TableSchema = {
  id: { schema: 'shop', table: 'items' },
  columns: [
    { name: 'id', type: 'integer', nullable: false, sourceType: 'int' },
    { name: 'name', type: 'string', nullable: true, sourceType: 'varchar(20)' },
  ],
  primaryKey: ['id'],
};
const KEY = 'shop.items';
const T0 = Date.parse('2024-06-01T12:00:00Z');
const at = (s: number) => new Date(T0 + s * 1000);
const iso = (s: number) => at(s).toISOString().replace('T', ' ').replace('.000Z', '+00');

let dir: string;
let db: DuckDb;
let volume: StagingVolume;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'apply-history-'));
  db = await DuckDb.open();
  volume = new StagingVolume(path.join(dir, 'volume', 'gw'), 'gw');
  const segments: Array<{ reset?: number; changes: Array<[StagedOp, number, string, number]> }> = [
    {
      changes: [
        ['c', 1, 'a', 1],
        ['c', 2, 'a', 1],
        ['u', 1, 'b', 2],
      ],
    },
    // TRUNCATE at 5 s (the manifest's first commit time is earlier: other tables' changes), then key 3.
    { reset: 5, changes: [['c', 3, 'a', 6]] },
    { changes: [['u', 3, 'b', 7]] },
  ];
  for (const [i, s] of segments.entries()) {
    const seq = i + 1;
    await volume.writeSegment(db, {
      seq,
      origin: 'stream',
      snapshot: null,
      startPosition: null,
      endPosition: asPosition(String(seq).padStart(8, '0')),
      firstCommitTime: at(0),
      lastCommitTime: at(10),
      tables: new Map([
        [
          KEY,
          {
            schema: SOURCE,
            reset: s.reset !== undefined,
            ...(s.reset !== undefined ? { resetCommitTime: at(s.reset) } : {}),
            rows: s.changes.map(([op, id, name, t], ord) => ({
              ord,
              op,
              commitUs: BigInt(at(t).getTime()) * 1000n,
              row: { id: String(id), name },
            })),
          },
        ],
      ]),
      state: { ...INITIAL_GATEWAY_STATE, seq },
    });
  }
});

afterAll(async () => {
  await db?.[Symbol.asyncDispose]();
  await rm(dir, { recursive: true, force: true });
});

function read(root: string, columns: string): Promise<string[]> {
  return deltaRows(db, root, { select: columns });
}

function target(name: string, extra: Partial<ApplyTarget>): ApplyTarget {
  return {
    sourceKey: KEY,
    destination: `lake.bronze.${name}`,
    tableRoot: path.join(dir, name),
    ...extra,
  };
}

describe('applyStaged with SCD_TYPE_2', () => {
  for (const [label, properties] of [
    ['copy-on-write', undefined],
    ['deletion vectors', { 'delta.enableDeletionVectors': 'true' }],
  ] as const) {
    it(`keeps the history across a TRUNCATE, once (${label})`, async () => {
      const t = target(`items_${label.replace(' ', '_')}`, {
        scdType: 'SCD_TYPE_2',
        ...(properties ? { tableProperties: properties } : {}),
      });
      const options = {
        pipeline: 'p',
        db,
        volume,
        targets: [t],
        maxSegmentsPerCommit: 64,
        signal: new AbortController().signal,
        log: silentLogger,
      };
      const [report] = await applyStaged(options);
      // One commit up to the TRUNCATE, one from it.
      expect(report).toMatchObject({ commits: 2, inserted: 5, updated: 2, deleted: 0, version: 1 });
      const history = await read(t.tableRoot, 'id, name, __START_AT, __END_AT');
      expect(history).toEqual([
        `1 | a | ${iso(1)} | ${iso(2)}`,
        `1 | b | ${iso(2)} | ${iso(5)}`,
        `2 | a | ${iso(1)} | ${iso(5)}`,
        `3 | a | ${iso(6)} | ${iso(7)}`,
        `3 | b | ${iso(7)} | -`,
      ]);
      const snapshot = await loadSnapshot(t.tableRoot);
      expect(snapshot.txnVersion(txnAppId('p', t.destination))).toBe(3);

      // Applying again: the txn action says everything is in, so nothing is committed.
      const [again] = await applyStaged(options);
      expect(again).toMatchObject({ commits: 0, version: 1 });
      expect(await read(t.tableRoot, 'id, name, __START_AT, __END_AT')).toEqual(history);
    });
  }

  it('SCD_TYPE_1 still starts from the last reset', async () => {
    const t = target('items_scd1', {});
    const [report] = await applyStaged({
      pipeline: 'p',
      db,
      volume,
      targets: [t],
      maxSegmentsPerCommit: 64,
      signal: new AbortController().signal,
      log: silentLogger,
    });
    expect(report).toMatchObject({ commits: 1, version: 0 });
    expect(await read(t.tableRoot, 'id, name')).toEqual(['3 | b']);
  });
});
