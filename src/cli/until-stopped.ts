import type { Logger } from '../pipeline/logger.js';

/**
 * Runs `work` with a signal that SIGINT or SIGTERM aborts, so long-running commands stop at a safe point (the
 * work sees the abort between steps) instead of being killed mid-write.
 */
export async function untilStopped<T>(
  log: Logger,
  what: string,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const stop = () => {
    log.info(`stopping after ${what}`);
    controller.abort(new Error('interrupted'));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return await work(controller.signal);
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
