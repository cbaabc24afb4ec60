/**
 * Deletion vector locations for the operations: VACUUM keeps the file of every referenced DV, RESTORE checks
 * it still exists, and SHALLOW CLONE makes a table-relative DV (`u`) absolute (`p`) because the clone lives
 * elsewhere. Decoding the location is `deletion-vectors.ts`'s.
 */
import { pathToFileURL } from 'node:url';
import type { DeletionVectorDescriptor } from '../actions.js';
import { deletionVectorFile } from '../deletion-vectors.js';

export { deletionVectorFile };

/** The descriptor with a table-relative (`u`) location made absolute (`p`), for use from another table. */
export function absoluteDeletionVector(
  tableRoot: string,
  dv: DeletionVectorDescriptor,
): DeletionVectorDescriptor {
  if (dv.storageType !== 'u') return dv;
  const file = deletionVectorFile(tableRoot, dv) as string;
  return { ...dv, storageType: 'p', pathOrInlineDv: pathToFileURL(file).href };
}
