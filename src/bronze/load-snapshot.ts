/**
 * Writes a table's snapshot into its bronze table (SCD type 1): the commit that creates the table, or that
 * replaces its contents after a full refresh.
 *
 * A snapshot holds each key once (it is read in key order, chunk after chunk, and a resumed snapshot starts
 * after the last staged key), and every row is an insert. So it needs none of a merge's work: no last change
 * per key, no lookup of existing rows. Its staged files are streamed through DuckDB straight into data files,
 * a group of segments per file, which keeps memory flat however large the table (a merge materialises the
 * whole batch to rank the changes of each key) and gives the table files of a bounded size, so a later
 * copy-on-write merge rewrites only the files whose key range it touches.
 *
 * The apply (pipeline/apply.ts) decides when a batch qualifies: a reset by a snapshot, nothing but that
 * snapshot's segments, and a key the source guarantees unique. A configured `primary_keys` is not guaranteed
 * unique, so such a table goes through the merge, which keeps one row per key.
 */
import type { AddFile, RemoveFile } from '../delta/actions.js';
import { removeFileAction } from '../delta/deletion-vector-writer.js';
import { type DuckDb, quoteDuckIdent as q, quoteDuckString } from '../engine/duckdb.js';
import { COMMIT_US_COLUMN } from '../staging/segment-format.js';
import { bronzeSchema } from './bronze-schema.js';
import {
  commitColumnOf,
  fromStaged,
  type MergeInput,
  type MergePlan,
  prepareTarget,
  writeDataFile,
} from './merge-changes.js';

/** The staged files of one snapshot segment for the table. */
export interface StagedPart {
  readonly files: readonly string[];
  readonly rows: number;
  /** Source columns present in these files (a DDL during the snapshot may add one part way). */
  readonly columns: ReadonlySet<string>;
}

export interface SnapshotLoadInput extends MergeInput {
  /** The snapshot's segments, in order. */
  readonly parts: readonly StagedPart[];
  /** Rows per data file, about: parts are grouped until they reach it. */
  readonly rowsPerFile?: number;
}

/**
 * About 1M rows a file: a few tens to a few hundreds of MiB for typical rows, in the range Delta's OPTIMIZE
 * aims for, and small enough that a merge touching one key range rewrites a fraction of a large table.
 */
export const SNAPSHOT_ROWS_PER_FILE = 1_000_000;

/**
 * Rows per Parquet row group of a snapshot's data files, a quarter of DuckDB's default. The load is where a
 * large snapshot's memory peaks (V8's heap from capture is still there), and each of DuckDB's writing threads
 * holds a row group while it fills it: on the 10M-row PostgreSQL benchmark the load added about 200 MiB with
 * the default and about 110 MiB with this, for a peak of 442 MiB instead of 557–561 MiB, the load taking the
 * same 8–10 s. A few MiB per row group stays well within what Parquet readers handle efficiently.
 */
export const SNAPSHOT_ROW_GROUP_ROWS = 30_720;

export async function planSnapshotLoad(db: DuckDb, input: SnapshotLoadInput): Promise<MergePlan> {
  const commitColumn = commitColumnOf(input);
  const { actions, schema } = prepareTarget(
    input,
    bronzeSchema(input.source, { commitTimestampColumn: commitColumn }),
    { replacesRows: input.overwrite },
  );
  const fields = schema.fields;
  const now = Date.now();
  const replaced = input.overwrite ? (input.snapshot?.files ?? []) : [];
  const removes: RemoveFile[] = replaced.map((add) => removeFileAction(add, now));

  const session = await db.fork();
  const adds: AddFile[] = [];
  let rows = 0;
  try {
    for (const group of groups(input.parts, input.rowsPerFile ?? SNAPSHOT_ROWS_PER_FILE)) {
      const files = group.flatMap((p) => p.files);
      if (files.length === 0) continue;
      const present = new Set(group.flatMap((p) => [...p.columns]));
      const typed = fields.map((f) =>
        f.name === commitColumn
          ? `make_timestamp(${COMMIT_US_COLUMN})::TIMESTAMPTZ AS ${q(f.name)}`
          : `${fromStaged(f, present.has(f.name))} AS ${q(f.name)}`,
      );
      const written = await writeDataFile(
        db,
        session,
        input.tableRoot,
        `SELECT ${typed.join(', ')} FROM read_parquet([${files.map(quoteDuckString).join(', ')}], union_by_name = true)`,
        fields,
        // A file's key range is its group's, whatever the order of its row groups.
        { anyOrder: true, rowGroupRows: SNAPSHOT_ROW_GROUP_ROWS },
      );
      rows += written.rows;
      if (written.add) adds.push(written.add);
    }
  } finally {
    await session[Symbol.asyncDispose]();
  }
  actions.push(...removes.map((remove) => ({ remove })), ...adds.map((add) => ({ add })));
  return {
    actions,
    operation: 'WRITE',
    operationParameters: { mode: input.overwrite ? 'Overwrite' : 'Append', partitionBy: [] },
    metrics: {
      inserted: rows,
      updated: 0,
      deleted: 0,
      filesAdded: adds.length,
      filesRemoved: removes.length,
      outputRows: rows,
    },
    deletionVectors: { added: 0, updated: 0, removed: replaced.filter((a) => a.deletionVector).length },
    readFiles: [],
    // Every row is new, and an overwrite removes whole files: the feed reads the change off the actions.
    wholeFileChanges: true,
  };
}

/** Consecutive parts, cut once a group holds `rowsPerFile` rows (the last group may be smaller). */
function groups(parts: readonly StagedPart[], rowsPerFile: number): StagedPart[][] {
  const out: StagedPart[][] = [];
  let current: StagedPart[] = [];
  let rows = 0;
  for (const part of parts) {
    current.push(part);
    rows += part.rows;
    if (rows >= rowsPerFile) {
      out.push(current);
      current = [];
      rows = 0;
    }
  }
  if (current.length > 0) out.push(current);
  return out;
}
