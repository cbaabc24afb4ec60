import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deltaRows } from '../../test/harness/delta-rows.js';
import { Warehouse } from '../catalog/warehouse.js';
import { optimize } from '../delta/operations/optimize.js';
import { loadSnapshot } from '../delta/snapshot.js';
import { DuckDb } from '../engine/duckdb.js';
import { silentLogger } from '../pipeline/logger.js';
import { EventRecorder } from './event-recorder.js';
import { appendPipelineEvents, pipelineEventsPath } from './pipeline-events.js';

describe('EventRecorder on a real pipeline_events table', () => {
  let dir: string;
  let db: DuckDb;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'events-'));
    db = await DuckDb.open();
  });
  afterAll(async () => {
    await db?.[Symbol.asyncDispose]();
    await rm(dir, { recursive: true, force: true });
  });

  /** A recorder writing into its own warehouse, with writes run one after another as RoundResources does. */
  function recorder(name: string, updateId = 'u1') {
    const warehouse = new Warehouse(join(dir, name));
    let chain = Promise.resolve();
    const events = new EventRecorder(
      { pipelineName: 'p', gatewayName: 'g', updateId },
      {
        write: (batch) => appendPipelineEvents(db, warehouse, batch),
        schedule: (task) => {
          chain = chain.then(task);
        },
        log: silentLogger,
      },
    );
    const rows = () =>
      deltaRows(db, pipelineEventsPath(warehouse), {
        select: "event_type, state, coalesce(error_code, '-'), message, event_id",
      });
    return { events, warehouse, rows };
  }
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('shows long work as RUNNING, then replaces that row with its outcome under the same id', async () => {
    const { events, rows, warehouse } = recorder('replace');
    const op = events.begin({ eventType: 'snapshot', message: 'starting' }, 10);
    await sleep(50);
    await events.settled();
    const running = await rows();
    expect(running).toEqual([`snapshot | RUNNING | - | starting | ${op.eventId}`]);
    op.update({ message: 'half way' });
    op.end({ state: 'COMPLETED', message: 'done' });
    await events.settled();
    expect(await rows()).toEqual([`snapshot | COMPLETED | - | done | ${op.eventId}`]);
    // The RUNNING row's file was removed, not rewritten: one file, the outcome's.
    expect((await loadSnapshot(pipelineEventsPath(warehouse))).files).toHaveLength(1);
  });

  it('writes short work as its outcome alone, and nothing for short work that asks for nothing', async () => {
    const { events, rows } = recorder('short');
    const op = events.begin({ eventType: 'snapshot', message: 'starting' }, 60_000);
    const quiet = events.begin({ eventType: 'catch_up', message: 'reading' }, 60_000);
    op.end({ state: 'COMPLETED', message: 'done' });
    quiet.end({ state: 'COMPLETED', message: 'read' }, true);
    events.record({ eventType: 'flow_progress', message: 'applied', tableName: 'c.s.t', rowsInserted: 3 });
    events.flush();
    await events.settled();
    expect((await rows()).map((r) => r.split(' | ').slice(0, 4).join(' | '))).toEqual([
      'flow_progress | COMPLETED | - | applied',
      'snapshot | COMPLETED | - | done',
    ]);
  });

  it('finds a RUNNING row that compaction folded into a larger file, and rewrites that file without it', async () => {
    const { events, rows, warehouse } = recorder('compacted');
    for (const n of [1, 2, 3]) {
      events.record({ eventType: 'update', message: `round ${n}` });
      events.flush();
    }
    const op = events.begin({ eventType: 'refresh', message: 'refreshing' }, 10);
    await sleep(50);
    await events.settled();
    const root = pipelineEventsPath(warehouse);
    expect((await loadSnapshot(root)).files).toHaveLength(4);
    await optimize(root, {});
    expect((await loadSnapshot(root)).files).toHaveLength(1);
    op.end({ state: 'FAILED', errorCode: 'SOURCE_UNREACHABLE', message: 'source gone' });
    await events.settled();
    expect((await rows()).map((r) => r.split(' | ').slice(0, 4).join(' | '))).toEqual([
      'refresh | FAILED | SOURCE_UNREACHABLE | source gone',
      'update | COMPLETED | - | round 1',
      'update | COMPLETED | - | round 2',
      'update | COMPLETED | - | round 3',
    ]);
  });

  it("turns a killed process's RUNNING rows FAILED with RUN_INTERRUPTED, and records its round if it showed none", async () => {
    const dead = recorder('killed', 'dead-update');
    const round = dead.events.begin({ eventType: 'update', message: 'running' }, 10);
    const snapshot = dead.events.begin({ eventType: 'snapshot', message: '40% staged' }, 10);
    await sleep(50);
    await dead.events.settled();
    expect(round.eventId).not.toBe(snapshot.eventId);

    // The next process takes over the lock: one round row is all it takes, the dead one's, now FAILED.
    const next = recorder('killed', 'next-update');
    next.events.interrupted({ updateId: 'dead-update', pipelineName: 'p' }, 'killed', {
      eventType: 'update',
      state: 'FAILED',
      errorCode: 'RUN_INTERRUPTED',
      message: 'killed',
    });
    await next.events.settled();
    expect((await next.rows()).map((r) => r.split(' | ').slice(0, 4).join(' | '))).toEqual([
      'snapshot | FAILED | RUN_INTERRUPTED | 40% staged; killed',
      'update | FAILED | RUN_INTERRUPTED | running; killed',
    ]);

    // A process killed before its round showed a row: the next one records the round.
    const quick = recorder('killed-quick', 'quick-update');
    quick.events.record({ eventType: 'update', message: 'an earlier round' });
    quick.events.flush();
    await quick.events.settled();
    const after = recorder('killed-quick', 'after-update');
    after.events.interrupted({ updateId: 'quick-update', pipelineName: 'p' }, 'killed', {
      eventType: 'update',
      state: 'FAILED',
      errorCode: 'RUN_INTERRUPTED',
      message: 'killed early',
    });
    await after.events.settled();
    expect((await after.rows()).map((r) => r.split(' | ').slice(0, 4).join(' | '))).toEqual([
      'update | COMPLETED | - | an earlier round',
      'update | FAILED | RUN_INTERRUPTED | killed early',
    ]);
  });
});
