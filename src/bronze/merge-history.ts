/**
 * Applies staged changes to a bronze history table (SCD type 2, as Lakeflow Connect's `SCD_TYPE_2`): one row
 * per version of a key, with `__START_AT` (when the version began) and `__END_AT` (when it was superseded or
 * deleted; NULL for the current version). The current rows are `WHERE __END_AT IS NULL`.
 *
 * For each key, its changes in the batch are taken in source order (segment, then position in the segment):
 * - an insert, update or snapshot read closes the key's open version (`__END_AT` := its time) and becomes the
 *   new open version;
 * - a delete closes the open version and adds nothing;
 * - a reset at the start of the batch (a TRUNCATE, or a fresh snapshot of the table) closes every open row at
 *   the reset's time, before the batch's changes.
 * A version's time is the source commit time of its change, raised to the `__START_AT` of the version it
 * supersedes when that is later (MySQL/MariaDB binlog times are whole seconds, a snapshot's time is not), so
 * `__END_AT` is never earlier than `__START_AT`. `_commit_timestamp` keeps the unraised source commit time.
 *
 * Only the open rows of the changed keys are touched. They are found like the SCD type 1 merge finds changed
 * keys (key columns only, files pruned by the key's `add.stats` bounds), and also skipping files whose
 * `nullCount` says every row is closed: history that is over is never read again. The closed copy of each
 * open row goes into the commit's one new file with the new versions; the old row is retired by a deletion
 * vector (merge-on-read) or by rewriting its file (copy-on-write), as for SCD type 1.
 */
import { TributaryError } from '../core/errors.js';
import type { AddFile, RemoveFile } from '../delta/actions.js';
import { changeRows, writeChangeDataFile } from '../delta/change-data-writer.js';
import { removeFileAction, unionRowIndexSets } from '../delta/deletion-vector-writer.js';
import type { RowIndexSet } from '../delta/roaring.js';
import { buildScanSql, duckdbType, layoutOf, type ScanFile, type TableLayout } from '../delta/scan.js';
import type { StructField } from '../delta/schema.js';
import { type DuckDb, quoteDuckIdent as q, quoteDuckString } from '../engine/duckdb.js';
import { COMMIT_US_COLUMN, OP_COLUMN, ORD_COLUMN, UNCHANGED_COLUMN } from '../staging/segment-format.js';
import { bronzeSchema, END_AT_COLUMN, metadataColumnsOf, START_AT_COLUMN } from './bronze-schema.js';
import {
  candidateFiles,
  commitColumnOf,
  FILE_COLUMN,
  FILE_ID,
  fromStaged,
  keyFieldsOf,
  loadDeletionVectors,
  type MergeInput,
  type MergePlan,
  prepareTarget,
  ROW_INDEX,
  retireByDeletionVectors,
  rowsByFile,
  writeDataFile,
} from './merge-changes.js';

/** Columns of the `chg` and `ver` temp tables, prefixed to stay clear of source column names. */
const OP = '__h_op';
const US = '__h_us';
const FILE = '__h_file';
const ORD = '__h_ord';
// The working columns below (__h_n, __h_eff_us, __h_next_us, __h_base_us, __h_deletes_before) share the prefix,
// so a source column named like one of them (`n` is common) cannot be mistaken for it.
const UNCHANGED = '__h_unchanged';

/** Source commit time in µs as a Delta `timestamp`. */
function timestampOf(us: string): string {
  return `make_timestamp(${us})::TIMESTAMPTZ`;
}

/**
 * The stats cannot rule out an open row in the file: `nullCount.__END_AT` is missing (no stats, another
 * writer) or above zero. A DV only removes rows, so a count over the physical rows stays an upper bound.
 */
function mayHoldOpenRows(add: AddFile): boolean {
  if (!add.stats) return true;
  try {
    const n = (JSON.parse(add.stats) as { nullCount?: Record<string, unknown> }).nullCount?.[END_AT_COLUMN];
    return typeof n !== 'number' || n > 0;
  } catch {
    return true;
  }
}

