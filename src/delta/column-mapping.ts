/**
 * Column mapping (DIGEST §8, feature `columnMapping`): with `delta.columnMapping.mode` = `name` or `id`, the
 * names in Parquet files, `add.partitionValues`, stats and CDC files are *physical* names
 * (`delta.columnMapping.physicalName` in each field's metadata, usually `col-<uuid>`), so columns can be renamed
 * or dropped without rewriting data. In `id` mode the Parquet field id (`delta.columnMapping.id`) is the key that
 * matches a logical field to a file column; the physical name is the fallback. Nested struct fields carry their
 * own physical names and ids.
 */
import { TributaryError } from '../core/errors.js';
import type { Metadata, Protocol } from './actions.js';
import type { StructField } from './schema.js';

export type ColumnMappingMode = 'none' | 'name' | 'id';

const PHYSICAL_NAME_KEY = 'delta.columnMapping.physicalName';
const ID_KEY = 'delta.columnMapping.id';

/** The table's mode; an unknown one is refused with `DELTA_PROTOCOL` (reading it would misname columns). */
export function columnMappingMode(metadata: Metadata, tableRoot: string): ColumnMappingMode {
  const mode = (metadata.configuration['delta.columnMapping.mode'] ?? 'none').toLowerCase();
  if (mode === 'none' || mode === 'name' || mode === 'id') return mode;
  throw new TributaryError(
    'DELTA_PROTOCOL',
    `Delta table ${tableRoot} uses column mapping mode '${mode}', which Tributary does not know`,
    { hint: "Column mapping modes are 'none', 'name' and 'id'." },
  );
}

/**
 * The mode readers must apply: the configured one when the protocol supports column mapping (reader 2, or
 * reader 3 listing `columnMapping`), else `none`, as delta-kernel does: without the feature the property is
 * inert.
 */
export function effectiveColumnMappingMode(
  protocol: Protocol,
  metadata: Metadata,
  tableRoot: string,
): ColumnMappingMode {
  const mode = columnMappingMode(metadata, tableRoot);
  const supported =
    protocol.minReaderVersion === 2 ||
    (protocol.minReaderVersion >= 3 && (protocol.readerFeatures ?? []).includes('columnMapping'));
  return supported ? mode : 'none';
}

/**
 * The name of `field` in data files, partition values and CDC files. Under `none` this is the logical name;
 * under `name`/`id` it is the physical name (falling back to the logical name, which is what Spark assigns to
 * columns that existed before column mapping was enabled).
 */
export function physicalName(field: StructField, mode: ColumnMappingMode): string {
  if (mode === 'none') return field.name;
  const physical = field.metadata[PHYSICAL_NAME_KEY];
  return typeof physical === 'string' && physical !== '' ? physical : field.name;
}

/** The Parquet field id of `field` in `id` mode, or undefined. */
export function fieldId(field: StructField, mode: ColumnMappingMode): number | undefined {
  if (mode !== 'id') return undefined;
  const id = field.metadata[ID_KEY];
  const n = typeof id === 'string' ? Number(id) : id;
  return typeof n === 'number' && Number.isInteger(n) ? n : undefined;
}

/**
 * Looks up a partition value by the column's physical name (column mapping), then its logical name, then
 * case-insensitively (Hive lower-cases directory names, and some writers followed).
 */
export function partitionValueOf(
  values: Readonly<Record<string, string | null>>,
  field: StructField,
  mode: ColumnMappingMode,
): string | null | undefined {
  const physical = physicalName(field, mode);
  if (physical in values) return values[physical];
  if (field.name in values) return values[field.name];
  const lower = physical.toLowerCase();
  const logicalLower = field.name.toLowerCase();
  for (const [k, v] of Object.entries(values)) {
    const key = k.toLowerCase();
    if (key === lower || key === logicalLower) return v;
  }
  return undefined;
}
