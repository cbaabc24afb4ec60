/**
 * The Delta schema of a bronze table: the source columns, mapped to Delta types by the source adapter, plus
 * the CDC metadata columns that Lakeflow Connect adds. A history table (SCD type 2) also has `__START_AT` and
 * `__END_AT`, as Lakeflow's SCD type 2 tables do: one row per version of a key.
 */
import { TributaryError } from '../core/errors.js';
import type { TableSchema } from '../core/table.js';
import type { DataType, StructField, StructType } from '../delta/schema.js';
import { isSupportedTypeChange, sameType, widenField } from '../delta/type-widening.js';

/** Source commit time of the change that produced the row's current version. */
export const COMMIT_TIMESTAMP_COLUMN = '_commit_timestamp';
/** History tables: when the row's version began (the source commit time of the change that made it). */
export const START_AT_COLUMN = '__START_AT';
/** History tables: when the row's version ended (superseded or deleted); NULL while it is current. */
export const END_AT_COLUMN = '__END_AT';
/** The metadata columns bronze adds after the source columns (a table may name its commit time otherwise). */
const METADATA_COLUMNS = new Set([COMMIT_TIMESTAMP_COLUMN, START_AT_COLUMN, END_AT_COLUMN]);

export interface BronzeLayout {
  /** SCD type 2: add `__START_AT` and `__END_AT`. */
  readonly history?: boolean;
  /**
   * The name of the source commit time column; default {@link COMMIT_TIMESTAMP_COLUMN}. Tables with the
   * change data feed need another, since the feed reserves that name.
   */
  readonly commitTimestampColumn?: string | undefined;
}

/** Whether `schema` has the history columns as bronze metadata (not as columns of the source table). */
export function hasHistoryColumns(schema: StructType, source: TableSchema): boolean {
  return [START_AT_COLUMN, END_AT_COLUMN].every(
    (name) => schema.fields.some((f) => f.name === name) && !source.columns.some((c) => c.name === name),
  );
}

export function bronzeSchema(source: TableSchema, layout: BronzeLayout = {}): StructType {
  const commitColumn = layout.commitTimestampColumn ?? COMMIT_TIMESTAMP_COLUMN;
  if (source.columns.some((c) => c.name === commitColumn)) {
    throw new TributaryError(
      'CONFIG_INVALID',
      `The source table ${source.id.schema}.${source.id.table} has a column ${commitColumn}, the name its bronze table uses for the source commit time.`,
      { hint: 'Set table_configuration.commit_timestamp_column to a name the source table does not use.' },
    );
  }
  if (layout.history) {
    const clash = source.columns
      .filter((c) => metadataColumnsOf(commitColumn).has(c.name))
      .map((c) => c.name);
    if (clash.length > 0) {
      throw new TributaryError(
        'CONFIG_INVALID',
        `The source table ${source.id.schema}.${source.id.table} has column(s) ${clash.join(', ')}, which SCD_TYPE_2 bronze tables use for their history.`,
        { hint: 'Leave the column(s) out with exclude_columns, or use SCD_TYPE_1 for this table.' },
      );
    }
  }
  const fields: StructField[] = source.columns.map((c) => ({
    name: c.name,
    type: c.type,
    // Bronze never rejects a row the source accepted: NOT NULL is the source's business, and a dropped
    // column must be able to hold NULL in later files.
    nullable: true,
    metadata: {},
  }));
  fields.push({ name: commitColumn, type: 'timestamp', nullable: true, metadata: {} });
  if (layout.history) {
    fields.push(
      { name: START_AT_COLUMN, type: 'timestamp', nullable: true, metadata: {} },
      { name: END_AT_COLUMN, type: 'timestamp', nullable: true, metadata: {} },
    );
  }
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
  /** The incoming schema's trailing metadata columns, which new source columns go before. */
  metadataColumns: ReadonlySet<string> = METADATA_COLUMNS,
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
      // Source columns go before the trailing metadata columns.
      let at = fields.length;
      while (!metadataColumns.has(f.name) && at > 0 && metadataColumns.has(fields[at - 1]?.name as string))
        at--;
      fields.splice(at, 0, f);
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

/** The metadata columns of a bronze table whose commit time column is `commitColumn`. */
export function metadataColumnsOf(commitColumn: string): ReadonlySet<string> {
  return new Set([commitColumn, START_AT_COLUMN, END_AT_COLUMN]);
}

function typeText(type: DataType): string {
  return typeof type === 'string' ? type : JSON.stringify(type);
}
