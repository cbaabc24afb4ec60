/**
 * The Delta schema of a bronze table: the source columns, mapped to Delta types by the source adapter, plus
 * the CDC metadata columns that Lakeflow Connect adds.
 */
import type { TableSchema } from '../core/table.js';
import type { StructField, StructType } from '../delta/schema.js';

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

/**
 * The schema after evolving `current` to include every column of `incoming`. Columns are only ever added
 * (dropped source columns stay, filled with NULL). A changed type is returned as a conflict.
 */
export function evolveSchema(
  current: StructType,
  incoming: StructType,
): { schema: StructType; added: string[]; conflicts: string[] } {
  const byName = new Map(current.fields.map((f) => [f.name, f]));
  const added: string[] = [];
  const conflicts: string[] = [];
  const fields = [...current.fields];
  for (const f of incoming.fields) {
    const existing = byName.get(f.name);
    if (!existing) {
      added.push(f.name);
      fields.splice(fields.length - (fields.at(-1)?.name === COMMIT_TIMESTAMP_COLUMN ? 1 : 0), 0, f);
    } else if (JSON.stringify(existing.type) !== JSON.stringify(f.type)) {
      conflicts.push(`${f.name}: ${JSON.stringify(existing.type)} -> ${JSON.stringify(f.type)}`);
    }
  }
  return { schema: { type: 'struct', fields }, added, conflicts };
}
