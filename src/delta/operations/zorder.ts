/**
 * Z-order (Morton order) keys in DuckDB SQL. Each column is first normalised to an unsigned integer of `bits`
 * bits by its rank within the rows being clustered (`percent_rank`, so any orderable type works and skewed data
 * still spreads over the whole range; ties share a value, NULLs come first). The key interleaves those integers
 * bit by bit, most significant bits first, so rows close in every column are close in the key. Sorting by it
 * and cutting the result into files gives files whose min/max ranges are narrow in all the columns at once,
 * which a sort on the first column alone does not.
 */
import { TributaryError } from '../../core/errors.js';
import { sqlIdentifier as q } from '../scan.js';

/** Name of the key column {@link zOrderSelect} adds. */
export const Z_ORDER_KEY = '__tributary_zkey';

const MAX_COLUMNS = 32;

/** Bits per column so the interleaved key fits in a UBIGINT (at most 32, to stay exact in a double rank). */
export function bitsPerColumn(columns: number): number {
  return Math.min(32, Math.floor(64 / columns));
}

/** The interleaving expression over integer columns `inputs` (each `bits` wide), as a UBIGINT. */
export function interleaveBitsSql(inputs: readonly string[], bits: number): string {
  const n = inputs.length;
  const terms: string[] = [];
  for (let b = bits - 1; b >= 0; b--) {
    inputs.forEach((input, i) => {
      const position = b * n + (n - 1 - i);
      terms.push(`(((${input} >> ${b}) & 1::UBIGINT) << ${position})`);
    });
  }
  return `(${terms.join(' | ')})`;
}

/**
 * `SELECT *, <z-order key> AS __tributary_zkey FROM (source)`, for the (logical) column names `columns`.
 */
export function zOrderSelect(source: string, columns: readonly string[]): string {
  if (columns.length === 0 || columns.length > MAX_COLUMNS) {
    throw new TributaryError(
      'SQL_ERROR',
      `ZORDER BY takes 1 to ${MAX_COLUMNS} columns, not ${columns.length}`,
    );
  }
  const bits = bitsPerColumn(columns.length);
  const max = 2 ** bits - 1;
  const ranks = columns.map(
    (c, i) =>
      `CAST(floor(percent_rank() OVER (ORDER BY ${q(c)} ASC NULLS FIRST) * ${max}) AS UBIGINT) AS "__tributary_z${i}"`,
  );
  const rankNames = columns.map((_c, i) => `"__tributary_z${i}"`);
  return [
    `SELECT * EXCLUDE (${rankNames.join(', ')}), ${interleaveBitsSql(rankNames, bits)} AS ${q(Z_ORDER_KEY)}`,
    `FROM (SELECT *, ${ranks.join(', ')} FROM (${source}) AS __zsrc) AS __zranked`,
  ].join('\n');
}
