/**
 * Applies staged changes to a Delta table by copy-on-write, and returns the actions of the commit.
 *
 * Within the batch, the last change per primary key wins, in source order (segment, then position within
 * the segment); DuckDB's own MERGE does not promise that. Only files that hold a changed key are
 * rewritten; every other file stays as it is.
 */
import { mkdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { TributaryError } from '../core/errors.js';
import type { TableSchema } from '../core/table.js';
import type { Action, AddFile, RemoveFile } from '../delta/actions.js';
import { DEFAULT_PROTOCOL, newDataFileName, newTableMetadata } from '../delta/commit.js';
import { type StructField, type StructType, schemaString } from '../delta/schema.js';
import type { Snapshot } from '../delta/snapshot.js';
import { type DuckDb, quoteDuckIdent as q, quoteDuckString } from '../engine/duckdb.js';
import { duckDbTypeFor } from '../engine/duckdb-types.js';
import { computeFileStats } from '../engine/file-stats.js';
import { COMMIT_US_COLUMN, OP_COLUMN, ORD_COLUMN } from '../staging/segment-format.js';
import { bronzeSchema, COMMIT_TIMESTAMP_COLUMN, evolveSchema } from './bronze-schema.js';

export interface MergeInput {
  readonly tableRoot: string;
  /** The table as it is now; null when it does not exist yet. */
  readonly snapshot: Snapshot | null;
  /** The source table's shape as of the newest staged file. */
  readonly source: TableSchema;
  /** Staged Parquet files, oldest first; each holds text columns plus the staging metadata columns. */
  readonly stagedFiles: readonly string[];
  /** Source column names present in any of the staged files. */
  readonly stagedColumns: ReadonlySet<string>;
  /** Replace the table's contents (the batch starts with a fresh snapshot of the table). */
  readonly overwrite: boolean;
}

export interface MergeMetrics {
  readonly inserted: number;
  readonly updated: number;
  readonly deleted: number;
  readonly filesAdded: number;
  readonly filesRemoved: number;
  readonly outputRows: number;
}

export interface MergePlan {
  readonly actions: Action[];
  readonly operation: 'WRITE' | 'MERGE';
  readonly operationParameters: Record<string, unknown>;
  readonly metrics: MergeMetrics;
}

const FILE_COLUMN = '_tributary_file';
let tempCounter = 0;

function typeOf(field: StructField): string {
  if (typeof field.type !== 'string') {
    throw new TributaryError(
      'INTERNAL',
      `Bronze column ${field.name} has a nested type; only primitive types are staged.`,
    );
  }
  return field.type;
}

/** The typed value of a staged text column. */
function fromStaged(field: StructField, present: boolean): string {
  const type = typeOf(field);
  if (!present) return `NULL::${duckDbTypeFor(type)}`;
  const c = q(field.name);
  if (type === 'binary') return `unhex(${c})`;
  if (type === 'string') return c;
  return `CAST(${c} AS ${duckDbTypeFor(type)})`;
}

export async function planMerge(db: DuckDb, input: MergeInput): Promise<MergePlan> {
  const incoming = bronzeSchema(input.source);
  const actions: Action[] = [];
  let schema: StructType;
  if (input.snapshot === null) {
    schema = incoming;
    actions.push({ protocol: { ...DEFAULT_PROTOCOL } }, { metaData: newTableMetadata(schema) });
  } else {
    const evolved = evolveSchema(input.snapshot.schema, incoming);
    if (evolved.conflicts.length > 0) {
      throw new TributaryError(
        'SOURCE_SCHEMA_CHANGED',
        `The source table ${input.source.id.schema}.${input.source.id.table} changed column types incompatibly: ${evolved.conflicts.join('; ')}.`,
        { hint: 'Re-create the bronze table from a fresh snapshot (full refresh).' },
      );
    }
    schema = evolved.schema;
    if (evolved.added.length > 0) {
      actions.push({ metaData: { ...input.snapshot.metadata, schemaString: schemaString(schema) } });
    }
  }

  const fields = schema.fields;
  const pk = input.source.primaryKey;
  const pkList = pk.map(q).join(', ');
  const id = ++tempCounter;
  const chg = `_chg_${id}`;
  const staged = `[${input.stagedFiles.map(quoteDuckString).join(', ')}]`;
  const typed = fields.map((f) =>
    f.name === COMMIT_TIMESTAMP_COLUMN
      ? `make_timestamp(${COMMIT_US_COLUMN})::TIMESTAMPTZ AS ${q(f.name)}`
      : `${fromStaged(f, input.stagedColumns.has(f.name))} AS ${q(f.name)}`,
  );
  const typedKey = pk.map((k) => {
    const field = fields.find((f) => f.name === k);
    if (!field)
      throw new TributaryError('INTERNAL', `primary key column ${k} missing from the bronze schema`);
    return fromStaged(field, true);
  });
  const cols = fields.map((f) => q(f.name)).join(', ');

  await db.run(
    `CREATE OR REPLACE TEMP TABLE ${chg} AS
     SELECT ${typed.join(', ')}, ${OP_COLUMN}
       FROM read_parquet(${staged}, union_by_name = true, filename = '${FILE_COLUMN}')
     QUALIFY row_number() OVER (PARTITION BY ${typedKey.join(', ')} ORDER BY ${FILE_COLUMN} DESC, ${ORD_COLUMN} DESC) = 1`,
  );

  try {
    const existing = input.snapshot?.files ?? [];
    const byPath = new Map(existing.map((a) => [input.snapshot?.dataFilePath(a) ?? a.path, a]));
    let removed: AddFile[] = [];
    let keptSql: string | null = null;
    let inserted = 0;
    let updated = 0;
    let deleted = 0;

    if (input.overwrite || existing.length === 0) {
      removed = input.overwrite ? [...existing] : [];
      const counts = await db.rows(`SELECT count(*) FILTER (WHERE ${OP_COLUMN} <> 'd') AS n FROM ${chg}`);
      inserted = Number(counts[0]?.['n'] ?? 0);
    } else {
      const all = `[${[...byPath.keys()].map(quoteDuckString).join(', ')}]`;
      const hits = await db.rows(
        `SELECT DISTINCT ${FILE_COLUMN} AS f FROM read_parquet(${all}, union_by_name = true, filename = '${FILE_COLUMN}') t
          SEMI JOIN ${chg} USING (${pkList})`,
      );
      const hitPaths = hits.map((h) => String(h['f']));
      removed = hitPaths.map((p) => {
        const add = byPath.get(p);
        if (!add) throw new TributaryError('INTERNAL', `DuckDB reported a file outside the snapshot: ${p}`);
        return add;
      });
      const oldFields = new Set(input.snapshot?.schema.fields.map((f) => f.name));
      if (hitPaths.length > 0) {
        const hitList = `[${hitPaths.map(quoteDuckString).join(', ')}]`;
        const proj = fields
          .map((f) =>
            oldFields.has(f.name) ? q(f.name) : `NULL::${duckDbTypeFor(typeOf(f))} AS ${q(f.name)}`,
          )
          .join(', ');
        keptSql = `SELECT ${proj} FROM read_parquet(${hitList}, union_by_name = true) ANTI JOIN ${chg} USING (${pkList})`;
        const counts = await db.rows(
          `WITH old AS (SELECT ${pkList} FROM read_parquet(${hitList}, union_by_name = true))
           SELECT count(*) FILTER (WHERE c.${OP_COLUMN} <> 'd' AND o.${q(pk[0] as string)} IS NOT NULL) AS updated,
                  count(*) FILTER (WHERE c.${OP_COLUMN} <> 'd' AND o.${q(pk[0] as string)} IS NULL) AS inserted,
                  count(*) FILTER (WHERE c.${OP_COLUMN} = 'd' AND o.${q(pk[0] as string)} IS NOT NULL) AS deleted
             FROM ${chg} c LEFT JOIN old o USING (${pkList})`,
        );
        updated = Number(counts[0]?.['updated'] ?? 0);
        inserted = Number(counts[0]?.['inserted'] ?? 0);
        deleted = Number(counts[0]?.['deleted'] ?? 0);
      } else {
        const counts = await db.rows(`SELECT count(*) FILTER (WHERE ${OP_COLUMN} <> 'd') AS n FROM ${chg}`);
        inserted = Number(counts[0]?.['n'] ?? 0);
      }
    }

    const upserts = `SELECT ${cols} FROM ${chg} WHERE ${OP_COLUMN} <> 'd'`;
    const output = keptSql ? `${keptSql} UNION ALL ${upserts}` : upserts;
    await mkdir(input.tableRoot, { recursive: true });
    const name = newDataFileName();
    const path = join(input.tableRoot, name);
    const written = await db.rows(
      `COPY (${output}) TO ${quoteDuckString(path)} (FORMAT parquet, COMPRESSION snappy)`,
    );
    const outputRows = Number(written[0]?.['Count'] ?? 0);
    const adds: AddFile[] = [];
    if (outputRows > 0) {
      const info = await stat(path);
      adds.push({
        path: name,
        partitionValues: {},
        size: info.size,
        modificationTime: Math.floor(info.mtimeMs),
        dataChange: true,
        stats: await computeFileStats(db, path, fields),
      });
    } else {
      await unlink(path).catch(() => {});
    }
    const now = Date.now();
    const removes: RemoveFile[] = removed.map((a) => ({
      path: a.path,
      deletionTimestamp: now,
      dataChange: true,
      extendedFileMetadata: true,
      partitionValues: a.partitionValues,
      size: a.size,
    }));
    actions.push(...removes.map((remove) => ({ remove })), ...adds.map((add) => ({ add })));
    const merge = !input.overwrite && existing.length > 0;
    return {
      actions,
      operation: merge ? 'MERGE' : 'WRITE',
      operationParameters: merge
        ? { predicate: pk.map((k) => `target.${k} = source.${k}`).join(' AND ') }
        : { mode: input.overwrite ? 'Overwrite' : 'Append', partitionBy: [] },
      metrics: {
        inserted,
        updated,
        deleted,
        filesAdded: adds.length,
        filesRemoved: removes.length,
        outputRows,
      },
    };
  } finally {
    await db.run(`DROP TABLE IF EXISTS ${chg}`);
  }
}
