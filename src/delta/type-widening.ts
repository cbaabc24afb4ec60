/**
 * Type widening on the writing side (the `typeWidening` table feature, reader 3 / writer 7).
 *
 * The protocol allows exactly these changes of a column's type, without rewriting data files (older files
 * keep their narrower physical type, and readers convert on read: `scan.ts` casts every column to its type):
 *
 * - integers: `byte` → `short` → `integer` → `long`;
 * - floating point: `float` → `double`, and `byte`, `short` or `integer` → `double`;
 * - `date` → `timestamp_ntz`;
 * - decimals: `decimal(p,s)` → `decimal(p+k1,s+k2)` with `k1 >= k2 >= 0`; `byte`, `short` or `integer` →
 *   `decimal(10+k1,k2)` and `long` → `decimal(20+k1,k2)`, again with `k1 >= k2 >= 0` (precision at most 38).
 *
 * A writer records each change in the metadata of the column's StructField under `delta.typeChanges`, a list
 * of `{toType, fromType}` objects (key order as Spark writes them), appended to and never dropped, and may only
 * apply a change when the table property `delta.enableTypeWidening` is `true`. The `tableVersion` field that
 * Spark's `typeWidening-preview` writes is not part of the stable feature and is not written.
 */
import type { DataType, StructField } from './schema.js';

/** One entry of a field's `delta.typeChanges`. */
export interface TypeChange {
  readonly toType: string;
  readonly fromType: string;
  /** Only for a map key/value or array element; never written by Tributary (top-level columns only). */
  readonly fieldPath?: string;
}

export const TYPE_CHANGES_KEY = 'delta.typeChanges';
export const ENABLE_TYPE_WIDENING = 'delta.enableTypeWidening';

const INTEGER_RANK: Readonly<Record<string, number>> = { byte: 1, short: 2, integer: 3, long: 4 };
/** The least decimal precision the protocol lets each integer type widen to (scale 0). */
const INTEGER_DECIMAL_PRECISION: Readonly<Record<string, number>> = {
  byte: 10,
  short: 10,
  integer: 10,
  long: 20,
};
const MAX_DECIMAL_PRECISION = 38;

function decimalOf(type: string): { precision: number; scale: number } | undefined {
  const m = /^decimal\(\s*(\d+)\s*,\s*(\d+)\s*\)$/.exec(type);
  return m ? { precision: Number(m[1]), scale: Number(m[2]) } : undefined;
}

/** The canonical spelling of a primitive type (`decimal(10, 2)` → `decimal(10,2)`), to compare types. */
export function canonicalType(type: DataType): DataType {
  if (typeof type !== 'string') return type;
  const d = decimalOf(type);
  return d ? `decimal(${d.precision},${d.scale})` : type;
}

/** Whether two types are the same, spelling aside. */
export function sameType(a: DataType, b: DataType): boolean {
  return JSON.stringify(canonicalType(a)) === JSON.stringify(canonicalType(b));
}

/** `decimal(p,s)` → `decimal(p+k1,s+k2)` with `k1 >= k2 >= 0`. */
function decimalWidens(from: { precision: number; scale: number }, to: { precision: number; scale: number }) {
  const k1 = to.precision - from.precision;
  const k2 = to.scale - from.scale;
  return k2 >= 0 && k1 >= k2 && to.precision <= MAX_DECIMAL_PRECISION;
}

/**
 * Whether changing a column from `from` to `to` is a type change the protocol's type widening supports. The
 * same type is not a change (false). Only primitive types are judged; nested types are never widened here.
 */
export function isSupportedTypeChange(from: DataType, to: DataType): boolean {
  if (typeof from !== 'string' || typeof to !== 'string' || sameType(from, to)) return false;
  const f = canonicalType(from) as string;
  const t = canonicalType(to) as string;
  const fromRank = INTEGER_RANK[f];
  const toRank = INTEGER_RANK[t];
  if (fromRank !== undefined && toRank !== undefined) return toRank > fromRank;
  if (f === 'float' && t === 'double') return true;
  if (t === 'double') return fromRank !== undefined && f !== 'long';
  if (f === 'date') return t === 'timestamp_ntz';
  const toDecimal = decimalOf(t);
  if (!toDecimal) return false;
  const fromDecimal = decimalOf(f);
  if (fromDecimal) return decimalWidens(fromDecimal, toDecimal);
  const least = INTEGER_DECIMAL_PRECISION[f];
  return least !== undefined && decimalWidens({ precision: least, scale: 0 }, toDecimal);
}

/** The `delta.typeChanges` entries of a field (none when it never changed type). */
export function typeChangesOf(field: StructField): TypeChange[] {
  const raw = field.metadata[TYPE_CHANGES_KEY];
  return Array.isArray(raw) ? (raw as TypeChange[]) : [];
}

/**
 * The field with its type widened to `to` and the change appended to its `delta.typeChanges` (earlier
 * entries and every other metadata key kept). Throws when the change is not one the protocol supports.
 */
export function widenField(field: StructField, to: string): StructField {
  if (!isSupportedTypeChange(field.type, to)) {
    throw new Error(
      `${field.name}: ${JSON.stringify(field.type)} -> ${JSON.stringify(to)} is not a supported type widening`,
    );
  }
  const toType = canonicalType(to) as string;
  const change: TypeChange = { toType, fromType: canonicalType(field.type) as string };
  return {
    ...field,
    type: toType,
    metadata: { ...field.metadata, [TYPE_CHANGES_KEY]: [...typeChangesOf(field), change] },
  };
}
