import { TributaryError } from '../core/errors.js';

/** DuckDB's name for a Delta primitive type: the type a staged text value is cast to on apply. */
export function duckDbTypeFor(deltaType: string): string {
  const decimal = /^decimal\((\d+),\s*(\d+)\)$/.exec(deltaType);
  if (decimal) return `DECIMAL(${decimal[1]},${decimal[2]})`;
  const map: Record<string, string> = {
    byte: 'TINYINT',
    short: 'SMALLINT',
    integer: 'INTEGER',
    long: 'BIGINT',
    float: 'FLOAT',
    double: 'DOUBLE',
    boolean: 'BOOLEAN',
    string: 'VARCHAR',
    binary: 'BLOB',
    date: 'DATE',
    timestamp: 'TIMESTAMPTZ',
    timestamp_ntz: 'TIMESTAMP',
  };
  const mapped = map[deltaType];
  if (mapped === undefined) {
    throw new TributaryError('INTERNAL', `No DuckDB type for Delta type "${deltaType}".`);
  }
  return mapped;
}
