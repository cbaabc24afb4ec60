/**
 * Runs catch-up rounds until stopped, the way `tributary run` without `--once` does. A round that fails with
 * a transient error (network, a restarting server, a lost commit race) is retried with exponential backoff;
 * any other error ends the loop, because retrying cannot fix a wrong password or a purged binlog. The error
 * class is decided by the adapter that raised it (TributaryError.retry), never guessed here.
 */
import { isTributaryError, messageOf } from '../core/errors.js';
import type { Logger } from './logger.js';

export interface SuperviseOptions {
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Pause between successful rounds. */
  readonly intervalMs: number;
  /** First retry delay after a transient failure; doubles per consecutive failure. */
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });
}

/** `round` is told how many rounds failed in a row before it (0: not a retry). */
export async function superviseRounds(
  round: (retry: number) => Promise<void>,
  options: SuperviseOptions,
): Promise<void> {
  const initial = options.initialBackoffMs ?? 1_000;
  const max = options.maxBackoffMs ?? 60_000;
  let failures = 0;
  while (!options.signal.aborted) {
    try {
      await round(failures);
      failures = 0;
      await sleep(options.intervalMs, options.signal);
    } catch (error) {
      if (options.signal.aborted) return;
      if (!isTributaryError(error) || error.retry !== 'transient') throw error;
      failures++;
      const delay = Math.min(max, initial * 2 ** (failures - 1));
      options.log.warn(
        `round failed (${error.code}: ${messageOf(error)}); retry ${failures} in ${Math.round(delay / 1000)} s`,
      );
      await sleep(delay, options.signal);
    }
  }
}
