/**
 * Sees what a `tributary sql` user sees, in this process: the generator's progress rows read through
 * `SqlSession` (the code path of `tributary sql`) at the pipeline's consistent cut.
 *
 * Spawning `tributary sql` for every poll would cost a Node start and a DuckDB load (about 0.7 s) per look,
 * longer than the latency measured. Instead the probe reads the cut file every `pollMs` (a few hundred bytes)
 * and queries only when the cut moved: the rows at one cut cannot change. A change counts as visible when
 * that query returns, so the figure includes the reader's own query, and overstates by at most one poll.
 */
import { readFile } from 'node:fs/promises';
import { consistentCutPath } from '../src/catalog/consistent-cut.js';
import { Warehouse } from '../src/catalog/warehouse.js';
import { SqlSession } from '../src/engine/sql-session.js';
import type { TableRef, Workspace } from './pipeline-sources.js';
import { sleep } from './postgres-bench-support.js';

/** The progress rows seen at one cut, and when (performance.now()). */
export interface Sighting {
  readonly at: number;
  readonly seqs: readonly number[];
  /** When the pipeline wrote the cut (its `recordedAt`), ms since the epoch. */
  readonly recordedAt: number;
}

export class ProgressProbe {
  readonly sightings: Sighting[] = [];
  readonly queryMs: number[] = [];
  #seqs: number[];
  #cut = '';
  #running: Promise<void> | undefined;
  #stopping = false;

  private constructor(
    readonly session: SqlSession,
    readonly cutPath: string,
    readonly table: string,
    lanes: number,
  ) {
    this.#seqs = new Array<number>(lanes).fill(0);
  }

  static async open(ws: Workspace, progress: TableRef, lanes: number): Promise<ProgressProbe> {
    const session = await SqlSession.open(new Warehouse(ws.warehouse), { consistentCut: true });
    return new ProgressProbe(session, consistentCutPath(ws.warehouse, 'p'), ws.bronzeName(progress), lanes);
  }

  /** Per lane, the newest generator transaction visible at the cut. */
  get seqs(): readonly number[] {
    return this.#seqs;
  }

  /** The cut file's text; it changes with every round the pipeline completes. */
  async cutText(): Promise<string> {
    return readFile(this.cutPath, 'utf8').catch(() => '');
  }

  /** Looks once: queries the progress rows if the cut moved since the last look. */
  async poll(): Promise<void> {
    const cut = await this.cutText();
    if (cut === '' || cut === this.#cut) return;
    this.#cut = cut;
    const start = performance.now();
    const result = await this.session.execute(`SELECT lane, seq FROM ${this.table}`);
    const at = performance.now();
    this.queryMs.push(at - start);
    const seqs = [...this.#seqs];
    for (const row of result.rows) seqs[Number(row['lane'])] = Number(row['seq']);
    this.#seqs = seqs;
    const recordedAt = Date.parse((JSON.parse(cut) as { recordedAt?: string }).recordedAt ?? '');
    this.sightings.push({ at, seqs, recordedAt });
  }

  start(pollMs: number): void {
    this.#stopping = false;
    this.#running = (async () => {
      while (!this.#stopping) {
        await this.poll();
        await sleep(pollMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    await this.#running;
    this.#running = undefined;
  }

  /** Waits until the cut file differs from `before` (a round completed); false on timeout. */
  async waitForRound(before: string, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (performance.now() < deadline) {
      if ((await this.cutText()) !== before) return true;
      await sleep(20);
    }
    return false;
  }

  async close(): Promise<void> {
    await this.stop();
    await this.session[Symbol.asyncDispose]();
  }
}
