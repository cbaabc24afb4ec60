/**
 * Staging volumes with many segments, for tests and benchmarks of what a round reads: each segment holds one
 * inserted row per table of `shop.<table>` (id, v), and the gateway state is kept as capture keeps it.
 */
import { asPosition } from '../core/position.js';
import type { TableSchema } from '../core/table.js';
import type { DuckDb } from '../engine/duckdb.js';
import { afterSegment, type GatewayState } from '../staging/segment-format.js';
import type { StagingVolume } from '../staging/staging-volume.js';

/** `shop.<table>` with an integer key `id` and a string `v`. */
export function shopTable(table: string): TableSchema {
  return {
    id: { schema: 'shop', table },
    columns: [
      { name: 'id', type: 'integer', nullable: false, sourceType: 'int' },
      { name: 'v', type: 'string', nullable: true, sourceType: 'varchar(20)' },
    ],
    primaryKey: ['id'],
  };
}

/** Seals the next stream segment, with an inserted row (id = the segment's seq) for each of `tables`. */
export async function sealShopSegment(
  volume: StagingVolume,
  db: DuckDb,
  state: GatewayState,
  tables: readonly string[],
): Promise<GatewayState> {
  const seq = state.seq + 1;
  const next = {
    ...state,
    ...afterSegment(
      state,
      seq,
      tables.map((t) => `shop.${t}`),
    ),
    position: asPosition(String(seq).padStart(12, '0')),
  };
  const commitUs = BigInt(Date.now()) * 1000n;
  await volume.writeSegment(db, {
    seq,
    origin: 'stream',
    snapshot: null,
    startPosition: state.position,
    endPosition: next.position,
    firstCommitTime: new Date(),
    lastCommitTime: new Date(),
    tables: new Map(
      tables.map((t) => [
        `shop.${t}`,
        {
          schema: shopTable(t),
          reset: false,
          rows: [{ ord: 0, op: 'c' as const, commitUs, row: { id: seq, v: `${t}${seq}` } }],
        },
      ]),
    ),
    state: next,
  });
  return next;
}
