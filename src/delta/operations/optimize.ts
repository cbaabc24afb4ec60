/**
 * OPTIMIZE: compaction of small files (bin-packing) and Z-ordering, committed as a rearrangement
 * (`dataChange: false` on every add and remove, so streaming and change-feed readers skip it).
 *
 * - Bin-packing, per partition: files smaller than `minFileSize` (and files whose deletion vectors hide at least
 *   5% of their rows) are sorted by size and packed greedily into bins of at most `targetFileSize` bytes; each
 *   bin of two files or more (or one file with a deletion vector) becomes one new file. Running it again on its
 *   own output does nothing.
 * - ZORDER BY, per partition: every file of the partition is rewritten; the rows are sorted by a Z-order key of
 *   the columns (see `zorder.ts`) and cut into files of about `targetFileSize` bytes.
 *
 * Rows are read through `scanSql`, so deletion vectors, column mapping and partition values are honoured, and
 * written under physical names; partition values are copied from the files they come from.
 */
import { unlink } from 'node:fs/promises';
import type { DuckDBConnection } from '@duckdb/node-api';
import { messageOf, TributaryError } from '../../core/errors.js';
import type { Action, AddFile, RemoveFile } from '../actions.js';
import { effectiveColumnMappingMode, partitionValueOf } from '../column-mapping.js';
import { commitWithRetry } from '../commit.js';
import { withConnection } from '../duckdb.js';
import { buildScanSql, layoutOf, partitionValueSql, sqlIdentifier as q } from '../scan.js';
import { loadSnapshot, type Snapshot } from '../snapshot.js';
import { DEFAULT_TARGET_FILE_SIZE, targetFileSizeOf } from './table-config.js';
import { writeDataFile } from './write-files.js';
import { checkWriteSupport } from './write-support.js';
import { Z_ORDER_KEY, zOrderSelect } from './zorder.js';

export interface OptimizeOptions {
  /** SQL predicate (DuckDB dialect) over partition columns only; only matching partitions are optimized. */
  where?: string;
  /** Z-order the rows of each selected partition by these (non-partition) columns. */
  zOrderBy?: readonly string[];
  /** Bytes. Default: the `delta.targetFileSize` property, else 128 MiB. */
  targetFileSize?: number;
  /** Files below this size are compacted by bin-packing. Default: `targetFileSize`. */
  minFileSize?: number;
  /**
   * Auto compaction (what a writer runs after a commit when `delta.autoOptimize.autoCompact` is on): recorded
   * as `auto: true`, and a partition is compacted only when it has at least `minNumFiles` small files.
   */
  auto?: boolean;
  /** Default 50 when `auto`, else 2. */
  minNumFiles?: number;
  /** The DuckDB connection to read and write with (time zone UTC). Default: a connection of its own. */
  connection?: DuckDBConnection;
}

export interface FileSizeStats {
  readonly min: number | null;
  readonly max: number | null;
  readonly avg: number;
  readonly totalFiles: number;
  readonly totalSize: number;
}

export interface OptimizeMetrics {
  readonly numFilesAdded: number;
  readonly numFilesRemoved: number;
  readonly filesAdded: FileSizeStats;
  readonly filesRemoved: FileSizeStats;
  readonly partitionsOptimized: number;
  readonly zOrderStats: { readonly strategyName: 'all'; readonly numOutputCubes: number } | null;
  readonly numBatches: number;
  readonly totalConsideredFiles: number;
  readonly totalFilesSkipped: number;
  readonly preserveInsertionOrder: boolean;
  readonly numDeletionVectorsRemoved: number;
}

export interface OptimizeResult {
  readonly tableRoot: string;
  /** The new version, or null when there was nothing to optimize (no commit is made then). */
  readonly version: number | null;
  readonly metrics: OptimizeMetrics;
}

/** A DV hiding at least this share of a file's rows makes the file worth rewriting (Delta's default). */
const DELETED_ROWS_RATIO = 0.05;

/** A scan of some of the snapshot's files (deletion vectors, column mapping and partition values honoured). */
function scanFiles(
  connection: DuckDBConnection,
  snapshot: Snapshot,
  files: readonly AddFile[],
): Promise<string> {
  return buildScanSql(connection, {
    layout: layoutOf(snapshot),
    files: files.map((add) => ({
      path: snapshot.dataFilePath(add),
      partitionValues: add.partitionValues,
      deletionVector: add.deletionVector ?? undefined,
      source: `the log of ${snapshot.tableRoot} at version ${snapshot.version}`,
    })),
  });
}

function partitionFields(snapshot: Snapshot) {
  const columns = new Set(snapshot.metadata.partitionColumns.map((c) => c.toLowerCase()));
  return snapshot.schema.fields.filter((f) => columns.has(f.name.toLowerCase()));
}

