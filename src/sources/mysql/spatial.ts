/**
 * Spatial values (GEOMETRY, POINT, ..., GEOMETRYCOLLECTION) as standard WKB, the same bytes from the snapshot
 * and from the binlog. Docs: "Spatial values" in docs/types/mysql.md.
 *
 * MySQL and MariaDB store a spatial value as a 4-byte little-endian SRID followed by the OGC well-known binary
 * (WKB) of the geometry, and send exactly those bytes in a query result and in a binlog row image. Both
 * mysql2 and zongji decode them into `{x, y}` objects and arrays, which lose the SRID, the geometry type (a
 * LINESTRING and a MULTIPOINT both become an array of points) and empty collections. So Tributary takes the
 * raw bytes instead (a per-query typeCast in the snapshot, a BLOB read in the binlog) and drops the SRID
 * prefix: what is left is what `ST_AsWKB(col)` returns on MariaDB.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { TributaryError } from '../../core/errors.js';
import type { Row, SqlValue } from '../../core/table.js';

/** Bytes of the SRID that MySQL and MariaDB put in front of the WKB. */
const SRID_BYTES = 4;

/** zongji's column type codes (enum_field_types). */
const MYSQL_TYPE_BLOB = 252;
const MYSQL_TYPE_GEOMETRY = 255;
/**
 * The column types the server lists in a TABLE_MAP's charset metadata (is_character_type in the server's
 * log_event.cc: STRING, VAR_STRING, VARCHAR, the BLOBs, MariaDB's compressed ones, and GEOMETRY, "base class is
 * blob for geom type"). ENUM and SET have lists of their own.
 */
const CHARSET_LISTED_TYPES: ReadonlySet<number> = new Set([15, 253, 254, 249, 250, 251, 252, 140, 141, 255]);
/** TABLE_MAP optional metadata fields (MySQL 8.0+, MariaDB 10.5+). */
const DEFAULT_CHARSET = 2;
const COLUMN_CHARSET = 3;

/** The COLUMN_TYPE words of spatial columns (MySQL 8 says `geomcollection`, MariaDB `geometrycollection`). */
export const SPATIAL_TYPES: ReadonlySet<string> = new Set([
  'geometry',
  'point',
  'linestring',
  'polygon',
  'multipoint',
  'multilinestring',
  'multipolygon',
  'geometrycollection',
  'geomcollection',
]);

export function isSpatialType(columnType: string): boolean {
  return SPATIAL_TYPES.has(/^[a-z]+/.exec(columnType.toLowerCase().trim())?.[0] ?? '');
}

/** The WKB of a stored spatial value: its bytes without the SRID prefix. NULL stays NULL. */
export function wkbOf(stored: Uint8Array | null): Uint8Array | null {
  if (stored === null) return null;
  if (stored.length < SRID_BYTES) return stored;
  return stored.subarray(SRID_BYTES);
}

/**
 * The mysql2 typeCast for a snapshot query: spatial columns as WKB bytes, everything else as the driver
 * decodes it.
 */
export function spatialTypeCast(
  field: { type: string; buffer(): Buffer | null },
  next: () => unknown,
): unknown {
  return field.type === 'GEOMETRY' ? wkbOf(field.buffer()) : next();
}

/** The parts of zongji's table map a spatial column is read through. */
interface ZongJiColumn {
  name: string;
  type: number;
  charset?: string | null;
  /** Set here on columns switched to a BLOB read, so rows know which values to unwrap. */
  tributarySpatial?: boolean;
}

interface ZongJiTableMap {
  [tableId: number]: { columns?: ZongJiColumn[] } | undefined;
}

/**
 * Called on each TABLE_MAP event as zongji delivers it (before it decodes the rows that follow): spatial
 * columns are switched to a BLOB read, which has the same length-prefixed layout (the length width is in the
 * column metadata, `length_size`, for both), so the rows carry the stored bytes. zongji builds the table map
 * entry afresh when a TABLE_MAP describes itself (binlog_row_metadata=FULL) and reuses it otherwise; either
 * way the switch is made before any row of the table is decoded.
 */
export function readSpatialAsBytes(event: { tableId?: number; tableMap?: unknown }): void {
  const entry = (event.tableMap as ZongJiTableMap | undefined)?.[event.tableId ?? -1];
  for (const column of entry?.columns ?? []) {
    if (column.type !== MYSQL_TYPE_GEOMETRY) continue;
    column.type = MYSQL_TYPE_BLOB;
    column.charset = null;
    column.tributarySpatial = true;
  }
}

/**
 * Replaces the stored bytes of the spatial columns in a rows event by their WKB, in place. `updates`: the
 * rows are before/after pairs (an UPDATE_ROWS event).
 */
export function spatialRowsToWkb(
  event: { tableId?: number; tableMap?: unknown; rows?: Array<Row | { before: Row; after: Row }> },
  updates: boolean,
): void {
  const entry = (event.tableMap as ZongJiTableMap | undefined)?.[event.tableId ?? -1];
  const names = (entry?.columns ?? []).filter((c) => c.tributarySpatial).map((c) => c.name);
  if (names.length === 0) return;
  const convert = (row: Row) => {
    for (const name of names) {
      const value: SqlValue | undefined = row[name];
      if (value instanceof Uint8Array) row[name] = wkbOf(value);
    }
  };
  for (const row of event.rows ?? []) {
    if (updates) {
      const pair = row as { before: Row; after: Row };
      convert(pair.before);
      convert(pair.after);
    } else {
      convert(row as Row);
    }
  }
}

