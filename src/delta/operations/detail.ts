/** `DESCRIBE DETAIL`: the table-level facts of one snapshot, with the columns Databricks shows. */
import type { Protocol } from '../actions.js';
import type { Snapshot } from '../snapshot.js';
import { readerFeaturesOf, writerFeaturesOf } from '../table-features.js';

export interface TableDetail {
  readonly format: 'delta';
  readonly id: string;
  /** `catalog.schema.table` when the table was named that way; null for a table read by path. */
  readonly name: string | null;
  readonly description: string | null;
  /** Absolute path of the table root. */
  readonly location: string;
  /** ms since the epoch (`metaData.createdTime`), or null when the writer did not record it. */
  readonly createdAt: number | null;
  /** ms since the epoch: the commit timestamp of the snapshot's version. */
  readonly lastModified: number;
  readonly partitionColumns: readonly string[];
  readonly clusteringColumns: readonly string[];
  readonly numFiles: number;
  readonly sizeInBytes: number;
  readonly properties: Readonly<Record<string, string>>;
  readonly minReaderVersion: number;
  readonly minWriterVersion: number;
  readonly tableFeatures: readonly string[];
  readonly statistics: {
    readonly numRowsDeletedByDeletionVectors: number;
    readonly numDeletionVectors: number;
  };
}

/**
 * The table features a protocol supports: the explicit lists for reader 3 / writer 7, else the features the
 * legacy versions imply (writer 2 = appendOnly + invariants, ...). Sorted, as Databricks shows them.
 */
export function tableFeatures(protocol: Protocol): string[] {
  return [...new Set([...writerFeaturesOf(protocol), ...readerFeaturesOf(protocol)])].sort();
}

/** Clustering columns of a liquid-clustered table, from its `delta.clustering` domain. */
function clusteringColumns(snapshot: Snapshot): string[] {
  const domain = snapshot.domainMetadata.get('delta.clustering');
  if (!domain) return [];
  try {
    const config = JSON.parse(domain.configuration) as { clusteringColumns?: unknown };
    if (!Array.isArray(config.clusteringColumns)) return [];
    return config.clusteringColumns.map((c) => (Array.isArray(c) ? c.join('.') : String(c)));
  } catch {
    return [];
  }
}

export function tableDetail(snapshot: Snapshot, options: { name?: string } = {}): TableDetail {
  let sizeInBytes = 0;
  let numDeletionVectors = 0;
  let numRowsDeletedByDeletionVectors = 0;
  for (const file of snapshot.files) {
    sizeInBytes += file.size;
    if (file.deletionVector) {
      numDeletionVectors++;
      numRowsDeletedByDeletionVectors += file.deletionVector.cardinality;
    }
  }
  const { metadata, protocol } = snapshot;
  return {
    format: 'delta',
    id: metadata.id,
    name: options.name ?? null,
    description: metadata.description ?? null,
    location: snapshot.tableRoot,
    createdAt: typeof metadata.createdTime === 'number' ? metadata.createdTime : null,
    lastModified: snapshot.timestamp,
    partitionColumns: [...metadata.partitionColumns],
    clusteringColumns: clusteringColumns(snapshot),
    numFiles: snapshot.files.length,
    sizeInBytes,
    properties: { ...metadata.configuration },
    minReaderVersion: protocol.minReaderVersion,
    minWriterVersion: protocol.minWriterVersion,
    tableFeatures: tableFeatures(protocol),
    statistics: { numRowsDeletedByDeletionVectors, numDeletionVectors },
  };
}
