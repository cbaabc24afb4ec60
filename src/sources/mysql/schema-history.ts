/**
 * The captured tables' column lists at points of the binlog, kept in a file beside the gateway's staging
 * (Debezium's schema history, for the same reason): a stream that starts from a saved position must decode
 * the rows after it with the columns the tables had there, which information_schema no longer knows once
 * DDL has run since. See ddl-shapes.ts for why this matters without binlog_row_metadata=FULL.
 *
 * One JSON line per change: `{"position", "table", "shape"}`, where the shape is the table's columns from that
 * position on, or null when it is no longer known (dropped, renamed away, altered by DDL that was not
 * understood). Entries come from two places: the snapshot, which reads each table's columns inside its
 * consistent transaction (so they are the columns at the snapshot's position), and the stream, which records
 * the shapes a DDL statement leaves at the position after it.
 *
 * Entries are facts about the log, not about what is staged: one recorded ahead of staging (a crash before the
 * segment that holds its position was sealed) is still true when the stream reads that part again, and is
 * simply recorded again. So recording needs no coordination with staging; it is appended and fsynced before
 * the batch it belongs to is handed on.
 */
import { mkdir, open, readFile, rename, truncate } from 'node:fs/promises';
import { dirname } from 'node:path';
import { messageOf, TributaryError } from '../../core/errors.js';
import type { Position } from '../../core/position.js';
import { describeStorageFull, storageFullReason } from '../../core/storage-full.js';
import type { SourceShape } from './ddl-shapes.js';

export interface HistoryEntry {
  readonly position: Position;
  /** `schema.table`. */
  readonly table: string;
  readonly shape: SourceShape | null;
}

/** Rewritten without the entries no start position can need once it holds more lines than this. */
const COMPACT_AFTER = 1_000;

export class SchemaHistory {
  /** The file, or undefined for a history kept in memory only (a source opened without a gateway). */
  readonly #path: string | undefined;
  #entries: HistoryEntry[] | undefined;
  /** The file ends in a torn line: its length without it, to which the next append first cuts it back. */
  #tornAt: number | undefined;
  /** The file's last entry is whole but lacks its newline (a crash between the two): the next append adds it. */
  #unterminated = false;
  /** The appends under way, one after another: a cut-back of a torn line must not cross another's append. */
  #writing: Promise<void> = Promise.resolve();
  /** One read of the file, however many callers ask at once (a parallel snapshot's readers record together). */
  #loading: Promise<HistoryEntry[]> | undefined;

  constructor(path: string | undefined) {
    this.#path = path;
  }

  /**
   * Each table's shape at `position`: the last entry at or before it. A table first recorded after it (a table
   * snapshotted after the stream's start, by another of a parallel snapshot's transactions, whose changes before
   * its own position capture skips) gets that first entry. A table never recorded (as in a volume staged before
   * the history existed) is absent.
   */
  async at(position: Position): Promise<Map<string, SourceShape | null>> {
    const entries = await this.#load();
    const shapes = new Map<string, SourceShape | null>();
    // In position order: the last entry at or before `position` wins, or else the first one after it.
    for (const e of entries) if (e.position <= position || !shapes.has(e.table)) shapes.set(e.table, e.shape);
    if (entries.length > COMPACT_AFTER) await this.#compact(position);
    return shapes;
  }

  /** Appends the entries, durably, before returning. Calls are taken one at a time, in the order made. */
  record(entries: readonly HistoryEntry[]): Promise<void> {
    const done = this.#writing.then(() => this.#append(entries));
    this.#writing = done.catch(() => {});
    return done;
  }

