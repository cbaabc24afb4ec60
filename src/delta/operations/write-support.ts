/**
 * What each maintenance operation may write to. A writer must honour every writer feature a table lists
 * (protocol §"Table Features"); `table-features.ts` knows which ones Tributary implements, and each operation
 * adds the features it honours by its nature: OPTIMIZE moves rows without changing them, so invariants, CHECK
 * constraints, generated and identity columns hold as they held; it writes physical names, so column mapping
 * is honoured. Metadata-only operations write no rows at all. RESTORE brings back old metadata, which would
 * reset an identity column's high-water mark, so identity columns in use are refused there.
 */
import type { Snapshot } from '../snapshot.js';
import { checkWriteSupport as checkTableWriteSupport, type WriteSupportOptions } from '../table-features.js';
import { tableFeatures } from './detail.js';

export type MaintenanceOperation =
  | 'OPTIMIZE'
  | 'VACUUM'
  | 'RESTORE'
  | 'CLONE'
  | 'SET TBLPROPERTIES'
  | 'UNSET TBLPROPERTIES';

const ROWS_UNCHANGED = [
  'invariants',
  'checkConstraints',
  'generatedColumns',
  'identityColumns',
  'columnMapping',
];

const HONOURED: Record<MaintenanceOperation, readonly string[]> = {
  OPTIMIZE: ROWS_UNCHANGED,
  VACUUM: ROWS_UNCHANGED,
  RESTORE: ['invariants', 'checkConstraints', 'generatedColumns', 'columnMapping'],
  CLONE: ROWS_UNCHANGED,
  'SET TBLPROPERTIES': ROWS_UNCHANGED,
  'UNSET TBLPROPERTIES': ROWS_UNCHANGED,
};

function writeSupportFor(operation: MaintenanceOperation): WriteSupportOptions {
  return { honouredFeatures: HONOURED[operation] };
}

/**
 * The operations commit with `commitWithRetry(..., {checkWriteSupport: false})` and call this in their build
 * step instead: the data writer's check would also demand cdc files for rewrites on change-data-feed tables,
 * which RESTORE and OPTIMIZE rightly do not write (readers derive changes from their adds and removes, or skip
 * them as `dataChange: false`).
 *
 * Throws `DELTA_PROTOCOL`, naming the feature, when `operation` cannot be done on this table without breaking a
 * feature it lists. VACUUM writes no data: it checks only when the table asks for it (`vacuumProtocolCheck`).
 */
export function checkWriteSupport(snapshot: Snapshot, operation: MaintenanceOperation): void {
  if (operation === 'VACUUM' && !tableFeatures(snapshot.protocol).includes('vacuumProtocolCheck')) return;
  checkTableWriteSupport(
    snapshot.protocol,
    snapshot.metadata,
    snapshot.tableRoot,
    writeSupportFor(operation),
  );
}