function modeOf(snapshot: Snapshot) {
  return effectiveColumnMappingMode(snapshot.protocol, snapshot.metadata, snapshot.tableRoot);
}

function partitionValue(snapshot: Snapshot, add: AddFile, field: ReturnType<typeof partitionFields>[number]) {
  return partitionValueOf(add.partitionValues, field, modeOf(snapshot)) ?? null;
}

function partitionKey(snapshot: Snapshot, add: AddFile): string {
  return JSON.stringify(partitionFields(snapshot).map((f) => partitionValue(snapshot, add, f)));
}

/** Partitions (keys) whose values satisfy `where`, evaluated by DuckDB over typed partition values. */
async function matchingPartitions(
  connection: DuckDBConnection,
  snapshot: Snapshot,
  groups: ReadonlyMap<string, readonly AddFile[]>,
  where: string,
): Promise<Set<string>> {
  const fields = partitionFields(snapshot);
  const keys = [...groups.keys()];
  if (keys.length === 0) return new Set();
  const rows = keys.map((key, i) => {
    const sample = (groups.get(key) as readonly AddFile[])[0] as AddFile;
    const values = fields.map((f) => partitionValueSql(partitionValue(snapshot, sample, f), f.type));
    return `(${[String(i), ...values].join(', ')})`;
  });
  const names = ['__tributary_partition', ...fields.map((f) => f.name)].map(q).join(', ');
  try {
    const result = await connection.runAndReadAll(
      `SELECT "__tributary_partition" FROM (VALUES ${rows.join(', ')}) AS p(${names}) WHERE ${where}`,
    );
    return new Set(result.getRowsJS().map((r) => keys[Number(r[0])] as string));
  } catch (error) {
    const message = messageOf(error);
    const column = /Referenced column "?([^"\s]+)"? not found/.exec(message)?.[1];
    const partitionList = snapshot.metadata.partitionColumns.join(', ') || 'none';
    throw new TributaryError(
      'SQL_ERROR',
      column
        ? `OPTIMIZE WHERE may only use partition columns (${partitionList}); '${column}' is not one`
        : `OPTIMIZE WHERE ${where}: ${message}`,
      { cause: error },
    );
  }
}

