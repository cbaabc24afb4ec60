/**
 * A seeded pseudo-random sequence in [0, 1) for tests, benchmarks and workloads, so a failing run replays.
 *
 * mulberry32: 32-bit integer arithmetic throughout, full period 2^32. The obvious one-liner, an LCG
 * `s = (s * 1103515245 + 12345) % 2^31` in JavaScript numbers, is wrong: `s * 1103515245` passes 2^53, the low
 * bits are lost, and the sequence falls into short cycles (one seed gave 121 distinct values out of 8,000
 * draws), which quietly made random workloads much less random than they looked.
 */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}