export async function planHistoryMerge(db: DuckDb, input: MergeInput): Promise<MergePlan> {
  const snapshot = input.snapshot;
  const commitColumn = commitColumnOf(input);
  const metadataColumns = metadataColumnsOf(commitColumn);
  const { actions, schema, mergeOnRead, changeDataFeed } = prepareTarget(
    input,
    bronzeSchema(input.source, { history: true, commitTimestampColumn: commitColumn }),
    // A reset closes every open row, so the rows after it may be keyed anew.
    { resets: input.overwrite },
  );
  const reset = input.overwrite;
  if (reset && input.resetAtUs === undefined) {
    throw new TributaryError('INTERNAL', 'a reset of a history table needs the time of the reset');
  }
  const resetUs = reset ? `${input.resetAtUs}::BIGINT` : 'NULL::BIGINT';

  const fields = schema.fields;
  const pk = input.source.primaryKey;
  const keyFields = keyFieldsOf(fields, pk);
  const pkList = pk.map(q).join(', ');
  const byKey = `PARTITION BY ${pkList}`;
  const inOrder = `ORDER BY ${q(FILE)}, ${q(ORD)}`;
  const sourceFields = fields.filter((f) => !metadataColumns.has(f.name));
  const staged = `[${input.stagedFiles.map(quoteDuckString).join(', ')}]`;
  const partialColumns = input.partial
    ? sourceFields.filter((f) => input.stagedColumns.has(f.name) && !pk.includes(f.name))
    : [];
  const cols = fields.map((f) => q(f.name)).join(', ');

  const session = await db.fork();
  try {
    // Every staged change of the batch, typed, with its place in the source order.
    await session.run(
      `CREATE TEMP TABLE chg AS
       SELECT ${sourceFields.map((f) => `${fromStaged(f, input.stagedColumns.has(f.name))} AS ${q(f.name)}`).join(', ')},
              ${OP_COLUMN} AS ${q(OP)}, ${COMMIT_US_COLUMN} AS ${q(US)}, ${FILE_COLUMN} AS ${q(FILE)},
              ${ORD_COLUMN} AS ${q(ORD)}${partialColumns.length > 0 ? `, ${UNCHANGED_COLUMN} AS ${q(UNCHANGED)}` : ''}
         FROM read_parquet(${staged}, union_by_name = true, filename = '${FILE_COLUMN}')`,
    );

    const existing = snapshot?.files ?? [];
    const now = Date.now();
    const removes: RemoveFile[] = [];
    const dvAdds: AddFile[] = [];
    const dvMetrics = { added: 0, updated: 0, removed: 0 };
    let readFiles: readonly AddFile[] = [];
    let keptSql: string | null = null;
    // The open rows this batch closes, whole: every open row on a reset, else those of the changed keys.
    let openSql = `SELECT ${fields.map((f) => `CAST(NULL AS ${duckdbType(f.type)}) AS ${q(f.name)}`).join(', ')} WHERE false`;

    if (snapshot !== null && existing.length > 0) {
      const layout: TableLayout = { ...layoutOf(snapshot), schema };
      const open = existing.filter(mayHoldOpenRows);
      const candidates = reset ? open : await candidateFiles(session, open, keyFields);
      readFiles = candidates;
      const dvRows = await loadDeletionVectors(snapshot, candidates);
      const source = `the log of ${snapshot.tableRoot} at version ${snapshot.version}`;
      const scanFile = (add: AddFile, rows: RowIndexSet | undefined, i: number): ScanFile => ({
        path: snapshot.dataFilePath(add),
        partitionValues: add.partitionValues,
        rows,
        constants: [String(i)],
        source,
      });
      // Key columns and __END_AT only: (file, row) of every live open row to close.
      const locate = await buildScanSql(session.connection, {
        layout,
        files: candidates.map((add, i) => scanFile(add, dvRows[i], i)),
        columns: [...pk, END_AT_COLUMN],
        constantColumns: [{ name: FILE_ID, type: 'INTEGER' }],
        rowIndexColumn: ROW_INDEX,
      });
      await session.run(
        `CREATE TEMP TABLE hits AS SELECT ${pkList}, ${q(FILE_ID)}, ${q(ROW_INDEX)} FROM (${locate}) t
          ${reset ? '' : `SEMI JOIN (SELECT DISTINCT ${pkList} FROM chg) c USING (${pkList})`}
          WHERE t.${q(END_AT_COLUMN)} IS NULL`,
      );
      const hitRows = await rowsByFile(session);
      if (hitRows.size > 0) {
        // The whole open rows, read from their files by row index.
        const openScan = await buildScanSql(session.connection, {
          layout,
          files: [...hitRows].map(([i, rows]) => scanFile(candidates[i] as AddFile, rows, i)),
          rowMode: 'keep',
        });
        await session.run(`CREATE TEMP TABLE open_rows AS ${openScan}`);
        openSql = `SELECT * FROM open_rows`;
        if (mergeOnRead) {
          const retired = await retireByDeletionVectors(session, snapshot, candidates, dvRows, hitRows, now);
          removes.push(...retired.removes);
          dvAdds.push(...retired.dvAdds);
          Object.assign(dvMetrics, retired.metrics);
        } else {
          const hitFiles = [...hitRows.keys()].sort((a, b) => a - b);
          for (const i of hitFiles) {
            const add = candidates[i] as AddFile;
            removes.push(removeFileAction(add, now));
            if (add.deletionVector) dvMetrics.removed++;
          }
          // The rest of each rewritten file stays as it is (closed history and other keys' open rows).
          const kept = await buildScanSql(session.connection, {
            layout,
            files: hitFiles.map((i) => {
              const hits = hitRows.get(i) as RowIndexSet;
              const old = dvRows[i];
              return scanFile(candidates[i] as AddFile, old ? unionRowIndexSets(old, hits) : hits, i);
            }),
          });
          keptSql = `SELECT ${cols} FROM (${kept}) k`;
        }
      }
    }

    // Per key, the start of the version a change supersedes when it is not in the batch: the open row's (none
    // after a reset, which closed it).
    await session.run(
      `CREATE TEMP TABLE base AS
       SELECT ${pkList}, ${reset ? 'NULL::BIGINT' : `max(epoch_us(${q(START_AT_COLUMN)}))`} AS __h_base_us
         FROM (${openSql}) o GROUP BY ${pkList}`,
    );
    // Each change's time: its commit time, raised to the running maximum since the key's last delete (and to
    // the stored open version's start before the first delete), so a version never ends before it starts.
    const latest = (f: StructField) => q(`__latest_${f.name}`);
    const sent = (f: StructField) =>
      `${q(OP)} <> 'd' AND NOT coalesce(list_contains(${q(UNCHANGED)}, ${quoteDuckString(f.name)}), false)`;
    await session.run(
      `CREATE TEMP TABLE ver AS
       SELECT *, lead(__h_eff_us) OVER (${byKey} ${inOrder}) AS __h_next_us,
              row_number() OVER (${byKey} ${inOrder}) AS __h_n
         FROM (
           SELECT *, greatest(max(${q(US)}) OVER (${byKey}, __h_deletes_before ${inOrder} ROWS UNBOUNDED PRECEDING),
                              CASE WHEN __h_deletes_before = 0 THEN __h_base_us END) AS __h_eff_us
             FROM (
               SELECT c.*, b.__h_base_us,
                      coalesce(sum(CASE WHEN ${q(OP)} = 'd' THEN 1 ELSE 0 END)
                        OVER (${byKey} ${inOrder} ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS __h_deletes_before
                      ${partialColumns
                        .map(
                          (f) =>
                            `, last_value(CASE WHEN ${sent(f)} THEN {'v': ${q(f.name)}} END IGNORE NULLS) OVER (${byKey} ${inOrder} ROWS UNBOUNDED PRECEDING) AS ${latest(f)}`,
                        )
                        .join('')}
                 FROM chg c LEFT JOIN base b USING (${pkList})
             )
         )`,
    );

    // Closed copies of the open rows: at the reset, or at the time of the key's first change in the batch.
    const closedCols = fields
      .map((f) =>
        f.name === END_AT_COLUMN
          ? `${timestampOf(reset ? `greatest(${resetUs}, epoch_us(o.${q(START_AT_COLUMN)}))` : 'v.__h_eff_us')} AS ${q(f.name)}`
          : `o.${q(f.name)}`,
      )
      .join(', ');
    const closed = reset
      ? `SELECT ${closedCols} FROM (${openSql}) o`
      : `SELECT ${closedCols} FROM (${openSql}) o JOIN (SELECT * FROM ver WHERE __h_n = 1) v USING (${pkList})`;

    // The new versions. A column an update left unchanged takes the key's latest value sent in the batch, else
    // the stored open row's.
    const stored = partialColumns.length > 0;
    const versionCols = fields
      .map((f) => {
        const name = q(f.name);
        if (f.name === commitColumn) return `${timestampOf(`v.${q(US)}`)} AS ${name}`;
        if (f.name === START_AT_COLUMN) return `${timestampOf('v.__h_eff_us')} AS ${name}`;
        if (f.name === END_AT_COLUMN) return `${timestampOf('v.__h_next_us')} AS ${name}`;
        if (partialColumns.includes(f))
          return `CASE WHEN v.${latest(f)} IS NULL THEN s.${name} ELSE v.${latest(f)}.v END AS ${name}`;
        return `v.${name}`;
      })
      .join(', ');
    const versions = stored
      ? `SELECT ${versionCols} FROM ver v
           LEFT JOIN (SELECT * FROM (${openSql}) QUALIFY row_number() OVER (${byKey} ORDER BY ${q(START_AT_COLUMN)} DESC) = 1) s
           USING (${pkList})
          WHERE v.${q(OP)} <> 'd'`
      : `SELECT ${versionCols} FROM ver v WHERE v.${q(OP)} <> 'd'`;

    const counts = await session.rows(
      `SELECT (SELECT count(*) FROM ver WHERE ${q(OP)} <> 'd') AS inserted, (SELECT count(*) FROM (${openSql})) AS updated`,
    );
    const output = [keptSql, `SELECT ${cols} FROM (${closed})`, `SELECT ${cols} FROM (${versions})`]
      .filter((x) => x !== null)
      .join(' UNION ALL ');
    const written = await writeDataFile(db, session, input.tableRoot, output, fields);
    const adds: AddFile[] = [...dvAdds, ...(written.add ? [written.add] : [])];
    actions.push(...removes.map((remove) => ({ remove })), ...adds.map((add) => ({ add })));
    const merge = existing.length > 0;
    if (changeDataFeed && merge) {
      // Every change of the commit: each closed row is an update of its __END_AT (the stored open row its
      // preimage, the closed copy its postimage), each new version an insert. Rows a rewrite only copied
      // are no change.
      const names = fields.map((f) => f.name);
      const cdc = await writeChangeDataFile(
        session.connection,
        input.tableRoot,
        [
          changeRows(names, "'update_preimage'", openSql),
          changeRows(names, "'update_postimage'", closed),
          changeRows(names, "'insert'", versions),
        ].join(' UNION ALL '),
      );
      if (cdc) actions.push({ cdc });
    }
    const dvPaths = new Set(dvAdds.map((a) => a.path));
    return {
      actions,
      operation: merge ? 'MERGE' : 'WRITE',
      operationParameters: merge
        ? {
            predicate: [
              ...pk.map((k) => `target.${k} = source.${k}`),
              `target.${END_AT_COLUMN} IS NULL`,
            ].join(' AND '),
          }
        : { mode: 'Append', partitionBy: [] },
      metrics: {
        inserted: Number(counts[0]?.['inserted'] ?? 0),
        updated: Number(counts[0]?.['updated'] ?? 0),
        deleted: 0,
        filesAdded: adds.length - dvAdds.length,
        filesRemoved: removes.filter((r) => !dvPaths.has(r.path)).length,
        outputRows: written.rows,
      },
      deletionVectors: dvMetrics,
      readFiles: readFiles.map((a) => a.path),
      // Closing rows rewrites them: unless the table is new, the actions do not state the changes.
      wholeFileChanges: !merge,
    };
  } finally {
    await session[Symbol.asyncDispose]();
  }
}