  async #append(entries: readonly HistoryEntry[]): Promise<void> {
    if (entries.length === 0) return;
    const all = await this.#load();
    // Kept in position order, so `at` can take the last match.
    for (const e of entries) {
      let i = all.length;
      while (i > 0 && (all[i - 1] as HistoryEntry).position > e.position) i--;
      all.splice(i, 0, e);
    }
    if (!this.#path) return;
    const text = `${this.#unterminated ? '\n' : ''}${entries.map((e) => `${JSON.stringify(e)}\n`).join('')}`;
    try {
      await mkdir(dirname(this.#path), { recursive: true });
      if (this.#tornAt !== undefined) {
        await truncate(this.#path, this.#tornAt);
        this.#tornAt = undefined;
      }
      const handle = await open(this.#path, 'a');
      try {
        await handle.appendFile(text);
        await handle.sync();
        this.#unterminated = false;
      } finally {
        await handle.close();
      }
    } catch (error) {
      const full = storageFullReason(error);
      throw new TributaryError(
        full ? 'STAGING_FULL' : 'STAGING_CORRUPT',
        `The schema history ${this.#path} could not be written: ${full ? describeStorageFull(full, undefined) : messageOf(error)}`,
        {
          hint: full
            ? 'Free space on the staging volume; capture resumes from the last staged position.'
            : 'Check that the staging volume is writable by this user; capture resumes from the last staged position.',
          cause: error,
        },
      );
    }
  }

  #load(): Promise<HistoryEntry[]> {
    this.#loading ??= this.#read().catch((error: unknown) => {
      this.#loading = undefined;
      throw error;
    });
    return this.#loading.then(() => this.#entries ?? []);
  }

  async #read(): Promise<HistoryEntry[]> {
    const entries: HistoryEntry[] = [];
    let text = '';
    if (this.#path) {
      try {
        text = await readFile(this.#path, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw unreadable(this.#path, error);
      }
    }
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i] as string;
      if (line.trim() === '') continue;
      try {
        entries.push(parseEntry(line));
      } catch (error) {
        // A crash during an append leaves a torn last line; the entry it held is recorded again when the
        // stream reads its DDL again.
        if (i === lines.length - 1) {
          this.#tornAt = Buffer.byteLength(text) - Buffer.byteLength(line);
          break;
        }
        throw unreadable(this.#path ?? '', error, i + 1);
      }
    }
    this.#unterminated = this.#tornAt === undefined && text !== '' && !text.endsWith('\n');
    entries.sort((a, b) => (a.position < b.position ? -1 : a.position > b.position ? 1 : 0));
    this.#entries = entries;
    return entries;
  }

  /** Drops entries that an entry at or before `position` supersedes: no start from here on reads them. */
  async #compact(position: Position): Promise<void> {
    const entries = this.#entries ?? [];
    const lastBefore = new Map<string, number>();
    entries.forEach((e, i) => {
      if (e.position <= position) lastBefore.set(e.table, i);
    });
    const kept = entries.filter((e, i) => e.position > position || lastBefore.get(e.table) === i);
    this.#entries = kept;
    // The rewrite leaves out a torn line and ends with a newline.
    this.#tornAt = undefined;
    this.#unterminated = false;
    if (!this.#path) return;
    const tmp = `${this.#path}.tmp-${process.pid}`;
    const handle = await open(tmp, 'w');
    try {
      await handle.writeFile(kept.map((e) => `${JSON.stringify(e)}\n`).join(''));
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, this.#path);
    const dir = await open(dirname(this.#path), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}

function parseEntry(line: string): HistoryEntry {
  const e = JSON.parse(line) as Partial<HistoryEntry>;
  if (typeof e.position !== 'string' || typeof e.table !== 'string' || e.shape === undefined)
    throw new Error('not a schema history entry');
  if (e.shape !== null && !Array.isArray(e.shape.columns)) throw new Error('not a schema history entry');
  return e as HistoryEntry;
}

function unreadable(path: string, error: unknown, line?: number): TributaryError {
  return new TributaryError(
    'STAGING_CORRUPT',
    `The schema history ${path} is unreadable${line ? ` at line ${line}` : ''}: ${messageOf(error)}`,
    {
      hint: `Move the file aside and run again: the captured tables' columns are then read from information_schema, which is exact unless DDL ran on them after the saved position. Tables whose columns changed since are best refreshed (tributary refresh).`,
      cause: error,
    },
  );
}
