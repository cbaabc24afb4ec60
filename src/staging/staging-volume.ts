/**
 * A gateway's area of the staging volume: sealed segments, their manifests, and the gateway state that the
 * newest manifest carries. See segment-format.ts for the layout and its guarantees.
 */
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LIST, VARCHAR } from '@duckdb/node-api';
import { messageOf, TributaryError } from '../core/errors.js';
import type { Position } from '../core/position.js';
import type { Row, TableSchema } from '../core/table.js';
import { type DuckDb, quoteDuckIdent, quoteDuckString } from '../engine/duckdb.js';
import { fsyncPath } from './fs-durable.js';
import {
  COMMIT_US_COLUMN,
  type GatewayState,
  INITIAL_GATEWAY_STATE,
  MANIFEST_FILE,
  OP_COLUMN,
  ORD_COLUMN,
  parseSegmentDirName,
  SEGMENT_FORMAT,
  type SegmentManifest,
  type StagedOp,
  type StagedTable,
  segmentDirName,
  stagedFileName,
  UNCHANGED_COLUMN,
} from './segment-format.js';
import { toStagedText } from './staged-value.js';

export interface StagedRow {
  readonly ord: number;
  readonly op: StagedOp;
  readonly commitUs: bigint;
  readonly row: Row;
  /** Updates only: columns not sent by the source, which keep their stored value. */
  readonly unchanged?: readonly string[];
}

export interface SegmentDraft {
  readonly seq: number;
  readonly origin: 'snapshot' | 'stream';
  readonly snapshot: SegmentManifest['snapshot'];
  readonly startPosition: Position | null;
  readonly endPosition: Position;
  readonly firstCommitTime: Date | null;
  readonly lastCommitTime: Date | null;
  readonly tables: ReadonlyMap<string, { schema: TableSchema; reset: boolean; rows: readonly StagedRow[] }>;
  readonly state: GatewayState;
}

export class StagingVolume {
  constructor(
    /** `<volume path>/<gateway>` */
    readonly dir: string,
    readonly gateway: string,
  ) {}

  segmentDir(seq: number): string {
    return join(this.dir, segmentDirName(seq));
  }

  /** Sequence numbers of sealed segments, ascending. */
  async listSegments(): Promise<number[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    return names
      .map(parseSegmentDirName)
      .filter((n): n is number => n !== undefined)
      .sort((a, b) => a - b);
  }

  async readManifest(seq: number): Promise<SegmentManifest> {
    const path = join(this.segmentDir(seq), MANIFEST_FILE);
    let manifest: SegmentManifest;
    try {
      manifest = JSON.parse(await readFile(path, 'utf8')) as SegmentManifest;
    } catch (error) {
      throw new TributaryError(
        'STAGING_CORRUPT',
        `The staged segment manifest ${path} is unreadable: ${messageOf(error)}`,
        {
          hint: 'Segments are sealed atomically, so this means the volume was changed by hand or the disk is failing. Restore the file, or remove the gateway directory and run again to take a new snapshot.',
          cause: error,
        },
      );
    }
    if (manifest.format !== SEGMENT_FORMAT || manifest.seq !== seq) {
      throw new TributaryError(
        'STAGING_CORRUPT',
        `The staged segment manifest ${path} has format ${manifest.format} and seq ${manifest.seq}; expected format ${SEGMENT_FORMAT} and seq ${seq}.`,
      );
    }
    return manifest;
  }

  /** The gateway's state: that of the newest sealed segment. Leftovers of interrupted writes are removed. */
  async loadState(): Promise<GatewayState> {
    await this.#removeUnsealed();
    const seqs = await this.listSegments();
    const newest = seqs.at(-1);
    if (newest === undefined) return INITIAL_GATEWAY_STATE;
    return (await this.readManifest(newest)).state;
  }

