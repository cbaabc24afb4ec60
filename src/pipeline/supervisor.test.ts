import { describe, expect, it } from 'vitest';
import { TributaryError } from '../core/errors.js';
import { silentLogger } from './logger.js';
import { superviseRounds } from './supervisor.js';

describe('superviseRounds', () => {
  it('retries transient failures with growing backoff and stops when aborted', async () => {
    const controller = new AbortController();
    const times: number[] = [];
    let calls = 0;
    const retries: number[] = [];
    await superviseRounds(
      async (retry) => {
        retries.push(retry);
        times.push(Date.now());
        calls++;
        if (calls <= 3) throw new TributaryError('SOURCE_UNREACHABLE', 'down');
        controller.abort();
      },
      {
        signal: controller.signal,
        log: silentLogger,
        intervalMs: 0,
        initialBackoffMs: 20,
        maxBackoffMs: 1000,
      },
    );
    expect(calls).toBe(4);
    // Each round knows which retry it is, so its pipeline_events row can say so.
    expect(retries).toEqual([0, 1, 2, 3]);
    const gaps = times.slice(1).map((t, i) => t - (times[i] as number));
    // 20, 40, 80 ms: each wait at least the scheduled backoff.
    expect(gaps[0]).toBeGreaterThanOrEqual(19);
    expect(gaps[1]).toBeGreaterThanOrEqual(39);
    expect(gaps[2]).toBeGreaterThanOrEqual(79);
  });

  it('ends on the first fatal error, which a retry cannot fix', async () => {
    let calls = 0;
    const fatal = new TributaryError('SOURCE_AUTH_FAILED', 'wrong password');
    await expect(
      superviseRounds(
        async () => {
          calls++;
          throw fatal;
        },
        { signal: new AbortController().signal, log: silentLogger, intervalMs: 0, initialBackoffMs: 1 },
      ),
    ).rejects.toBe(fatal);
    expect(calls).toBe(1);
  });
});