/** The parts of zongji's TableMap event (lib/binlog_event.js) the charset correction uses. */
interface TableMapInternals {
  columnCount: number;
  columnTypes: number[];
  _columnCharsetIds?: Array<number | undefined>;
  _effectiveColumnType(index: number): number;
  /** Set by the correction below on every TABLE_MAP it has seen. */
  tributaryCharsetsChecked?: boolean;
}

interface ParserInternals {
  _buffer: Buffer;
  _offset: number;
  _packetEnd: number;
}

let charsetFix: Promise<void> | undefined;

/**
 * zongji 0.9 leaves GEOMETRY columns out of the charset lists of a TABLE_MAP's optional metadata, but the
 * server counts them, so in a table with a spatial column the text columns after it get another column's
 * collation (the geometry's `binary`, typically) and decode as bytes. This wraps zongji's reader of that
 * metadata (once per process): after it has run, the charset fields are read again, counting GEOMETRY as the
 * server does, and the result replaces zongji's for every listed column. Only TABLE_MAPs with a GEOMETRY
 * column are touched, and the correction gives the same answer once zongji counts them itself.
 */
export function correctGeometryCharsets(): Promise<void> {
  charsetFix ??= (async () => {
    const index = createRequire(import.meta.url).resolve('@vlasky/zongji');
    const events = (await import(pathToFileURL(join(dirname(index), 'lib', 'binlog_event.js')).href)) as {
      TableMap?: { prototype: Record<string, unknown> };
    };
    const proto = events.TableMap?.prototype;
    const original = proto?.['_readOptionalMetadata'];
    if (!proto || typeof original !== 'function') return;
    proto['_readOptionalMetadata'] = function (
      this: TableMapInternals,
      parser: ParserInternals,
      zongji?: { useChecksum?: boolean },
    ) {
      const start = parser._offset;
      original.call(this, parser, zongji);
      this.tributaryCharsetsChecked = true;
      const ids = this._columnCharsetIds;
      if (!ids || !this.columnTypes.includes(MYSQL_TYPE_GEOMETRY)) return;
      const listed: number[] = [];
      for (let i = 0; i < this.columnCount; i++)
        if (CHARSET_LISTED_TYPES.has(this._effectiveColumnType(i))) listed.push(i);
      const end = parser._packetEnd - (zongji?.useChecksum ? 4 : 0);
      // The NULL bitmap comes first, then type / length / value fields.
      const fields = readFields(parser._buffer, start + Math.floor((this.columnCount + 7) / 8), end);
      for (const [type, value] of fields) {
        if (type === DEFAULT_CHARSET) {
          const r = lengthCoded(value);
          const fallback = r.next();
          for (const i of listed) ids[i] = fallback;
          while (!r.done()) {
            const position = r.next();
            const collation = r.next();
            const column = listed[position];
            if (column !== undefined) ids[column] = collation;
          }
        } else if (type === COLUMN_CHARSET) {
          const r = lengthCoded(value);
          for (let n = 0; !r.done(); n++) {
            const collation = r.next();
            const column = listed[n];
            if (column !== undefined) ids[column] = collation;
          }
        }
      }
    };
  })();
  return charsetFix;
}

/**
 * A TABLE_MAP zongji decoded from its own metadata without the charset correction, for a table with a spatial
 * column: its text columns cannot be trusted, so the stream stops rather than stage wrong values.
 */
export function uncorrectedCharsets(event: {
  hasSelfDescribingMetadata?: () => boolean;
  columnTypes?: number[];
  tributaryCharsetsChecked?: boolean;
  schemaName?: string;
  tableName?: string;
}): TributaryError | undefined {
  if (event.tributaryCharsetsChecked || event.hasSelfDescribingMetadata?.() !== true) return undefined;
  if (!event.columnTypes?.includes(MYSQL_TYPE_GEOMETRY)) return undefined;
  return new TributaryError(
    'INTERNAL',
    `The binlog table map of ${event.schemaName}.${event.tableName} has a spatial column, and the correction of its text columns' charsets could not be installed in @vlasky/zongji (lib/binlog_event.js TableMap#_readOptionalMetadata not found).`,
    {
      hint: 'The @vlasky/zongji version differs from the one Tributary was built with; reinstall the dependencies.',
    },
  );
}

function readFields(buffer: Buffer, from: number, end: number): Array<[number, Buffer]> {
  const fields: Array<[number, Buffer]> = [];
  let at = from;
  while (at < end) {
    const type = buffer.readUInt8(at);
    const length = lengthCodedAt(buffer, at + 1);
    const valueStart = at + 1 + length.size;
    fields.push([type, buffer.subarray(valueStart, valueStart + length.value)]);
    at = valueStart + length.value;
  }
  return fields;
}

function lengthCoded(buffer: Buffer): { next(): number; done(): boolean } {
  let at = 0;
  return {
    next() {
      const n = lengthCodedAt(buffer, at);
      at += n.size;
      return n.value;
    },
    done: () => at >= buffer.length,
  };
}

/** A length-encoded integer (1, 3, 4 or 9 bytes). */
function lengthCodedAt(buffer: Buffer, at: number): { value: number; size: number } {
  const first = buffer.readUInt8(at);
  if (first < 251) return { value: first, size: 1 };
  if (first === 252) return { value: buffer.readUInt16LE(at + 1), size: 3 };
  if (first === 253) return { value: buffer.readUIntLE(at + 1, 3), size: 4 };
  if (first === 254) return { value: Number(buffer.readBigUInt64LE(at + 1)), size: 9 };
  throw new Error(`invalid length-encoded integer 0x${first.toString(16)} in a TABLE_MAP`);
}
