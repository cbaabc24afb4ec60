import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { stderrLogger } from './logger.js';
import { describeProgress, ProgressMeter, progressBar } from './progress.js';

function captureStream(isTTY: boolean) {
  const chunks: string[] = [];
  return { stream: { isTTY, columns: 120, write: (t: string) => chunks.push(t) }, chunks };
}

describe('progress of long work', () => {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2026-11-23T10:00:00Z'));
  });
  afterEach(() => vi.useRealTimers());

  it('counts against the estimate, with the rate and the time left', () => {
    const meter = new ProgressMeter('snapshot', 'shop.orders', 'rows', 0, 10_000);
    vi.advanceTimersByTime(2_000);
    const p = meter.at(4_000);
    expect(p.ratePerSecond).toBe(2_000);
    expect(p.etaSeconds).toBe(3);
    expect(describeProgress(p)).toBe(
      'snapshot of shop.orders: 4,000 of ~10,000 rows (40%), 2,000 rows/s, about 3 s left',
    );
    expect(progressBar(p, 200)).toMatch(/^\[########------------\] {2}40% snapshot of shop\.orders/);
  });

  it('never shows a total below what is done, and leaves rows an earlier process staged out of the rate', () => {
    const meter = new ProgressMeter('refresh', 'shop.orders', 'rows', 5_000, 6_000);
    vi.advanceTimersByTime(1_000);
    const p = meter.at(7_000);
    expect(p.total).toBe(7_000);
    expect(p.ratePerSecond).toBe(2_000);
    expect(describeProgress(p)).toContain('7,000 of ~7,000 rows (100%)');
  });

  it('measures a catch-up by the share of the log read', () => {
    const meter = new ProgressMeter('catch-up', 'gw', 'changes');
    vi.advanceTimersByTime(3_000);
    const p = meter.at(30_000, false, 0.25);
    expect(p.etaSeconds).toBe(9);
    expect(describeProgress(p)).toBe(
      'catch-up of gw: 30,000 changes (25% of the log), 10,000 changes/s, about 9 s left',
    );
    expect(describeProgress(meter.at(40_000, true))).toBe(
      'catch-up of gw: 40,000 changes in 3 s, 13,333 changes/s (complete)',
    );
  });

  it('draws a bar on a terminal once the work has run a second, and keeps it under log lines', () => {
    const { stream, chunks } = captureStream(true);
    const log = stderrLogger(false, stream, {});
    const meter = new ProgressMeter('snapshot', 't', 'rows', 0, 100);
    log.progress?.(meter.at(1));
    expect(chunks).toEqual([]);
    vi.advanceTimersByTime(1_500);
    log.progress?.(meter.at(30));
    expect(chunks.at(-1)?.startsWith('\r\u001b[K[######')).toBe(true);
    expect(chunks.at(-1)).toMatch(/\[######-+\] {2}30% snapshot of t/);
    log.info('a line');
    // The bar is cleared, the line written, the bar drawn again.
    expect(chunks.slice(-3)[0]).toBe('\r\x1b[K');
    expect(chunks.slice(-3)[1]).toMatch(/INFO {2}a line\n$/);
    expect(chunks.slice(-3)[2]).toMatch(/^\[######/);
    vi.advanceTimersByTime(1_000);
    log.progress?.(meter.at(100, true));
    expect(chunks.at(-1)).toMatch(
      /INFO {2}snapshot of t: 100 rows \(estimated ~100\) in 3 s, 40 rows\/s \(complete\)\n$/,
    );
    log.info('after');
    expect(chunks.at(-1)).toMatch(/INFO {2}after\n$/);
    expect(chunks.at(-2)).not.toMatch(/\[#/);
  });

  it('logs a line every ten seconds without a terminal (and in CI), and one at the end', () => {
    for (const [isTTY, env] of [
      [false, {}],
      [true, { CI: 'true' }],
    ] as const) {
      const { stream, chunks } = captureStream(isTTY);
      const log = stderrLogger(false, stream, env);
      const meter = new ProgressMeter('snapshot', 't', 'rows', 0, 1_000);
      for (let s = 1; s <= 25; s++) {
        vi.advanceTimersByTime(1_000);
        log.progress?.(meter.at(s * 10));
      }
      log.progress?.(meter.at(1_000, true));
      expect(chunks.every((c) => !c.includes('\r'))).toBe(true);
      expect(chunks.map((c) => c.replace(/^\S+ /, ''))).toEqual([
        'INFO  snapshot of t: 100 of ~1,000 rows (10%), 10 rows/s, about 2 min left\n',
        'INFO  snapshot of t: 200 of ~1,000 rows (20%), 10 rows/s, about 80 s left\n',
        'INFO  snapshot of t: 1,000 rows (estimated ~1,000) in 25 s, 40 rows/s (complete)\n',
      ]);
    }
  });

  it('says nothing of a short catch-up, and nothing at all when quiet', () => {
    const { stream, chunks } = captureStream(false);
    const log = stderrLogger(false, stream, {});
    const meter = new ProgressMeter('catch-up', 'gw', 'changes');
    log.progress?.(meter.at(5));
    log.progress?.(meter.at(9, true));
    expect(chunks).toEqual([]);
    const quiet = stderrLogger(true, stream, {});
    const snapshot = new ProgressMeter('snapshot', 't', 'rows');
    vi.advanceTimersByTime(20_000);
    quiet.progress?.(snapshot.at(1));
    quiet.progress?.(snapshot.at(2, true));
    expect(chunks).toEqual([]);
  });
});
