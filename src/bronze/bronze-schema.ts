/**
 * The Delta schema of a bronze table: the source columns, mapped to Delta types by the source adapter, plus
 * the CDC metadata columns that Lakeflow Connect adds.
 */
import type { TableSchema } from '../core/table.js';
import type { DataType, StructField, StructType } from '../delta/schema.js';
import { isSupportedTypeChange, sameType, widenField } from '../delta/type-widening.js';

/** Source commit time of the change that produced the row's current version. */
export const COMMIT_TIMESTAMP_COLUMN = '_commit_timestamp';

export function bronzeSchema(source: TableSchema): StructType {
  const fields: StructField[] = source.columns.map((c) => ({
    name: c.name,
    type: c.type,
    // Bronze never rejects a row the source accepted: NOT NULL is the source's business, and a dropped
    // column must be able to hold NULL in later files.
    nullable: true,
    metadata: {},
  }));
  fields.push({ name: COMMIT_TIMESTAMP_COLUMN, type: 'timestamp', nullable: true, metadata: {} });
  return { type: 'struct', fields };
}

/** A column whose type the source widened, as the bronze table must record it. */
export interface WidenedColumn {
  readonly name: string;
  readonly from: string;
  readonly to: string;
}

/**
 * The schema after evolving `current` to include every column of `incoming`. Columns are only ever added
 * (dropped source columns stay, filled with NULL). A changed type is widened in place when Delta type widening
 * supports the change (`widened`; the field gets a `delta.typeChanges` entry); any other change of type (a
 * narrowing, or an incompatible one such as integer → string) is returned as a conflict. Metadata of existing
 * fields, earlier `delta.typeChanges` included, is kept as it is.
 */
export function evolveSchema(
  current: StructType,
  incoming: StructType,
): { schema: StructType; added: string[]; widened: WidenedColumn[]; conflicts: string[] } {
  const added: string[] = [];
  const widened: WidenedColumn[] = [];
  const conflicts: string[] = [];
  const fields = [...current.fields];
  for (const f of incoming.fields) {
    const at = fields.findIndex((e) => e.name === f.name);
    const existing = fields[at];
    if (!existing) {
      added.push(f.name);
      fields.splice(fields.length - (fields.at(-1)?.name === COMMIT_TIMESTAMP_COLUMN ? 1 : 0), 0, f);
    } else if (sameType(existing.type, f.type)) {
      // Unchanged.
    } else if (typeof f.type === 'string' && isSupportedTypeChange(existing.type, f.type)) {
      fields[at] = widenField(existing, f.type);
      widened.push({ name: f.name, from: String(existing.type), to: f.type });
    } else {
      conflicts.push(`${f.name}: ${typeText(existing.type)} -> ${typeText(f.type)}`);
    }
  }
  return { schema: { type: 'struct', fields }, added, widened, conflicts };
}

function typeText(type: DataType): string {
  return typeof type === 'string' ? type : JSON.stringify(type);
}