  async #removeUnsealed(): Promise<void> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (name.startsWith('.tmp-')) await rm(join(this.dir, name), { recursive: true, force: true });
    }
  }

  /** Removes segments that are no longer needed (see src/pipeline/staging-retention.ts). */
  async discard(seqs: readonly number[]): Promise<void> {
    for (const seq of seqs) await rm(this.segmentDir(seq), { recursive: true, force: true });
    if (seqs.length > 0) await fsyncPath(this.dir);
  }

  /**
   * Writes and seals a segment: Parquet files and manifest into a temporary directory, every file fsynced,
   * then one rename makes it visible. Only after this returns may the source position be acknowledged.
   */
  async writeSegment(db: DuckDb, draft: SegmentDraft): Promise<SegmentManifest> {
    await mkdir(this.dir, { recursive: true });
    const tmp = join(this.dir, `.tmp-${segmentDirName(draft.seq)}-${process.pid}`);
    await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp);

    const tables: Record<string, StagedTable> = {};
    for (const [key, staged] of draft.tables) {
      const file = stagedFileName(key);
      const partial = staged.rows.some((r) => r.unchanged !== undefined && r.unchanged.length > 0);
      await writeStagedParquet(db, join(tmp, file), staged.schema, staged.rows, partial);
      await fsyncPath(join(tmp, file));
      tables[key] = {
        file,
        rows: staged.rows.length,
        schema: staged.schema,
        reset: staged.reset,
        ...(partial ? { partial } : {}),
      };
    }
    const manifest: SegmentManifest = {
      format: SEGMENT_FORMAT,
      seq: draft.seq,
      gateway: this.gateway,
      origin: draft.origin,
      snapshot: draft.snapshot,
      startPosition: draft.startPosition,
      endPosition: draft.endPosition,
      firstCommitTime: draft.firstCommitTime?.toISOString() ?? null,
      lastCommitTime: draft.lastCommitTime?.toISOString() ?? null,
      createdAt: new Date().toISOString(),
      tables,
      state: draft.state,
    };
    await writeFile(join(tmp, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
    await fsyncPath(join(tmp, MANIFEST_FILE));
    await fsyncPath(tmp);
    await rename(tmp, this.segmentDir(draft.seq));
    await fsyncPath(this.dir);
    return manifest;
  }
}

let stageTableCounter = 0;

async function writeStagedParquet(
  db: DuckDb,
  path: string,
  schema: TableSchema,
  rows: readonly StagedRow[],
  partial: boolean,
): Promise<void> {
  const temp = `stage_${process.pid}_${++stageTableCounter}`;
  const columns = [
    `${ORD_COLUMN} BIGINT`,
    `${OP_COLUMN} VARCHAR`,
    `${COMMIT_US_COLUMN} BIGINT`,
    ...(partial ? [`${UNCHANGED_COLUMN} VARCHAR[]`] : []),
    ...schema.columns.map((c) => `${quoteDuckIdent(c.name)} VARCHAR`),
  ];
  await db.run(`CREATE TEMP TABLE ${temp} (${columns.join(', ')})`);
  try {
    const appender = await db.connection.createAppender(temp, 'main', 'temp');
    for (const r of rows) {
      appender.appendBigInt(BigInt(r.ord));
      appender.appendVarchar(r.op);
      appender.appendBigInt(r.commitUs);
      if (partial) {
        if (r.unchanged === undefined || r.unchanged.length === 0) appender.appendNull();
        else appender.appendList([...r.unchanged], LIST(VARCHAR));
      }
      for (const c of schema.columns) {
        const text = toStagedText(r.row[c.name], c.type);
        if (text === null) appender.appendNull();
        else appender.appendVarchar(text);
      }
      appender.endRow();
    }
    appender.flushSync();
    appender.closeSync();
    await db.run(`COPY ${temp} TO ${quoteDuckString(path)} (FORMAT parquet, COMPRESSION zstd)`);
  } finally {
    await db.run(`DROP TABLE IF EXISTS ${temp}`);
  }
}
