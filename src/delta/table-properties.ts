/**
 * The table properties (`metaData.configuration`) the writer acts on, parsed the way Spark parses them, with
 * Spark's defaults. A malformed value throws `DELTA_CORRUPT` instead of falling back to a default: for the
 * retention properties a wrong guess would delete history someone configured to keep.
 */
import { TributaryError } from '../core/errors.js';

const MS_PER_UNIT: Readonly<Record<string, number>> = {
  nanosecond: 1e-6,
  microsecond: 1e-3,
  millisecond: 1,
  second: 1_000,
  minute: 60_000,
  hour: 3_600_000,
  day: 86_400_000,
  week: 604_800_000,
};

/**
 * Parses a Delta duration property such as `interval 30 days`, `interval 1 week 2 hours` or `7 days` (Spark
 * accepts a missing `interval` prefix) into milliseconds. Units: nanosecond … week, singular or plural, any
 * case. Months and years are refused, as Spark refuses them for durations (their length varies).
 *
 * @throws `DELTA_CORRUPT` naming the property when the text is not such an interval or is negative.
 */
export function parseInterval(text: string, property = 'interval'): number {
  const bad = (why: string) =>
    new TributaryError(
      'DELTA_CORRUPT',
      `Table property ${property} = '${text}' is not a valid duration: ${why}`,
      {
        hint: "Use the form 'interval <n> <unit>', e.g. 'interval 30 days'.",
      },
    );
  const words = text.trim().toLowerCase().split(/\s+/);
  if (words[0] === 'interval') words.shift();
  if (words.length === 0 || words.length % 2 !== 0) throw bad('expected <number> <unit> pairs');
  let total = 0;
  for (let i = 0; i < words.length; i += 2) {
    const amount = Number(words[i]);
    const unit = (words[i + 1] as string).replace(/s$/, '');
    if (!Number.isFinite(amount) || !/^-?\d+(\.\d+)?$/.test(words[i] as string))
      throw bad(`'${words[i]}' is not a number`);
    if (unit === 'month' || unit === 'year') throw bad('months and years have no fixed length');
    const ms = MS_PER_UNIT[unit];
    if (ms === undefined) throw bad(`unknown unit '${words[i + 1]}'`);
    total += amount * ms;
  }
  if (total < 0) throw bad('negative');
  return total;
}

function booleanProperty(config: Readonly<Record<string, string>>, key: string, fallback: boolean): boolean {
  const value = config[key];
  if (value === undefined) return fallback;
  // Spark compares case-insensitively; anything else is a broken table.
  const lower = value.trim().toLowerCase();
  if (lower === 'true') return true;
  if (lower === 'false') return false;
  throw new TributaryError('DELTA_CORRUPT', `Table property ${key} = '${value}' is not true or false`);
}

/** `true` when the boolean property is set to true (case-insensitive); a non-boolean value throws. */
export function isEnabled(config: Readonly<Record<string, string>>, key: string): boolean {
  return booleanProperty(config, key, false);
}

/** `delta.checkpointInterval`: checkpoint after every version that is a multiple of it. Default 10. */
export function checkpointInterval(config: Readonly<Record<string, string>>): number {
  const raw = config['delta.checkpointInterval'];
  if (raw === undefined) return 10;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) {
    throw new TributaryError(
      'DELTA_CORRUPT',
      `Table property delta.checkpointInterval = '${raw}' is not a positive integer`,
    );
  }
  return n;
}

/** `delta.logRetentionDuration` in ms: how long commit files are kept for time travel. Default 30 days. */
export function logRetentionMs(config: Readonly<Record<string, string>>): number {
  return parseInterval(
    config['delta.logRetentionDuration'] ?? 'interval 30 days',
    'delta.logRetentionDuration',
  );
}

/**
 * `delta.deletedFileRetentionDuration` in ms: how long a `remove` stays in checkpoints as a tombstone (VACUUM
 * keeps the file that long). Default 1 week.
 */
export function deletedFileRetentionMs(config: Readonly<Record<string, string>>): number {
  return parseInterval(
    config['delta.deletedFileRetentionDuration'] ?? 'interval 1 week',
    'delta.deletedFileRetentionDuration',
  );
}

/**
 * `delta.setTransactionRetentionDuration` in ms, or undefined (the default: `txn` entries never expire). When
 * set, checkpoints drop `txn` actions whose `lastUpdated` is older, as Spark does.
 */
export function transactionRetentionMs(config: Readonly<Record<string, string>>): number | undefined {
  const raw = config['delta.setTransactionRetentionDuration'];
  return raw === undefined ? undefined : parseInterval(raw, 'delta.setTransactionRetentionDuration');
}

/** `delta.enableExpiredLogCleanup` (default true): whether log cleanup runs after a checkpoint. */
export function expiredLogCleanupEnabled(config: Readonly<Record<string, string>>): boolean {
  return booleanProperty(config, 'delta.enableExpiredLogCleanup', true);
}
