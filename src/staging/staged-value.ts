/**
 * Staged values are text: the exact form the source gave, cast to the Delta type by DuckDB when the
 * segment is applied. Text is the one representation that keeps DECIMAL, BIGINT UNSIGNED and microsecond
 * timestamps exact through Parquet without a per-type writer. Binary values are hex.
 */
import type { SqlValue } from '../core/table.js';

/** MySQL's zero dates have no calendar meaning; like Debezium, they become NULL. */
const ZERO_DATE = /^0000-00-00/;

export function toStagedText(value: SqlValue | undefined, deltaType: string): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (typeof value === 'string') {
    if ((deltaType === 'date' || deltaType.startsWith('timestamp')) && ZERO_DATE.test(value)) return null;
    if (deltaType === 'binary') return Buffer.from(value, 'utf8').toString('hex');
    return value;
  }
  if (typeof value === 'number') {
    if (deltaType === 'binary') {
      const hex = value.toString(16);
      return hex.length % 2 === 0 ? hex : `0${hex}`;
    }
    return Number.isFinite(value) ? String(value) : value > 0 ? 'Infinity' : value < 0 ? '-Infinity' : 'NaN';
  }
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'boolean') return value ? '1' : '0';
  return JSON.stringify(value);
}
