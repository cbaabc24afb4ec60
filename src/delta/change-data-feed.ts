/**
 * Reading the change data feed (DIGEST §10, PROTOCOL "Reader Requirements for AddCDCFile"): the row-level
 * changes of a range of versions, each row with the table's columns plus
 *
 * | column              | type          | value                                                              |
 * | ------------------- | ------------- | ------------------------------------------------------------------ |
 * | `_change_type`      | `VARCHAR`     | `insert`, `update_preimage`, `update_postimage` or `delete`          |
 * | `_commit_version`   | `BIGINT`      | the version of the commit                                           |
 * | `_commit_timestamp` | `TIMESTAMPTZ` | its in-commit timestamp when it has one, else the commit file's mtime |
 *
 * Per version: when the commit has `cdc` actions, only its `_change_data` files are read (they carry
 * `_change_type`); otherwise the rows of its `add` actions are inserts and those of its `remove` actions are
 * deletes, with `dataChange: false` actions (OPTIMIZE, stats backfill) ignored, and a file that is both removed
 * and re-added with another deletion vector contributes only the difference of the two vectors (rows newly
 * deleted are deletes, rows no longer deleted are inserts). Every version in the range must have had
 * `delta.enableChangeDataFeed=true`; the table's columns are those of the end version (columns added later in
 * the range read as NULL before they existed).
 */
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { TributaryError } from '../core/errors.js';
import type {
  AddCDCFile,
  AddFile,
  CommitInfo,
  Metadata,
  Protocol,
  RawAction,
  RemoveFile,
} from './actions.js';
import { readDeletionVector } from './deletion-vectors.js';
import { withConnection } from './duckdb.js';
import { resolveTablePath } from './paths.js';
import { RowIndexSet } from './roaring.js';
import { buildScanSql, layoutOf, type ScanFile, type TableLayout } from './scan.js';
import {
  checkReadSupport,
  commitTimestamp,
  latestVersion,
  listLog,
  loadSnapshot,
  readCommit,
} from './snapshot.js';
import { RESERVED_CHANGE_FEED_COLUMNS } from './table-features.js';

/** The columns a change feed adds after the table's own. */
export const CHANGE_FEED_COLUMNS = RESERVED_CHANGE_FEED_COLUMNS;

export interface TableChangesOptions {
  /** First version to read (inclusive). */
  startVersion: number;
  /** Last version to read (inclusive); default: the latest. */
  endVersion?: number | undefined;
  /** Table columns to return, in this order (default: all); the three change columns always follow. */
  columns?: readonly string[] | undefined;
  signal?: AbortSignal | undefined;
}

function isCdfEnabled(metadata: Metadata): boolean {
  return (metadata.configuration['delta.enableChangeDataFeed'] ?? '').toLowerCase() === 'true';
}

function cdfDisabled(root: string, version: number): TributaryError {
  return new TributaryError(
    'DELTA_PROTOCOL',
    `Change data feed is not enabled on Delta table ${root} at version ${version} ` +
      `(delta.enableChangeDataFeed is not 'true'), so the changes of that version cannot be read`,
    {
      hint:
        'Read a range that starts after the version that set delta.enableChangeDataFeed = true; ' +
        'changes made while it was off are not recorded.',
    },
  );
}

interface Parts {
  cdc: ScanFile[];
  /** Inserts and deletes of whole files minus their DV rows. */
  whole: ScanFile[];
  /** Rows that changed between a file's old and new deletion vector. */
  diff: ScanFile[];
}

const CONSTANTS = [
  { name: '_change_type', type: 'VARCHAR' },
  { name: '_commit_version', type: 'BIGINT' },
  { name: '_commit_timestamp', type: 'TIMESTAMPTZ' },
] as const;

function timestampSql(ms: number): string {
  return `timezone('UTC', make_timestamp(CAST(${Math.round(ms * 1000)} AS BIGINT)))`;
}

/** Classifies one commit's file actions into the three scan parts. */
async function collect(
  layout: TableLayout,
  actions: readonly RawAction[],
  version: number,
  timestamp: number,
  source: string,
  parts: Parts,
): Promise<void> {
  const root = layout.tableRoot;
  const ts = timestampSql(timestamp);
  const cdcs = actions.flatMap((a) => (a.cdc ? [a.cdc as AddCDCFile] : []));
  if (cdcs.length > 0) {
    for (const cdc of cdcs) {
      parts.cdc.push({
        path: resolveTablePath(root, cdc.path, source),
        partitionValues: cdc.partitionValues ?? {},
        constants: [String(version), ts],
        source,
      });
    }
    return;
  }
  const adds = actions.flatMap((a) =>
    a.add && (a.add as AddFile).dataChange !== false ? [a.add as AddFile] : [],
  );
  const removes = new Map<string, RemoveFile>();
  for (const a of actions) {
    const remove = a.remove as RemoveFile | undefined;
    if (remove && remove.dataChange !== false)
      removes.set(resolveTablePath(root, remove.path, source), remove);
  }
  const constants = (type: string) => [`'${type}'`, String(version), ts];
  for (const add of adds) {
    const file = resolveTablePath(root, add.path, source);
    const removed = removes.get(file);
    if (removed === undefined) {
      parts.whole.push({
        path: file,
        partitionValues: add.partitionValues ?? {},
        deletionVector: add.deletionVector ?? undefined,
        constants: constants('insert'),
        source,
      });
      continue;
    }
    // Same file removed and re-added in one commit: a deletion vector update (DELETE/UPDATE/MERGE with DVs).
    removes.delete(file);
    const load = (dv: AddFile['deletionVector']) =>
      dv ? readDeletionVector(root, dv, source) : Promise.resolve(RowIndexSet.EMPTY);
    const [now, before] = await Promise.all([load(add.deletionVector), load(removed.deletionVector)]);
    const partitionValues = add.partitionValues ?? {};
    const deleted = now.difference(before);
    const restored = before.difference(now);
    if (deleted.cardinality > 0) {
      parts.diff.push({ path: file, partitionValues, rows: deleted, constants: constants('delete'), source });
    }
    if (restored.cardinality > 0) {
      parts.diff.push({
        path: file,
        partitionValues,
        rows: restored,
        constants: constants('insert'),
        source,
      });
    }
  }
  for (const [file, remove] of removes) {
    parts.whole.push({
      path: file,
      partitionValues: remove.partitionValues ?? {},
      deletionVector: remove.deletionVector ?? undefined,
      constants: constants('delete'),
      source,
    });
  }
}

