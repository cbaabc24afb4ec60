/**
 * Runs several pipelines in one process, each on its own schedule: `continuous` (a round, a pause, a round)
 * or a cron expression (a round at each time it names). A pipeline never overlaps itself: its next round is
 * planned only when the current one has ended, and a cron time that passed meanwhile is skipped, not queued.
 * Pipelines that share a gateway take turns (one run lock per gateway), so they wait for each other rather
 * than fail on it.
 *
 * Failures follow the supervisor's rules: transient ones are retried with backoff; any other stops that
 * pipeline's schedule (the others go on), and `runSchedules` reports them when every schedule has ended.
 */
import { Cron } from 'croner';
import { isTributaryError, messageOf, TributaryError } from '../core/errors.js';
import type { Logger } from './logger.js';

export interface ScheduledPipeline {
  readonly name: string;
  /** Pipelines with the same key never run a round at the same time (their gateway). */
  readonly exclusiveKey: string;
  readonly schedule: 'continuous' | { readonly cron: string };
  /** `retry`: consecutive failed rounds before this one (0 when the last round succeeded). */
  readonly round: (signal: AbortSignal, retry: number) => Promise<void>;
}

export interface ScheduleOptions {
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Pause between continuous rounds. */
  readonly continuousIntervalMs: number;
  readonly initialBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

/** Resolves when the signal aborts (after each round in progress ends), or every schedule stopped. */
export async function runSchedules(
  pipelines: readonly ScheduledPipeline[],
  options: ScheduleOptions,
): Promise<void> {
  const locks = new Map<string, Promise<unknown>>();
  const exclusive = async <T>(key: string, work: () => Promise<T>): Promise<T> => {
    const previous = locks.get(key) ?? Promise.resolve();
    const result = previous.then(work, work);
    locks.set(
      key,
      result.catch(() => undefined),
    );
    return result;
  };
  const crons = new Map(
    pipelines.flatMap((p) =>
      p.schedule === 'continuous' ? [] : [[p.name, parseCron(p.name, p.schedule.cron)] as const],
    ),
  );
  const failed: string[] = [];
  await Promise.all(
    pipelines.map(async (p) => {
      const cron = crons.get(p.name);
      let failures = 0;
      while (!options.signal.aborted) {
        const wait = cron ? untilNext(cron) : failures === 0 ? 0 : undefined;
        if (wait !== undefined && wait > 0) await sleep(wait, options.signal);
        if (options.signal.aborted) break;
        try {
          await exclusive(p.exclusiveKey, () => p.round(options.signal, failures));
          failures = 0;
          if (!cron) await sleep(options.continuousIntervalMs, options.signal);
        } catch (error) {
          if (options.signal.aborted) break;
          if (!isTributaryError(error) || error.retry !== 'transient') {
            options.log.warn(
              `${p.name}: stopped: ${isTributaryError(error) ? `${error.code}: ` : ''}${messageOf(error)}`,
            );
            failed.push(p.name);
            return;
          }
          failures++;
          const delay = Math.min(
            options.maxBackoffMs ?? 60_000,
            (options.initialBackoffMs ?? 1_000) * 2 ** (failures - 1),
          );
          options.log.warn(
            `${p.name}: round failed (${error.code}: ${messageOf(error)}); retry ${failures} in ${Math.round(delay / 1000)} s`,
          );
          await sleep(delay, options.signal);
        }
      }
    }),
  );
  if (failed.length > 0) {
    throw new TributaryError(
      'USAGE',
      `Pipeline(s) ${failed.join(', ')} stopped on an error that retrying cannot fix.`,
      {
        hint: 'See the errors above; fix them and start again.',
      },
    );
  }
}

function parseCron(pipeline: string, expression: string): Cron {
  try {
    return new Cron(expression, { paused: true, timezone: 'UTC' });
  } catch (error) {
    throw new TributaryError(
      'CONFIG_INVALID',
      `pipelines.${pipeline}.schedule.cron: ${JSON.stringify(expression)} is not a cron expression: ${messageOf(error)}`,
      {
        hint: 'Use 5 fields (minute hour day-of-month month day-of-week), e.g. "*/5 * * * *", or 6 with seconds first.',
      },
    );
  }
}

function untilNext(cron: Cron): number {
  const next = cron.nextRun();
  return next === null ? Number.POSITIVE_INFINITY : Math.max(0, next.getTime() - Date.now());
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, Math.min(ms, 2 ** 31 - 1));
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
