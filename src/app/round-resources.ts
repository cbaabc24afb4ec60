/**
 * What the rounds of one pipeline keep from one round to the next in a long-running process (`tributary run`
 * without --once, `tributary start`): the gateway's source connector with its control connection, the DuckDB
 * database, and when the source last passed preflight. The round's row in `pipeline_events` is written in the
 * background (a Delta commit of its own), so the next round need not wait for it.
 *
 * Opening these costs about a hundred milliseconds a round (a connection and its handshake, DuckDB's start,
 * a dozen preflight queries), which is most of a round when only a few changes are waiting, so continuous
 * rounds back to back would spend more time starting than applying. What is kept is exactly what a round
 * would otherwise open the same way, and a round that fails gives its source up: the next one connects anew,
 * so a restarted server or a cut connection costs one failed round, as it did before.
 *
 * One instance per pipeline. Pipelines of one process run concurrently, and DuckDB's appender and temp
 * tables belong to a connection, so they do not share a database.
 */
import type { TributaryConfig } from '../config/load-config.js';
import type { SourceConnector } from '../core/ports.js';
import { DuckDb } from '../engine/duckdb.js';
import { openSource, type SourceLog } from './open-source.js';

/**
 * How long a passed preflight is trusted. The checks guard against a source someone reconfigured (binlog
 * format, slot, privileges), which checking once a minute still catches within the minute; a lost log is
 * found by capture itself in every round.
 */
export const PREFLIGHT_INTERVAL_MS = 60_000;

export class RoundResources implements AsyncDisposable {
  /** A promise, so that the round and a background task asking at once share one database. */
  #db: Promise<DuckDb> | undefined;
  /** Work that follows a round without holding up the next one (recording it), one task after another. */
  #background: Promise<void> = Promise.resolve();
  #source: { readonly gateway: string; readonly connector: SourceConnector } | undefined;
  #preflightPassedAt: number | undefined;

  db(): Promise<DuckDb> {
    if (this.#db) return this.#db;
    const opening = DuckDb.open();
    this.#db = opening;
    // A failed open (a bad TRIBUTARY_MEMORY_LIMIT) is reported to this caller; the next one tries again.
    opening.catch(() => {
      if (this.#db === opening) this.#db = undefined;
    });
    return opening;
  }

  async source(config: TributaryConfig, gateway: string, log: SourceLog): Promise<SourceConnector> {
    if (this.#source?.gateway !== gateway) {
      await this.dropSource();
      this.#source = { gateway, connector: await openSource(config, gateway, log) };
    }
    return this.#source.connector;
  }

  /** After a failed round: its connection may be the reason, so the next round opens a new one. */
  async dropSource(): Promise<void> {
    const source = this.#source;
    this.#source = undefined;
    this.#preflightPassedAt = undefined;
    try {
      await source?.connector[Symbol.asyncDispose]();
    } catch {
      // A connection that is already broken has nothing left to close.
    }
  }

  /**
   * Runs `task` after the background tasks before it, while the next round goes on. The task reports its own
   * failures (a rejection is dropped); disposing waits for every task.
   */
  inBackground(task: () => Promise<void>): void {
    this.#background = this.#background.then(task).catch(() => undefined);
  }

  preflightDue(now: number): boolean {
    return this.#preflightPassedAt === undefined || now - this.#preflightPassedAt >= PREFLIGHT_INTERVAL_MS;
  }

  preflightPassed(now: number): void {
    this.#preflightPassedAt = now;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.#background;
    await this.dropSource();
    const db = this.#db;
    this.#db = undefined;
    await (await db?.catch(() => undefined))?.[Symbol.asyncDispose]();
  }
}
