/**
 * The shape of a captured table, independent of source and destination.
 *
 * A column's `type` is a Delta Lake primitive type name (`integer`, `decimal(10,2)`, `timestamp`, ...), chosen
 * by the source adapter, which alone knows the source's types; `sourceType` keeps the original for humans.
 */

/** Identifies a table at the source: `schema.table` (MySQL's database is the schema). */
export interface TableId {
  readonly schema: string;
  readonly table: string;
}

export function tableKey(id: TableId): string {
  return `${id.schema}.${id.table}`;
}

export interface ColumnSchema {
  readonly name: string;
  /** Delta Lake primitive type, e.g. `long`, `string`, `decimal(20,0)`, `timestamp`. */
  readonly type: string;
  readonly nullable: boolean;
  /** The source's declared type, e.g. `bigint(20) unsigned`. */
  readonly sourceType: string;
}

export interface TableSchema {
  readonly id: TableId;
  readonly columns: readonly ColumnSchema[];
  /** Primary key column names, in key order. Never empty for a captured table. */
  readonly primaryKey: readonly string[];
  /**
   * Where the key comes from, when it is not the source's primary key: `configured` (primary_keys in the
   * pipeline) or `unique:<index>` (a unique index over NOT NULL columns, the documented fallback).
   */
  readonly keySource?: string;
}

/**
 * A row as it travels from source to staging. Values keep full precision: DECIMAL, BIGINT UNSIGNED and
 * temporal values are strings, never JS numbers or Dates; binary values are Uint8Arrays.
 */
export type SqlValue = string | number | bigint | boolean | Uint8Array | null;
export type Row = Record<string, SqlValue>;
