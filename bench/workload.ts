/**
 * The CDC workload: multi-row transactions of 3 inserts, 3 updates, 3 deletes and 1 progress-row update
 * (10 changes, every statement hits exactly its rows), sent as one round trip each, on `lanes` connections.
 *
 * Lane `l` owns the ids `≡ l (mod lanes)`: it inserts its next ids, deletes its oldest ones and updates random
 * live ones, so lanes never wait on each other's locks and the table keeps its size. Each transaction also
 * sets its lane's progress row to the lane's transaction count, and the generator keeps the time each COMMIT
 * was acknowledged: a reader that sees `seq = n` for lane `l` at the consistent cut sees that lane's first `n`
 * transactions, so latency and applied counts come out exactly.
 */
import type { BenchSource, SqlRunner, TableRef } from './pipeline-sources.js';
import { sleep } from './postgres-bench-support.js';

export const CHANGES_PER_TX = 10;
const PER_KIND = 3;

interface Lane {
  /** Smallest live id. */
  oldest: number;
  /** Next id to insert. */
  next: number;
  /** performance.now() of each acknowledged COMMIT; index seq - 1. */
  readonly commits: number[];
}

export interface GenerateOptions {
  /** Lanes to run (the first `lanes`), each on its own connection. */
  readonly lanes: number;
  /** Stop after this long... */
  readonly seconds?: number;
  /** ...or after this many changes (rounded up to whole transactions). */
  readonly changes?: number;
  /** Open-loop schedule at this many changes/s (one lane); flat out without it. */
  readonly rate?: number;
  /** Called about every second while generating. */
  readonly onTick?: () => void;
}

export interface Generated {
  readonly startAt: number;
  readonly endAt: number;
  readonly transactions: number;
  readonly changes: number;
}

export class LaneWorkload {
  readonly #lanes: Lane[];
  #runners: SqlRunner[] = [];
  /** performance.now() of the newest acknowledged COMMIT on any lane. */
  lastCommitAt = 0;

  constructor(
    readonly source: BenchSource,
    readonly table: TableRef,
    readonly progress: TableRef,
    lanes: number,
    preloadRows: number,
  ) {
    this.#lanes = Array.from({ length: lanes }, (_, l) => {
      const first = l === 0 ? lanes : l;
      const last = preloadRows - ((((preloadRows - l) % lanes) + lanes) % lanes);
      return { oldest: first, next: last + lanes, commits: [] };
    });
  }

  get laneCount(): number {
    return this.#lanes.length;
  }

  /** Transactions each lane has committed so far. */
  committed(): number[] {
    return this.#lanes.map((l) => l.commits.length);
  }

  /** Acknowledgement time of lane `lane`'s transaction `seq` (1-based). */
  commitAt(lane: number, seq: number): number | undefined {
    return this.#lanes[lane]?.commits[seq - 1];
  }

  async generate(options: GenerateOptions): Promise<Generated> {
    while (this.#runners.length < options.lanes) this.#runners.push(await this.source.openRunner());
    const before = this.committed().reduce((a, b) => a + b, 0);
    const startAt = performance.now();
    const stopAt =
      options.seconds === undefined ? Number.POSITIVE_INFINITY : startAt + options.seconds * 1000;
    const txLimit =
      options.changes === undefined ? Number.POSITIVE_INFINITY : Math.ceil(options.changes / CHANGES_PER_TX);
    let started = 0;
    const more = () => performance.now() < stopAt && started < txLimit;
    const ticker = options.onTick ? setInterval(options.onTick, 1000) : undefined;
    try {
      if (options.rate === undefined) {
        await Promise.all(
          this.#runners.slice(0, options.lanes).map(async (runner, lane) => {
            while (more()) {
              started++;
              await this.#transaction(runner, lane);
            }
          }),
        );
      } else {
        const interval = (1000 * CHANGES_PER_TX) / options.rate;
        const runner = this.#runners[0] as SqlRunner;
        for (let k = 0; more(); k++) {
          const due = startAt + k * interval;
          const wait = due - performance.now();
          if (wait > 1) await sleep(wait);
          started++;
          await this.#transaction(runner, 0);
        }
      }
    } finally {
      if (ticker) clearInterval(ticker);
    }
    const transactions = this.committed().reduce((a, b) => a + b, 0) - before;
    return { startAt, endAt: performance.now(), transactions, changes: transactions * CHANGES_PER_TX };
  }

  async close(): Promise<void> {
    for (const runner of this.#runners) await runner.close().catch(() => undefined);
    this.#runners = [];
  }

  async #transaction(runner: SqlRunner, index: number): Promise<void> {
    const lane = this.#lanes[index] as Lane;
    const step = this.#lanes.length;
    const deletes = Array.from({ length: PER_KIND }, (_, k) => lane.oldest + k * step);
    // Random live ids past the ones deleted here; the lane's window holds thousands, so retries are rare.
    const low = lane.oldest + PER_KIND * step;
    const span = (lane.next - step - low) / step + 1;
    const updates = new Set<number>();
    while (updates.size < PER_KIND) updates.add(low + Math.floor(Math.random() * span) * step);
    const seq = lane.commits.length + 1;
    const sql = this.source.transactionSql(this.table, {
      inserts: { first: lane.next, count: PER_KIND, step },
      updates: [...updates],
      deletes,
      progress: { table: this.progress, lane: index, seq },
    });
    await runner.run(sql);
    const at = performance.now();
    lane.commits.push(at);
    lane.oldest += PER_KIND * step;
    lane.next += PER_KIND * step;
    this.lastCommitAt = Math.max(this.lastCommitAt, at);
  }
}
