/**
 * MySQL/MariaDB column types → Delta Lake types. Documented in docs/types/mysql.md; keep both in step.
 *
 * The rule is "never lose information": unsigned integers widen to the next signed type (BIGINT UNSIGNED to
 * decimal(20,0)), DECIMAL keeps precision and scale, DATETIME/TIMESTAMP keep microseconds, and anything
 * without an exact Delta equivalent (TIME, ENUM, SET, JSON) becomes a string holding MySQL's own text form.
 * Spatial values become `binary` holding standard WKB (see spatial.ts).
 */
import { TributaryError } from '../../core/errors.js';

export function deltaTypeFor(columnType: string, where: string): string {
  const t = columnType.toLowerCase().trim();
  const unsigned = /\bunsigned\b/.test(t);
  const base = /^[a-z]+/.exec(t)?.[0] ?? '';
  switch (base) {
    case 'tinyint':
      return unsigned ? 'short' : 'byte';
    case 'smallint':
      return unsigned ? 'integer' : 'short';
    case 'mediumint':
      return 'integer';
    case 'int':
    case 'integer':
      return unsigned ? 'long' : 'integer';
    case 'bigint':
      return unsigned ? 'decimal(20,0)' : 'long';
    case 'decimal':
    case 'numeric':
    case 'fixed': {
      const m = /\((\d+)(?:\s*,\s*(\d+))?\)/.exec(t);
      const precision = Number(m?.[1] ?? 10);
      const scale = Number(m?.[2] ?? 0);
      // Delta caps decimals at 38 digits; wider values keep their exact text.
      return precision <= 38 ? `decimal(${precision},${scale})` : 'string';
    }
    case 'float':
      return 'float';
    case 'double':
    case 'real':
      return 'double';
    case 'bit':
    case 'binary':
    case 'varbinary':
    case 'tinyblob':
    case 'blob':
    case 'mediumblob':
    case 'longblob':
    // Spatial types: the value's WKB, without MySQL's SRID prefix (spatial.ts).
    case 'geometry':
    case 'point':
    case 'linestring':
    case 'polygon':
    case 'multipoint':
    case 'multilinestring':
    case 'multipolygon':
    case 'geometrycollection':
    case 'geomcollection':
      return 'binary';
    case 'char':
    case 'varchar':
    case 'tinytext':
    case 'text':
    case 'mediumtext':
    case 'longtext':
    case 'enum':
    case 'set':
    case 'json':
    case 'time':
    case 'uuid':
    case 'inet4':
    case 'inet6':
      return 'string';
    case 'year':
      return 'integer';
    case 'date':
      return 'date';
    case 'datetime':
    case 'timestamp':
      // Delta's `timestamp` is an instant; DATETIME carries no zone, so its wall time is taken as UTC.
      return 'timestamp';
    case 'boolean':
    case 'bool':
      return 'byte';
    default:
      throw new TributaryError(
        'SOURCE_UNSUPPORTED_TYPE',
        `${where}: the column type "${columnType}" has no Delta Lake mapping yet.`,
        {
          hint: 'Exclude the column with table_configuration.exclude_columns, or open an issue with the type.',
        },
      );
  }
}
