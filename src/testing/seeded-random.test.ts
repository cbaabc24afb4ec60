import { describe, expect, it } from 'vitest';
import { seededRandom } from './seeded-random.js';

describe('seededRandom', () => {
  it('replays a seed, and does not fall into short cycles (seed 9 did, with the old double-precision LCG)', () => {
    const draw = (seed: number, n: number) => Array.from({ length: n }, seededRandom(seed));
    expect(draw(42, 5)).toEqual(draw(42, 5));
    expect(draw(42, 5)).not.toEqual(draw(43, 5));
    for (const seed of [0, 1, 2, 3, 9, 20261123]) {
      const values = draw(seed, 8000);
      expect(new Set(values.map((v) => Math.floor(v * 10_000_000))).size, `seed ${seed}`).toBeGreaterThan(
        7990,
      );
      expect(values.every((v) => v >= 0 && v < 1)).toBe(true);
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      expect(Math.abs(mean - 0.5), `seed ${seed}`).toBeLessThan(0.02);
    }
  });
});
