/**
 * A long retention keeps many thousands of applied segments. A round must not pay for them: apply reads the
 * manifests of its backlog only (the gateway state says which segment last held each table), the newest
 * segment is found without listing the directory, and retention stops at the first segment it must keep.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { latestSnapshot } from '../delta/latest-snapshot.js';
import { DuckDb } from '../engine/duckdb.js';
import { type GatewayState, INITIAL_GATEWAY_STATE } from '../staging/segment-format.js';
import { StagingVolume } from '../staging/staging-volume.js';
import { sealShopSegment } from '../testing/staged-segments.js';
import { type ApplyTarget, applyStaged } from './apply.js';
import { silentLogger } from './logger.js';
import { enforceStagingRetention } from './staging-retention.js';

let dir: string;
let db: DuckDb;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'staging-backlog-'));
  db = await DuckDb.open();
});

afterAll(async () => {
  await db?.[Symbol.asyncDispose]();
  await rm(dir, { recursive: true, force: true });
});

const seal = (volume: StagingVolume, state: GatewayState, tables: readonly string[]) =>
  sealShopSegment(volume, db, state, tables);

const target = (table: string): ApplyTarget => ({
  sourceKey: `shop.${table}`,
  destination: `c.bronze.${table}`,
  tableRoot: path.join(dir, 'warehouse', table),
});

async function apply(volume: StagingVolume, tables: readonly string[]) {
  return applyStaged({
    pipeline: 'p',
    db,
    volume,
    targets: tables.map(target),
    maxSegmentsPerCommit: 64,
    signal: new AbortController().signal,
    log: silentLogger,
  });
}

describe('a round with many applied segments retained', () => {
  it('reads the manifests of its backlog only, and none of a quiet table', async () => {
    const volume = new StagingVolume(path.join(dir, 'volume', 'gw'), 'gw');
    let state = await seal(volume, INITIAL_GATEWAY_STATE, ['quiet', 'busy']);
    for (let i = 0; i < 29; i++) state = await seal(volume, state, ['busy']);
    const first = await apply(volume, ['quiet', 'busy']);
    expect(first.map((r) => [r.destination, r.inserted])).toEqual([
      ['c.bronze.quiet', 1],
      ['c.bronze.busy', 30],
    ]);

    state = await seal(volume, state, ['busy']);
    const read = vi.spyOn(volume, 'readManifest');
    const second = await apply(volume, ['quiet', 'busy']);
    expect(second.map((r) => [r.destination, r.inserted])).toEqual([
      ['c.bronze.quiet', 0],
      ['c.bronze.busy', 1],
    ]);
    // The newest segment (for the state), then the one segment not applied yet: nothing of the other 30.
    expect(new Set(read.mock.calls.map(([seq]) => seq))).toEqual(new Set([31]));
    read.mockRestore();
  });

  it('still fails a table whose log cannot be read on its own, applying the others', async () => {
    const volume = new StagingVolume(path.join(dir, 'volume', 'broken'), 'broken');
    await seal(volume, INITIAL_GATEWAY_STATE, ['sound', 'corrupt']);
    const log = path.join(dir, 'warehouse', 'corrupt', '_delta_log');
    await mkdir(log, { recursive: true });
    await writeFile(path.join(log, '00000000000000000000.json'), 'not a commit\n');
    const failed = await apply(volume, ['corrupt', 'sound']).catch((e: unknown) => e);
    expect(String((failed as Error).message)).toMatch(
      /^1 of 2 table\(s\) could not be applied: c\.bronze\.corrupt /,
    );
    expect(
      (await latestSnapshot(path.join(dir, 'warehouse', 'sound')))?.txnVersion('tributary:p:c.bronze.sound'),
    ).toBe(1);
  });

  it('finds the newest segment from its hint, following it past a stale one and listing without one', async () => {
    const volume = new StagingVolume(path.join(dir, 'volume', 'gw'), 'gw');
    const hint = path.join(volume.dir, '.newest-segment');
    expect((await readFile(hint, 'utf8')).trim()).toBe('31');
    for (const stale of ['5', '99', 'rubbish']) {
      await writeFile(hint, stale);
      expect(await volume.newestSegment()).toBe(31);
      expect((await readFile(hint, 'utf8')).trim()).toBe('31');
    }
    await rm(hint);
    expect(await volume.newestSegment()).toBe(31);
    expect((await volume.loadState()).seq).toBe(31);
  });

  it('stops retention at the first segment inside retention, and checks at most every so often', async () => {
    const volume = new StagingVolume(path.join(dir, 'volume', 'retained'), 'retained');
    let state = INITIAL_GATEWAY_STATE;
    for (let i = 0; i < 5; i++) state = await seal(volume, state, ['t']);
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < 5; i++) state = await seal(volume, state, ['t']);
    const sixth = Date.parse((await volume.readManifest(6)).createdAt);
    const fifth = Date.parse((await volume.readManifest(5)).createdAt);
    const now = sixth + 1;
    const retentionMs = now - fifth - 1;
    expect(retentionMs).toBeGreaterThan(0);
    // Counted: reading every table's progress is work a skipped check must not do.
    let progressAsked = 0;
    const progress = async () => {
      progressAsked++;
      return [{ pipeline: 'p', sourceKey: 'shop.t', appliedSeq: 10 }];
    };
    const read = vi.spyOn(volume, 'readManifest');
    const report = await enforceStagingRetention({ volume, progress, retentionMs, now, log: silentLogger });
    expect(report.deleted).toEqual([1, 2, 3, 4, 5]);
    // The newest (for the state) and segments 1 to 6; 7 to 9 are never read.
    expect([...new Set(read.mock.calls.map(([seq]) => seq))].sort((a, b) => a - b)).toEqual([
      1, 2, 3, 4, 5, 6, 10,
    ]);
    read.mockRestore();

    // Checked again too soon: nothing is looked at, though everything but the newest has expired by now.
    const later = await enforceStagingRetention({
      volume,
      progress,
      retentionMs,
      now: now + 1,
      log: silentLogger,
    });
    expect(later.deleted).toEqual([]);
    expect(progressAsked).toBe(1);
    const urgent = await enforceStagingRetention({
      volume,
      progress,
      retentionMs: 0,
      now: Date.now() + 1000,
      log: silentLogger,
      urgent: true,
    });
    expect(urgent.deleted).toEqual([6, 7, 8, 9]);
  });
});