function sizeStats(sizes: readonly number[]): FileSizeStats {
  const totalSize = sizes.reduce((a, b) => a + b, 0);
  return {
    min: sizes.length ? Math.min(...sizes) : null,
    max: sizes.length ? Math.max(...sizes) : null,
    avg: sizes.length ? totalSize / sizes.length : 0,
    totalFiles: sizes.length,
    totalSize,
  };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

function numRecords(add: AddFile): number | undefined {
  try {
    return (JSON.parse(add.stats ?? '{}') as { numRecords?: number }).numRecords;
  } catch {
    return undefined;
  }
}

function deletedRatio(add: AddFile): number {
  if (!add.deletionVector) return 0;
  const records = numRecords(add);
  return records ? add.deletionVector.cardinality / records : 1;
}

/** Greedy bins of at most `target` bytes over files sorted by size. */
function binPack(files: readonly AddFile[], target: number): AddFile[][] {
  const bins: AddFile[][] = [];
  let current: AddFile[] = [];
  let size = 0;
  for (const file of [...files].sort((a, b) => a.size - b.size)) {
    if (current.length > 0 && size + file.size > target) {
      bins.push(current);
      current = [];
      size = 0;
    }
    current.push(file);
    size += file.size;
  }
  if (current.length > 0) bins.push(current);
  return bins.filter((bin) => bin.length > 1 || bin.some((f) => f.deletionVector));
}

function resolveColumns(snapshot: Snapshot, names: readonly string[]): string[] {
  const partition = new Set(snapshot.metadata.partitionColumns.map((c) => c.toLowerCase()));
  return names.map((name) => {
    const bare = name.replace(/^[`"]|[`"]$/g, '');
    const field = snapshot.schema.fields.find((f) => f.name.toLowerCase() === bare.toLowerCase());
    if (!field) {
      throw new TributaryError(
        'SQL_ERROR',
        `ZORDER BY column '${bare}' does not exist in ${snapshot.tableRoot} (columns: ${snapshot.schema.fields.map((f) => f.name).join(', ')})`,
      );
    }
    if (partition.has(field.name.toLowerCase())) {
      throw new TributaryError(
        'SQL_ERROR',
        `ZORDER BY column '${field.name}' is a partition column; Z-order data columns only (each partition is optimized on its own)`,
      );
    }
    if (typeof field.type !== 'string' || field.type === 'binary') {
      throw new TributaryError(
        'SQL_ERROR',
        `ZORDER BY column '${field.name}' has a type that cannot be ordered`,
      );
    }
    return field.name;
  });
}

interface Job {
  readonly files: readonly AddFile[];
  readonly partitionValues: Record<string, string | null>;
}

/** Optimizes the table at `tableRoot`; see the module comment. */
export async function optimize(tableRoot: string, options: OptimizeOptions = {}): Promise<OptimizeResult> {
  if (options.connection) return optimizeWith(options.connection, tableRoot, options);
  return withConnection(async (connection) => {
    await connection.run("SET TimeZone = 'UTC'");
    return optimizeWith(connection, tableRoot, options);
  });
}

/** Thrown out of `build` when a (re)planned OPTIMIZE has nothing to rewrite. */
class NothingToOptimize extends Error {}

async function optimizeWith(
  connection: DuckDBConnection,
  tableRoot: string,
  options: OptimizeOptions,
): Promise<OptimizeResult> {
  const startTime = Date.now();
  const first = await loadSnapshot(tableRoot);
  checkWriteSupport(first, 'OPTIMIZE');
  let metrics = emptyMetrics(0);
  let zOrderBy: string[] = [];
  const build = async (snapshot: Snapshot) => {
    checkWriteSupport(snapshot, 'OPTIMIZE');
    zOrderBy =
      options.zOrderBy && options.zOrderBy.length > 0 ? resolveColumns(snapshot, options.zOrderBy) : [];
    const target = options.targetFileSize ?? targetFileSizeOf(snapshot.metadata) ?? DEFAULT_TARGET_FILE_SIZE;
    if (!(target > 0))
      throw new TributaryError('SQL_ERROR', `OPTIMIZE target file size ${target} is not positive`);
    const { jobs, considered } = await planJobs(connection, snapshot, options, zOrderBy, target);
    metrics = emptyMetrics(considered);
    if (jobs.length === 0) throw new NothingToOptimize();

    const added: AddFile[] = [];
    const removed: AddFile[] = [];
    for (const job of jobs) {
      const query = await scanFiles(connection, snapshot, job.files);
      if (zOrderBy.length > 0) {
        added.push(...(await writeZOrdered(connection, snapshot, job, query, zOrderBy, target)));
      } else {
        const add = await writeDataFile(connection, {
          snapshot,
          query,
          partitionValues: job.partitionValues,
          dataChange: false,
        });
        // Every row deleted by deletion vectors: removing the files is the whole rewrite.
        if (numRecords(add) === 0) await unlink(snapshot.dataFilePath(add));
        else added.push(add);
      }
      removed.push(...job.files);
    }
    metrics = optimizeMetrics(jobs, considered, added, removed, zOrderBy.length > 0);
    const addedSizes = added.map((f) => f.size).sort((a, b) => a - b);
    const now = Date.now();
    const actions: Action[] = [
      ...removed.map((f) => ({ remove: removeOf(f, now, false) })),
      ...added.map((add) => ({ add })),
    ];
    return {
      actions,
      request: {
        operation: 'OPTIMIZE',
        operationParameters: {
          predicate: options.where ? [options.where] : [],
          zOrderBy,
          auto: options.auto ?? false,
        },
        operationMetrics: {
          numRemovedFiles: String(removed.length),
          numRemovedBytes: String(metrics.filesRemoved.totalSize),
          p25FileSize: String(percentile(addedSizes, 0.25)),
          p50FileSize: String(percentile(addedSizes, 0.5)),
          p75FileSize: String(percentile(addedSizes, 0.75)),
          minFileSize: String(metrics.filesAdded.min ?? 0),
          maxFileSize: String(metrics.filesAdded.max ?? 0),
          numAddedFiles: String(added.length),
          numAddedBytes: String(metrics.filesAdded.totalSize),
          numDeletionVectorsRemoved: String(metrics.numDeletionVectorsRemoved),
          executionTimeMs: String(Date.now() - startTime),
        },
        isBlindAppend: false,
      },
      // A rearrangement: concurrent appends do not matter; a concurrent delete of a file we rewrote does.
      readSet: { files: removed.map((f) => f.path) },
      isolationLevel: 'SnapshotIsolation' as const,
    };
  };
  try {
    const result = await commitWithRetry(
      first.tableRoot,
      async (snapshot) => {
        if (!snapshot)
          throw new TributaryError('DELTA_TABLE_NOT_FOUND', `No Delta table at ${first.tableRoot}`);
        return build(snapshot);
      },
      { snapshot: first, checkWriteSupport: false },
    );
    return { tableRoot: first.tableRoot, version: result.version, metrics };
  } catch (error) {
    if (error instanceof NothingToOptimize) return { tableRoot: first.tableRoot, version: null, metrics };
    throw error;
  }
}

/** The bins (or, with ZORDER BY, whole partitions) to rewrite. */
async function planJobs(
  connection: DuckDBConnection,
  snapshot: Snapshot,
  options: OptimizeOptions,
  zOrderBy: readonly string[],
  target: number,
): Promise<{ jobs: Job[]; considered: number }> {
  const minFileSize = options.minFileSize ?? target;
  const minNumFiles = options.minNumFiles ?? (options.auto ? 50 : 2);
  const groups = new Map<string, AddFile[]>();
  for (const add of snapshot.files) {
    const key = partitionKey(snapshot, add);
    const group = groups.get(key);
    if (group) group.push(add);
    else groups.set(key, [add]);
  }
  const selected = options.where
    ? await matchingPartitions(connection, snapshot, groups, options.where)
    : new Set(groups.keys());
  const jobs: Job[] = [];
  let considered = 0;
  for (const [key, files] of groups) {
    if (!selected.has(key)) continue;
    considered += files.length;
    const partitionValues = { ...(files[0] as AddFile).partitionValues };
    if (zOrderBy.length > 0) {
      jobs.push({ files, partitionValues });
      continue;
    }
    const candidates = files.filter((f) => f.size < minFileSize || deletedRatio(f) >= DELETED_ROWS_RATIO);
    if (candidates.length < minNumFiles && !candidates.some((f) => f.deletionVector)) continue;
    for (const bin of binPack(candidates, target)) jobs.push({ files: bin, partitionValues });
  }
  return { jobs, considered };
}

function emptyMetrics(considered: number): OptimizeMetrics {
  return optimizeMetrics([], considered, [], [], false);
}

function optimizeMetrics(
  jobs: readonly Job[],
  considered: number,
  added: readonly AddFile[],
  removed: readonly AddFile[],
  zOrder: boolean,
): OptimizeMetrics {
  return {
    numFilesAdded: added.length,
    numFilesRemoved: removed.length,
    filesAdded: sizeStats(added.map((f) => f.size)),
    filesRemoved: sizeStats(removed.map((f) => f.size)),
    partitionsOptimized: new Set(jobs.map((j) => JSON.stringify(j.partitionValues))).size,
    zOrderStats: zOrder ? { strategyName: 'all', numOutputCubes: added.length } : null,
    numBatches: jobs.length > 0 ? 1 : 0,
    totalConsideredFiles: considered,
    totalFilesSkipped: considered - removed.length,
    preserveInsertionOrder: !zOrder,
    numDeletionVectorsRemoved: removed.filter((f) => f.deletionVector).length,
  };
}

/** A `remove` for a live file, carrying what CDF readers and VACUUM need (extended file metadata). */
export function removeOf(add: AddFile, deletionTimestamp: number, dataChange: boolean): RemoveFile {
  const remove: RemoveFile = {
    path: add.path,
    deletionTimestamp,
    dataChange,
    extendedFileMetadata: true,
    partitionValues: add.partitionValues,
    size: add.size,
  };
  if (add.stats !== undefined) remove.stats = add.stats;
  if (add.tags !== undefined) remove.tags = add.tags;
  if (add.deletionVector !== undefined) remove.deletionVector = add.deletionVector;
  if (add.baseRowId !== undefined) remove.baseRowId = add.baseRowId;
  if (add.defaultRowCommitVersion !== undefined) remove.defaultRowCommitVersion = add.defaultRowCommitVersion;
  return remove;
}

/** Rewrites one partition sorted by the Z-order key, cut into files of about `target` bytes. */
async function writeZOrdered(
  connection: DuckDBConnection,
  snapshot: Snapshot,
  job: Job,
  query: string,
  columns: readonly string[],
  target: number,
): Promise<AddFile[]> {
  const temp = q(`__tributary_zorder_${process.pid}_${Date.now()}_${Math.floor(Math.random() * 1e9)}`);
  await connection.run(
    `CREATE TEMP TABLE ${temp} AS SELECT *, row_number() OVER (ORDER BY ${q(Z_ORDER_KEY)}) AS "__tributary_rn" FROM (${zOrderSelect(query, columns)}) AS __z`,
  );
  try {
    const count = await connection.runAndReadAll(`SELECT count(*) FROM ${temp}`);
    const rows = Number(count.getRowsJS()[0]?.[0] ?? 0);
    const inputBytes = job.files.reduce((sum, f) => sum + f.size, 0);
    const rowsPerFile = Math.max(1, Math.ceil((rows * target) / Math.max(1, inputBytes)));
    const out: AddFile[] = [];
    for (let start = 0; start < rows; start += rowsPerFile) {
      out.push(
        await writeDataFile(connection, {
          snapshot,
          query: `SELECT * FROM ${temp} WHERE "__tributary_rn" > ${start} AND "__tributary_rn" <= ${start + rowsPerFile}`,
          orderBy: '"__tributary_rn"',
          partitionValues: job.partitionValues,
          dataChange: false,
        }),
      );
    }
    return out;
  } finally {
    await connection.run(`DROP TABLE IF EXISTS ${temp}`);
  }
}