/**
 * A DuckDB `SELECT` over the change data feed of `tableRoot` for `[startVersion, endVersion]` (see the module
 * comment for the columns and rules). Like `scanSql`, it uses `connection` for file schemas and temporary
 * tables: run the SQL on that connection. Rows come in no particular order.
 *
 * Errors (`TributaryError`): `DELTA_TABLE_NOT_FOUND` for a version range outside the table's history (or whose
 * commits were cleaned up); `DELTA_PROTOCOL` when change data feed was off at a version in the range or the
 * table needs an unsupported reader feature; `DELTA_CORRUPT` for unreadable log, data, CDC or DV files.
 */
export async function tableChangesSql(
  tableRoot: string,
  connection: DuckDBConnection,
  options: TableChangesOptions,
): Promise<string> {
  const root = path.resolve(tableRoot);
  const { startVersion, signal } = options;
  const listing = await listLog(root);
  const latest = latestVersion(listing);
  const endVersion = options.endVersion ?? latest;
  if (
    !Number.isInteger(startVersion) ||
    !Number.isInteger(endVersion) ||
    startVersion < 0 ||
    startVersion > endVersion ||
    endVersion > latest
  ) {
    throw new TributaryError(
      'DELTA_TABLE_NOT_FOUND',
      `Cannot read changes of Delta table ${root} from version ${startVersion} to ${endVersion}: ` +
        `the versions must satisfy 0 ≤ start ≤ end ≤ ${latest} (the latest version)`,
    );
  }
  for (let v = startVersion; v <= endVersion; v++) {
    if (!listing.commits.has(v)) {
      throw new TributaryError(
        'DELTA_TABLE_NOT_FOUND',
        `Cannot read changes of Delta table ${root} at version ${v}: its commit file was cleaned up`,
        { hint: 'Change data can only be read for versions whose commits are still in _delta_log.' },
      );
    }
  }
  const [start, end] = await Promise.all([
    loadSnapshot(root, { version: startVersion, signal }),
    loadSnapshot(root, { version: endVersion, signal }),
  ]);
  const layout = layoutOf(end);
  let metadata: Metadata = start.metadata;
  let protocol: Protocol = start.protocol;
  const parts: Parts = { cdc: [], whole: [], diff: [] };
  for (let v = startVersion; v <= endVersion; v++) {
    signal?.throwIfAborted();
    const file = listing.commits.get(v) as string;
    const actions = await readCommit(file);
    // The start snapshot already includes its own commit's metadata; later commits may change it.
    if (v > startVersion) {
      for (const a of actions) {
        if (a.metaData) metadata = a.metaData as Metadata;
        if (a.protocol) protocol = a.protocol as Protocol;
      }
      metadata.configuration ??= {};
      checkReadSupport(protocol, metadata, root);
    }
    if (!isCdfEnabled(metadata)) throw cdfDisabled(root, v);
    const info = actions.find((a) => a.commitInfo)?.commitInfo as CommitInfo | undefined;
    const timestamp =
      typeof info?.inCommitTimestamp === 'number' ? info.inCommitTimestamp : await commitTimestamp(file);
    await collect(layout, actions, v, timestamp, file, parts);
  }

  const common = { layout, columns: options.columns, signal };
  const selects = [
    await buildScanSql(connection, {
      ...common,
      files: parts.cdc,
      fileColumns: [CONSTANTS[0]],
      constantColumns: [CONSTANTS[1], CONSTANTS[2]],
    }),
    await buildScanSql(connection, { ...common, files: parts.whole, constantColumns: CONSTANTS }),
    await buildScanSql(connection, {
      ...common,
      files: parts.diff,
      constantColumns: CONSTANTS,
      rowMode: 'keep',
    }),
  ];
  return selects.map((sql) => `SELECT * FROM (${sql})`).join('\nUNION ALL\n');
}

/**
 * The change data feed of `tableRoot` from `startVersion` to `endVersion` (default: latest), inclusive, as row
 * objects (table columns, then `_change_type`, `_commit_version`, `_commit_timestamp`), in no particular order.
 * Values are DuckDB's JS values (BIGINT as bigint, timestamps as Date-like values). The rows are materialised
 * on a private DuckDB connection before the first is yielded: for large ranges, run {@link tableChangesSql} on
 * your own connection and stream the result. Errors: see {@link tableChangesSql}.
 */
export async function* tableChanges(
  tableRoot: string,
  startVersion: number,
  endVersion?: number,
  options: Omit<TableChangesOptions, 'startVersion' | 'endVersion'> = {},
): AsyncGenerator<Record<string, unknown>> {
  const rows = await withConnection(async (connection) => {
    const sql = await tableChangesSql(tableRoot, connection, { ...options, startVersion, endVersion });
    const reader = await connection.runAndReadAll(sql);
    return reader.getRowObjectsJS();
  });
  yield* rows as Record<string, unknown>[];
}
