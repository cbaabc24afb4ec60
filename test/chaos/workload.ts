/**
 * The load every chaos scenario runs under: multi-statement transactions of inserts, upserts, updates,
 * key moves and deletes over `customers` and `orders`, from a seeded generator so a failure can be replayed.
 *
 * The generator talks to the server directly (never through the scenario's proxy) and survives the server
 * being killed: a failed transaction is simply lost, as it would be for an application, and the generator
 * reconnects and goes on. The source is the truth the bronze tables are compared with at the end, so
 * nothing here needs to remember what it wrote.
 */

import { seededRandom } from '../../src/testing/seeded-random.js';
import type { ChaosDatabase, Dialect, SqlClient } from './sources.js';

export interface WorkloadStats {
  readonly committed: number;
  readonly failed: number;
  readonly statements: number;
}

export class Workload {
  readonly #db: ChaosDatabase;
  readonly #dialect: Dialect;
  readonly #pauseMs: number;
  readonly #random: () => number;
  #stopping = false;
  #loop: Promise<void> | undefined;
  #committed = 0;
  #failed = 0;
  #statements = 0;

  constructor(db: ChaosDatabase, dialect: Dialect, options: { seed: number; pauseMs?: number }) {
    this.#db = db;
    this.#dialect = dialect;
    this.#random = seededRandom(options.seed);
    this.#pauseMs = options.pauseMs ?? 15;
  }

  get committed(): number {
    return this.#committed;
  }

  start(): this {
    this.#loop ??= this.#run();
    return this;
  }

  async stop(): Promise<WorkloadStats> {
    this.#stopping = true;
    await this.#loop;
    return { committed: this.#committed, failed: this.#failed, statements: this.#statements };
  }

  /** Resolves once `n` more transactions have committed (the load is really flowing). */
  async progress(n: number, timeoutMs = 60_000): Promise<void> {
    const target = this.#committed + n;
    const deadline = Date.now() + timeoutMs;
    while (this.#committed < target) {
      if (Date.now() > deadline)
        throw new Error(`the workload committed no ${n} transactions in ${timeoutMs} ms`);
      await sleep(20);
    }
  }

  #int(n: number): number {
    return 1 + Math.floor(this.#random() * n);
  }

  /** One transaction's statements: 2 to 12 operations, sometimes a multi-row insert. */
  #transaction(t: number): string[] {
    const d = this.#dialect;
    const out: string[] = [];
    const ops = 2 + Math.floor(this.#random() * 11);
    for (let i = 0; i < ops; i++) {
      const r = this.#random();
      const customer = this.#int(900);
      const order = this.#int(5000);
      if (r < 0.15) out.push(d.upsert('customers', [customer, `c-${t}-${i}`, this.#int(5)]));
      else if (r < 0.45) out.push(d.upsert('orders', [order, customer, this.#int(1000), `o-${t}-${i}`]));
      else if (r < 0.65)
        out.push(`UPDATE orders SET amount = amount + 1, note = 'u-${t}-${i}' WHERE id = ${order}`);
      else if (r < 0.72) out.push(d.moveKey('orders', order, order < 5000 ? order + 5000 : order - 5000));
      else if (r < 0.85) out.push(`DELETE FROM orders WHERE id = ${order}`);
      else if (r < 0.9) out.push(`DELETE FROM customers WHERE id = ${customer}`);
      else {
        const base = this.#int(4000);
        const rows = Array.from(
          { length: 10 },
          (_, k) => `(${20000 + base + k}, ${customer}, ${k}, 'bulk-${t}')`,
        );
        out.push(
          `DELETE FROM orders WHERE id BETWEEN ${20000 + base} AND ${20000 + base + 9}`,
          `INSERT INTO orders (id, customer_id, amount, note) VALUES ${rows.join(', ')}`,
        );
      }
    }
    return out;
  }

  async #run(): Promise<void> {
    let client: SqlClient | undefined;
    let t = 0;
    while (!this.#stopping) {
      try {
        client ??= await this.#db.connect();
        await client.query('BEGIN');
        for (const sql of this.#transaction(t++)) {
          await client.query(sql);
          this.#statements++;
        }
        await client.query('COMMIT');
        this.#committed++;
      } catch {
        // The server was killed or restarted under us: this transaction is lost, as an application's would be.
        this.#failed++;
        await client?.close();
        client = undefined;
        await sleep(200);
        continue;
      }
      await sleep(this.#pauseMs);
    }
    await client?.close();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
