import { describe, expect, it } from 'vitest';
import { TributaryError } from '../core/errors.js';
import { silentLogger } from './logger.js';
import { runSchedules } from './scheduler.js';

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('runSchedules', () => {
  it('runs continuous and cron schedules, never overlapping a pipeline or a gateway', async () => {
    const controller = new AbortController();
    let running = new Map<string, number>();
    const overlaps: string[] = [];
    const rounds = { fast: 0, cron: 0, slowCron: 0 };
    const round = (name: keyof typeof rounds, key: string, ms: number) => async () => {
      const now = (running.get(key) ?? 0) + 1;
      running = new Map(running).set(key, now);
      if (now > 1) overlaps.push(`${name} overlapped on ${key}`);
      await wait(ms);
      rounds[name]++;
      running = new Map(running).set(key, (running.get(key) ?? 1) - 1);
    };
    const done = runSchedules(
      [
        { name: 'fast', exclusiveKey: 'gw1', schedule: 'continuous', round: round('fast', 'gw1', 20) },
        // Every second, on the same gateway as `fast`: they take turns.
        {
          name: 'cron',
          exclusiveKey: 'gw1',
          schedule: { cron: '* * * * * *' },
          round: round('cron', 'gw1', 50),
        },
        // Every second, but each round takes 1.5 s: fire times that pass meanwhile are skipped.
        {
          name: 'slowCron',
          exclusiveKey: 'gw2',
          schedule: { cron: '* * * * * *' },
          round: round('slowCron', 'gw2', 1500),
        },
      ],
      { signal: controller.signal, log: silentLogger, continuousIntervalMs: 50 },
    );
    await wait(3500);
    controller.abort();
    await done;
    expect(overlaps).toEqual([]);
    expect(rounds.fast).toBeGreaterThan(10);
    expect(rounds.cron).toBeGreaterThanOrEqual(2);
    expect(rounds.slowCron).toBeGreaterThanOrEqual(1);
    expect(rounds.slowCron).toBeLessThanOrEqual(3);
  });

  it('retries transient failures, stops a pipeline on a fatal one, and keeps the others running', async () => {
    const controller = new AbortController();
    let flaky = 0;
    let healthy = 0;
    const done = runSchedules(
      [
        {
          name: 'flaky',
          exclusiveKey: 'a',
          schedule: 'continuous',
          round: async () => {
            flaky++;
            if (flaky < 3) throw new TributaryError('SOURCE_UNREACHABLE', 'down for a moment');
            throw new TributaryError('SOURCE_AUTH_FAILED', 'wrong password');
          },
        },
        {
          name: 'healthy',
          exclusiveKey: 'b',
          schedule: 'continuous',
          round: async () => {
            healthy++;
          },
        },
      ],
      { signal: controller.signal, log: silentLogger, continuousIntervalMs: 10, initialBackoffMs: 10 },
    );
    await wait(500);
    controller.abort();
    await expect(done).rejects.toThrow('Pipeline(s) flaky stopped');
    expect(flaky).toBe(3);
    expect(healthy).toBeGreaterThan(5);
  });

  it('refuses a cron expression that is not one, naming the pipeline', async () => {
    await expect(
      runSchedules(
        [{ name: 'p', exclusiveKey: 'g', schedule: { cron: 'every tuesday' }, round: async () => {} }],
        {
          signal: new AbortController().signal,
          log: silentLogger,
          continuousIntervalMs: 10,
        },
      ),
    ).rejects.toThrow('pipelines.p.schedule.cron');
  });
});
