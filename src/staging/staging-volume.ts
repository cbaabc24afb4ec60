/**
 * A gateway's area of the staging volume: sealed segments, their manifests, and the gateway state that the
 * newest manifest carries. See segment-format.ts for the layout and its guarantees.
 */
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { LIST, VARCHAR } from '@duckdb/node-api';
import { isTributaryError, messageOf, TributaryError } from '../core/errors.js';
import type { Position } from '../core/position.js';
import { describeStorageFull, storageFullReason } from '../core/storage-full.js';
import type { Row, TableSchema } from '../core/table.js';
import { type DuckDb, quoteDuckIdent, quoteDuckString } from '../engine/duckdb.js';
import { fsyncPath, storageSpace } from './fs-durable.js';
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
  stagedPartFileName,
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
  readonly tables: ReadonlyMap<
    string,
    {
      schema: TableSchema;
      reset: boolean;
      /** With `reset`: the source commit time of the reset (recorded as the manifest's `resetCommitTime`). */
      resetCommitTime?: Date;
      rows: readonly StagedRow[];
      /** Rows of this segment already written by {@link StagingVolume.spill}, oldest first. */
      spilled?: readonly SpilledPart[];
    }
  >;
  readonly state: GatewayState;
}

/** Rows of a segment that is not sealed yet, written ahead into its temporary directory. */
export interface SpilledPart {
  readonly file: string;
  readonly rows: number;
  readonly partial: boolean;
}

/** Tables a full refresh was asked for (`tributary refresh`). A dot file: LIST shows segments only. */
const REFRESH_FILE = '.refresh-request.json';

/** Unsealed segments are written under this subdirectory and renamed into place when sealed. */
const TMP_DIR = '.tmp';
/** The newest sealed segment's number, a hint (see StagingVolume.newestSegment). A dot file: LIST skips it. */
const NEWEST_FILE = '.newest-segment';
/** Above this many segment numbers, {@link StagingVolume.manifestsBetween} lists instead of probing. */
const PROBE_AT_MOST = 2_000;
/** Gateway directories whose top level this process has cleared of unsealed segments of older versions. */
const legacyTmpChecked = new Set<string>();

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw error;
  }
}

