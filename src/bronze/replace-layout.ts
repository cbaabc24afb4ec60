/**
 * Tables a full refresh must replace whole rather than merge into.
 *
 * Switching a table's `scd_type` (SCD_TYPE_1 ↔ SCD_TYPE_2) changes its layout: a history table has
 * `__START_AT` and `__END_AT` and a row per version, a current-state table neither. No merge can turn one
 * into the other, so the switch happens at the table's next full refresh (`tributary refresh <pipeline>
 * --table t`): the new snapshot replaces the table whole, schema included, as Delta's REPLACE TABLE does. The
 * table keeps its id, properties and protocol (a protocol is never lowered), and its earlier versions stay
 * readable by time travel. Column-mapped tables are left out: their field ids would not carry over.
 */
import type { TableSchema } from '../core/table.js';
import type { Action } from '../delta/actions.js';
import { columnMappingMode } from '../delta/column-mapping.js';
import { removeOf } from '../delta/operations/optimize.js';
import { parseSchema } from '../delta/schema.js';
import type { Snapshot } from '../delta/snapshot.js';
import { protocolFor } from '../delta/table-features.js';
import { bronzeSchema, evolveSchema, hasHistoryColumns } from './bronze-schema.js';
import type { MergePlan } from './merge-changes.js';

/** The existing table's layout is not the one the pipeline wants now, and a refresh may replace it. */
export function layoutSwitched(snapshot: Snapshot | null, source: TableSchema, history: boolean): boolean {
  return (
    snapshot !== null &&
    hasHistoryColumns(snapshot.schema, source) !== history &&
    columnMappingMode(snapshot.metadata, snapshot.tableRoot) === 'none'
  );
}

/**
 * A history table whose column types changed beyond what Delta can widen: closing its rows cannot carry them
 * over (a history table keeps its rows across a reset), so a refresh replaces it whole, like a layout switch.
 */
export function historyCannotEvolve(
  snapshot: Snapshot | null,
  source: TableSchema,
  commitTimestampColumn?: string,
): boolean {
  return (
    snapshot !== null &&
    hasHistoryColumns(snapshot.schema, source) &&
    columnMappingMode(snapshot.metadata, snapshot.tableRoot) === 'none' &&
    evolveSchema(snapshot.schema, bronzeSchema(source, { history: true, commitTimestampColumn })).conflicts
      .length > 0
  );
}

/**
 * `plan`, made as for a new table, turned into the replacement of `snapshot`'s table: every current file is
 * removed in the same commit, and the new metadata keeps the table's id, creation time and properties.
 */
export function replacingTable(snapshot: Snapshot, plan: MergePlan): MergePlan {
  const now = Date.now();
  const actions: Action[] = snapshot.files.map((add) => ({ remove: removeOf(add, now, true) }));
  for (const action of plan.actions) {
    if ('protocol' in action) continue;
    if ('metaData' in action) {
      const metadata = {
        ...action.metaData,
        id: snapshot.metadata.id,
        ...(snapshot.metadata.createdTime === undefined
          ? {}
          : { createdTime: snapshot.metadata.createdTime }),
        configuration: { ...snapshot.metadata.configuration, ...action.metaData.configuration },
      };
      const protocol = protocolFor(metadata.configuration, parseSchema(metadata.schemaString), {
        current: snapshot.protocol,
      });
      if (JSON.stringify(protocol) !== JSON.stringify(snapshot.protocol)) actions.push({ protocol });
      actions.push({ metaData: metadata });
      continue;
    }
    actions.push(action);
  }
  const rowsBefore = snapshot.files.reduce((n, add) => n + rowCount(add), 0);
  return {
    ...plan,
    actions,
    operationParameters: { ...plan.operationParameters, mode: 'Overwrite', replacesLayout: true },
    // Every old file goes, and `plan` was made for a new table: only new rows are added.
    wholeFileChanges: true,
    metrics: {
      ...plan.metrics,
      deleted: plan.metrics.deleted + rowsBefore,
      filesRemoved: plan.metrics.filesRemoved + snapshot.files.length,
    },
  };
}

function rowCount(add: { stats?: string | undefined }): number {
  try {
    return Number((JSON.parse(add.stats ?? '{}') as { numRecords?: number }).numRecords ?? 0);
  } catch {
    return 0;
  }
}
