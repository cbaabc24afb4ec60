/**
 * Per-file statistics (`add.stats`), serialised the way Spark writes them, so that Spark, Trino, DuckDB and
 * delta-rs can skip files on them.
 *
 * Values in `minValues`/`maxValues` may be: numbers, bigints (written as exact JSON integers), booleans,
 * strings, `Date` (a UTC timestamp, ms precision), {@link StatTimestamp} (µs precision, UTC or NTZ),
 * {@link StatDate}, {@link StatDecimal}, DuckDB values of the matching types, or nested records for struct
 * columns. `null`, `undefined`, NaN/±Infinity, binary and arrays are left out: a missing bound only costs
 * skipping, a wrong one loses rows.
 */
import {
  DuckDBDateValue,
  DuckDBDecimalValue,
  DuckDBTimestampMillisecondsValue,
  DuckDBTimestampNanosecondsValue,
  DuckDBTimestampSecondsValue,
  DuckDBTimestampTZValue,
  DuckDBTimestampValue,
} from '@duckdb/node-api';

export interface FileStats {
  numRecords: number;
  /** Column name → min; nested records for struct columns. Partition columns are not included. */
  minValues: Record<string, unknown>;
  maxValues: Record<string, unknown>;
  /** Column name → count of nulls (nested records for struct columns). */
  nullCount: Record<string, number>;
}

/** A timestamp with microsecond precision. `utc: false` is a `timestamp_ntz` (written without a zone). */
export interface StatTimestamp {
  readonly kind: 'timestamp';
  readonly micros: bigint;
  readonly utc: boolean;
}

/** A `date` column value: days since 1970-01-01. */
export interface StatDate {
  readonly kind: 'date';
  readonly days: number;
}

/** A `decimal` column value as exact decimal text (`-2342342.23423`), written as a JSON number. */
export interface StatDecimal {
  readonly kind: 'decimal';
  readonly text: string;
}

export function statTimestamp(micros: bigint, options: { utc?: boolean } = {}): StatTimestamp {
  return { kind: 'timestamp', micros, utc: options.utc ?? true };
}

export function statDate(days: number): StatDate {
  return { kind: 'date', days };
}

export function statDecimal(text: string): StatDecimal {
  return { kind: 'decimal', text };
}

/** Spark's default `delta.dataSkippingStatsColumns` string prefix length. */
const MAX_STRING_LENGTH = 32;
const MS_PER_DAY = 86_400_000;

/** A JSON token that must be emitted verbatim (exact integers and decimals). */
class Raw {
  constructor(readonly text: string) {}
}

type Bound = 'min' | 'max';

function isStatObject(value: unknown, kind: string): boolean {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === kind;
}

function formatMicros(micros: bigint, utc: boolean, bound: Bound): string {
  let ms = micros / 1000n;
  const rest = micros - ms * 1000n;
  // bigint division truncates toward zero; floor it so negative (pre-1970) instants stay correct.
  if (rest < 0n) ms -= 1n;
  // Stats are millisecond-precision: rounding the max up keeps every row inside [min, max].
  if (bound === 'max' && rest !== 0n) ms += 1n;
  const iso = new Date(Number(ms)).toISOString();
  return utc ? iso : iso.slice(0, -1);
}

/** Converts one bound value into a JSON-ready value, or undefined to leave the column out. */
function boundValue(value: unknown, bound: Bound): unknown {
  if (value === null || value === undefined) return undefined;
  switch (typeof value) {
    case 'number':
      return Number.isFinite(value) ? value : undefined;
    case 'bigint':
      return new Raw(value.toString());
    case 'boolean':
      return value;
    case 'string':
      // Spark truncates long strings (and pads the max); leaving them out is always correct.
      return [...value].length > MAX_STRING_LENGTH ? undefined : value;
    case 'object':
      break;
    default:
      return undefined;
  }
  if (value instanceof Date) {
    return Number.isNaN(value.getTime()) ? undefined : value.toISOString();
  }
  if (isStatObject(value, 'timestamp')) {
    const t = value as StatTimestamp;
    return formatMicros(t.micros, t.utc, bound);
  }
  if (isStatObject(value, 'date')) {
    return new Date((value as StatDate).days * MS_PER_DAY).toISOString().slice(0, 10);
  }
  if (isStatObject(value, 'decimal')) {
    return new Raw((value as StatDecimal).text);
  }
  if (value instanceof DuckDBTimestampTZValue) return formatMicros(value.micros, true, bound);
  if (value instanceof DuckDBTimestampValue) return formatMicros(value.micros, false, bound);
  if (value instanceof DuckDBTimestampMillisecondsValue)
    return formatMicros(value.millis * 1000n, false, bound);
  if (value instanceof DuckDBTimestampSecondsValue)
    return formatMicros(value.seconds * 1_000_000n, false, bound);
  if (value instanceof DuckDBTimestampNanosecondsValue) {
    let micros = value.nanos / 1000n;
    if (bound === 'max' && value.nanos % 1000n !== 0n) micros += 1n;
    return formatMicros(micros, false, bound);
  }
  if (value instanceof DuckDBDateValue) {
    return new Date(value.days * MS_PER_DAY).toISOString().slice(0, 10);
  }
  if (value instanceof DuckDBDecimalValue) return new Raw(value.toString());
  if (value instanceof Uint8Array || Array.isArray(value)) return undefined;
  // A plain record is a struct column: recurse, dropping it when nothing inside survives.
  if (Object.getPrototypeOf(value) === Object.prototype || Object.getPrototypeOf(value) === null) {
    const nested = boundRecord(value as Record<string, unknown>, bound);
    return Object.keys(nested).length === 0 ? undefined : nested;
  }
  return undefined;
}

function boundRecord(values: Record<string, unknown>, bound: Bound): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(values)) {
    const v = boundValue(value, bound);
    if (v !== undefined) out[name] = v;
  }
  return out;
}

function toJson(value: unknown): string {
  if (value instanceof Raw) return value.text;
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  const entries = Object.entries(value as Record<string, unknown>).map(
    ([k, v]) => `${JSON.stringify(k)}:${toJson(v)}`,
  );
  return `{${entries.join(',')}}`;
}

/**
 * `{"numRecords":N,"minValues":{...},"maxValues":{...},"nullCount":{...}}` for `add.stats`. Timestamps are ISO
 * strings with milliseconds and `Z` (no zone for timestamp_ntz); a max with sub-millisecond digits is rounded
 * up so data skipping never skips a matching file. Strings longer than 32 characters are left out of min/max.
 */
export function formatStats(stats: FileStats): string {
  return toJson({
    numRecords: stats.numRecords,
    minValues: boundRecord(stats.minValues, 'min'),
    maxValues: boundRecord(stats.maxValues, 'max'),
    nullCount: stats.nullCount,
  });
}