/** Parsed manifests by path, with the file identity they were read from (see readManifest). */
const manifestCache = new Map<string, { identity: string; manifest: SegmentManifest }>();
/** Enough for weeks of retained segments; past it the cache starts over rather than grow without bound. */
const MANIFEST_CACHE_ENTRIES = 200_000;

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
      // A sealed manifest never changes, and every round reads every retained one (apply and retention):
      // a continuous process parses each once. The file's identity guards against a directory removed and
      // sealed again under the same number.
      const info = await stat(path);
      const identity = `${info.ino}:${info.size}:${info.mtimeMs}`;
      const cached = manifestCache.get(path);
      if (cached?.identity === identity) return cached.manifest;
      manifest = JSON.parse(await readFile(path, 'utf8')) as SegmentManifest;
      if (manifest.format === SEGMENT_FORMAT && manifest.seq === seq) {
        if (manifestCache.size >= MANIFEST_CACHE_ENTRIES) manifestCache.clear();
        manifestCache.set(path, { identity, manifest });
      }
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

  /**
   * The gateway's state: that of the newest sealed segment. Leftovers of interrupted writes are removed, so
   * only the process holding the gateway's round lock may call it.
   */
  async loadState(): Promise<GatewayState> {
    await this.#removeUnsealed();
    const newest = await this.newestSegment();
    if (newest === undefined) return INITIAL_GATEWAY_STATE;
    return (await this.readManifest(newest)).state;
  }

  /**
   * The newest sealed segment's number, without listing the directory: from the hint written after each seal,
   * checked and followed forward (segments are sealed one number after another, so the newest is the last of
   * the unbroken run from the hint). Without a usable hint, the directory is listed. A directory of a
   * hundred thousand segments takes about 0.3 s to list and the newest must be known several times a round.
   */
  async newestSegment(): Promise<number | undefined> {
    const hint = await this.#newestHint();
    if (hint === undefined || !(await exists(this.segmentDir(hint)))) {
      const newest = (await this.listSegments()).at(-1);
      if (newest !== undefined) await this.#writeNewestHint(newest);
      return newest;
    }
    let newest = hint;
    while (await exists(this.segmentDir(newest + 1))) newest++;
    if (newest !== hint) await this.#writeNewestHint(newest);
    return newest;
  }

  /**
   * Manifests of the sealed segments numbered `from` to `to`, ascending, read by number rather than by
   * listing the directory. Numbers without a segment (removed by retention) are skipped.
   */
  async manifestsBetween(from: number, to: number): Promise<SegmentManifest[]> {
    const first = Math.max(1, from);
    // A long range (a table new to a pipeline, reading from the start) is cheaper to list than to probe.
    const seqs =
      to - first + 1 > PROBE_AT_MOST
        ? (await this.listSegments()).filter((seq) => seq >= first && seq <= to)
        : Array.from({ length: Math.max(0, to - first + 1) }, (_, i) => first + i);
    const manifests: SegmentManifest[] = [];
    for (const seq of seqs) {
      if (await exists(this.segmentDir(seq))) manifests.push(await this.readManifest(seq));
    }
    return manifests;
  }

  async #newestHint(): Promise<number | undefined> {
    try {
      const value = Number((await readFile(join(this.dir, NEWEST_FILE), 'utf8')).trim());
      return Number.isSafeInteger(value) && value > 0 ? value : undefined;
    } catch {
      return undefined;
    }
  }

  /** Best effort and not fsynced: a lost or stale hint costs a listing or a few probes, never a segment. */
  async #writeNewestHint(seq: number): Promise<void> {
    const path = join(this.dir, NEWEST_FILE);
    try {
      await writeFile(`${path}.tmp-${process.pid}`, `${seq}\n`);
      await rename(`${path}.tmp-${process.pid}`, path);
    } catch {
      await rm(`${path}.tmp-${process.pid}`, { force: true }).catch(() => undefined);
    }
  }

  async #removeUnsealed(): Promise<void> {
    await rm(join(this.dir, TMP_DIR), { recursive: true, force: true });
    // Earlier versions wrote unsealed segments beside the sealed ones: those are looked for once per process.
    if (legacyTmpChecked.has(this.dir)) return;
    legacyTmpChecked.add(this.dir);
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (name.startsWith('.tmp-seg-')) await rm(join(this.dir, name), { recursive: true, force: true });
    }
  }

  /**
   * Asks for a full refresh of tables (`schema.table`, or `*` for every captured table): capture takes a new
   * snapshot of them, which replaces each bronze table in one commit once complete. Kept in a small file
   * beside the segments, so the request survives until the snapshot it asks for is done.
   */
  async requestRefresh(tables: readonly string[], options: { restartLog?: boolean } = {}): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const current = await this.#refreshFile();
    await this.#writeRefreshFile({
      tables: [...new Set([...current.tables, ...tables])].sort(),
      restartLog: options.restartLog === true || current.restartLog === true,
    });
  }

  /** Tables a refresh was asked for and not yet done. */
  async refreshRequests(): Promise<string[]> {
    return (await this.#refreshFile()).tables;
  }

  /**
   * True when the refresh must also restart reading the log from the new snapshot's position, because the
   * log at the saved position is gone (a purged binlog, a dropped slot).
   */
  async refreshRestartsLog(): Promise<boolean> {
    return (await this.#refreshFile()).restartLog;
  }

  async #refreshFile(): Promise<{ tables: string[]; restartLog: boolean }> {
    try {
      const parsed = JSON.parse(await readFile(join(this.dir, REFRESH_FILE), 'utf8')) as {
        tables?: unknown;
        restartLog?: unknown;
      };
      return {
        tables: Array.isArray(parsed.tables) ? parsed.tables.map(String) : [],
        restartLog: parsed.restartLog === true,
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { tables: [], restartLog: false };
      throw new TributaryError(
        'STAGING_CORRUPT',
        `The refresh request ${join(this.dir, REFRESH_FILE)} is unreadable: ${messageOf(error)}`,
        {
          hint: 'Remove the file and run `tributary refresh` again.',
          cause: error,
        },
      );
    }
  }

  async #writeRefreshFile(request: { tables: string[]; restartLog: boolean }): Promise<void> {
    const path = join(this.dir, REFRESH_FILE);
    const body = { tables: request.tables, ...(request.restartLog ? { restartLog: true } : {}) };
    await writeFile(`${path}.tmp`, `${JSON.stringify({ ...body, requestedAt: new Date().toISOString() })}\n`);
    await rename(`${path}.tmp`, path);
    await fsyncPath(this.dir);
  }

  /** The refresh of these tables is done (their new snapshot is sealed). */
  async refreshDone(tables: readonly string[]): Promise<void> {
    const current = await this.#refreshFile();
    const left = current.tables.filter((t) => !tables.includes(t));
    if (left.length > 0) {
      await this.#writeRefreshFile({ tables: left, restartLog: current.restartLog });
      return;
    }
    await rm(join(this.dir, REFRESH_FILE), { force: true });
    await fsyncPath(this.dir);
  }

  /** Removes segments that are no longer needed (see src/pipeline/staging-retention.ts). */
  async discard(seqs: readonly number[]): Promise<void> {
    for (const seq of seqs) await rm(this.segmentDir(seq), { recursive: true, force: true });
    if (seqs.length > 0) await fsyncPath(this.dir);
  }

  /**
   * Writes and seals a segment: Parquet files and manifest into a temporary directory, every file fsynced,
   * then one rename makes it visible. Only after this returns may the source position be acknowledged.
   *
   * On failure the temporary directory is removed, so nothing half-written is left behind and a retry has its
   * space back. A full disk (ENOSPC, EDQUOT: from Node by errno, from DuckDB's COPY by its IO error text)
   * throws `STAGING_FULL`, which names the volume and its free space.
   */
  /**
   * Writes rows of segment `seq` ahead of sealing it, so that a transaction larger than memory can be staged
   * whole: the part waits in the segment's temporary directory (invisible to readers, and removed by the
   * next `loadState` if the process dies) until {@link writeSegment} seals it with the rest. Part numbers
   * order the parts, and row ordinals keep growing across them, so apply still sees source order.
   */
  async spill(
    db: DuckDb,
    seq: number,
    tableKey: string,
    part: number,
    schema: TableSchema,
    rows: readonly StagedRow[],
  ): Promise<SpilledPart> {
    const tmp = this.#tmpDir(seq);
    const file = stagedPartFileName(tableKey, part);
    try {
      await mkdir(tmp, { recursive: true });
      const partial = rows.some((r) => r.unchanged !== undefined && r.unchanged.length > 0);
      await writeStagedParquet(db, join(tmp, file), schema, rows, partial);
      await fsyncPath(join(tmp, file));
      return { file, rows: rows.length, partial };
    } catch (error) {
      const full = await this.storageFullError(
        error,
        `writing part of segment ${seq}`,
        'Capture stopped before sealing that segment: it was removed, nothing half-written is left, and the gateway position did not advance.',
      );
      await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw full ?? error;
    }
  }

  /** Under `.tmp/`, so that finding leftovers never lists the sealed segments. */
  #tmpDir(seq: number): string {
    return join(this.dir, TMP_DIR, `${segmentDirName(seq)}-${process.pid}`);
  }

  async writeSegment(db: DuckDb, draft: SegmentDraft): Promise<SegmentManifest> {
    const tmp = this.#tmpDir(draft.seq);
    try {
      return await this.#writeSealed(db, draft, tmp);
    } catch (error) {
      // Classified first, so that the message shows the free space as the failed write saw it.
      const full = await this.storageFullError(
        error,
        `writing segment ${draft.seq}`,
        'Capture stopped before sealing that segment: it was removed, nothing half-written is left, and the gateway position did not advance.',
      );
      // After a successful rename `tmp` no longer exists and this removes nothing of the sealed segment.
      await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
      throw full ?? error;
    }
  }

  async #writeSealed(db: DuckDb, draft: SegmentDraft, tmp: string): Promise<SegmentManifest> {
    await mkdir(this.dir, { recursive: true });
    const spilled = [...draft.tables.values()].some((t) => (t.spilled?.length ?? 0) > 0);
    // Spilled parts already wait in `tmp`; anything else there is a leftover of a failed attempt.
    if (!spilled) await rm(tmp, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });

    const tables: Record<string, StagedTable> = {};
    for (const [key, staged] of draft.tables) {
      const parts = staged.spilled ?? [];
      const partial = staged.rows.some((r) => r.unchanged !== undefined && r.unchanged.length > 0);
      const files = parts.map((p) => p.file);
      if (parts.length === 0 || staged.rows.length > 0) {
        const file = parts.length === 0 ? stagedFileName(key) : stagedPartFileName(key, parts.length + 1);
        await writeStagedParquet(db, join(tmp, file), staged.schema, staged.rows, partial);
        await fsyncPath(join(tmp, file));
        files.push(file);
      }
      const anyPartial = partial || parts.some((p) => p.partial);
      tables[key] = {
        file: files[0] as string,
        ...(files.length > 1 ? { files } : {}),
        rows: staged.rows.length + parts.reduce((n, p) => n + p.rows, 0),
        schema: staged.schema,
        reset: staged.reset,
        ...(staged.reset && staged.resetCommitTime
          ? { resetCommitTime: staged.resetCommitTime.toISOString() }
          : {}),
        ...(anyPartial ? { partial: true } : {}),
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
    await this.#writeNewestHint(draft.seq);
    return manifest;
  }

  /**
   * `STAGING_FULL` for an error that says the volume is out of space or over quota (see storage-full.ts),
   * naming the gateway directory and the free space left; undefined for any other error.
   */
  async storageFullError(
    error: unknown,
    doing: string,
    consequence: string,
  ): Promise<TributaryError | undefined> {
    if (isTributaryError(error) && error.code === 'STAGING_FULL') return error;
    const reason = storageFullReason(error);
    if (reason === undefined) return undefined;
    const space = await storageSpace(this.dir);
    const volume = dirname(this.dir);
    const fix =
      reason === 'EDQUOT'
        ? `Raise the disk quota of the user running tributary on ${volume}, or free space within it`
        : `Free space on the file system that holds ${volume}, or move the volume to a larger disk (mounted at the same path)`;
    return new TributaryError(
      'STAGING_FULL',
      `The staging volume ${volume} of gateway ${this.gateway} is full while ${doing}: ${describeStorageFull(reason, space)}. ${consequence}`,
      {
        hint: `${fix}, then run again: capture resumes from the last sealed segment (a run without --once retries by itself with backoff). Applied segments are kept for the gateway's staging_retention_days (default 25); a lower value frees space sooner.`,
        cause: error,
      },
    );
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
