/**
 * The writer's view of `_delta_log`: every file classified by the version it belongs to (commits,
 * checkpoints of each kind, `.crc`, log compactions, Hadoop `.x.crc` sidecars) and reading a commit's actions.
 * The reader keeps its own listing in `snapshot.ts`; this one also sees the files that only cleanup cares
 * about.
 */
import { open, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { messageOf, TributaryError } from '../core/errors.js';
import type { RawAction } from './actions.js';

export const LOG_DIR = '_delta_log';

/** `_delta_log/<20-digit version>.json`. */
export function commitFileName(version: number): string {
  return `${String(version).padStart(20, '0')}.json`;
}

/** `_delta_log/<20-digit version>.checkpoint.parquet` (classic, single file). */
export function checkpointFileName(version: number): string {
  return `${String(version).padStart(20, '0')}.checkpoint.parquet`;
}

export type LogFileKind =
  | 'commit'
  | 'classic-checkpoint'
  | 'multi-part-checkpoint'
  | 'v2-checkpoint'
  | 'crc'
  | 'compaction'
  | 'hadoop-crc';

export interface LogFile {
  name: string;
  /** The version the file belongs to (for a compaction `x.y.compacted.json`, the last one, y). */
  version: number;
  kind: LogFileKind;
  /** Multi-part only: `[part, of]`. */
  part?: [number, number];
}

const PATTERNS: ReadonlyArray<[RegExp, LogFileKind]> = [
  [/^(\d{20})\.json$/, 'commit'],
  [/^(\d{20})\.checkpoint\.parquet$/, 'classic-checkpoint'],
  [/^(\d{20})\.checkpoint\.(\d{10})\.(\d{10})\.parquet$/, 'multi-part-checkpoint'],
  [/^(\d{20})\.checkpoint\.[0-9a-fA-F-]{36}\.(?:json|parquet)$/, 'v2-checkpoint'],
  [/^(\d{20})\.crc$/, 'crc'],
  [/^\d{20}\.(\d{20})\.compacted\.json$/, 'compaction'],
  [/^\.(\d{20})\..*\.crc$/, 'hadoop-crc'],
];

/** Classifies one name in `_delta_log`; undefined for anything else (`_last_checkpoint`, temp files, ...). */
export function classifyLogFile(name: string): LogFile | undefined {
  for (const [re, kind] of PATTERNS) {
    const m = re.exec(name);
    if (!m) continue;
    const file: LogFile = { name, version: Number(m[1]), kind };
    if (kind === 'multi-part-checkpoint') file.part = [Number(m[2]), Number(m[3])];
    return file;
  }
  return undefined;
}

/** A checkpoint usable for replay: all parts of a multi-part one present. */
export interface CheckpointFiles {
  version: number;
  kind: 'classic' | 'multi-part' | 'v2';
  /** Names in `_delta_log`, parts in order. */
  names: string[];
}

export interface LogListing {
  logDir: string;
  /** Every classified file, ascending by version. */
  files: LogFile[];
  /** version → commit file name. */
  commits: Map<number, string>;
  /** Complete checkpoints, newest first (classic before multi-part before v2 at one version). */
  checkpoints: CheckpointFiles[];
}

/** Lists and classifies `tableRoot/_delta_log`. @throws `DELTA_TABLE_NOT_FOUND` when there is no log. */
export async function listLogFiles(tableRoot: string): Promise<LogListing> {
  const logDir = path.join(tableRoot, LOG_DIR);
  let names: string[];
  try {
    names = await readdir(logDir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new TributaryError(
        'DELTA_TABLE_NOT_FOUND',
        `No Delta table at ${tableRoot}: ${logDir} does not exist`,
        { hint: 'Check the table path; a Delta table is a directory containing _delta_log/.' },
      );
    }
    throw new TributaryError('DELTA_CORRUPT', `Cannot list ${logDir}: ${messageOf(error)}`, {
      cause: error,
      retry: 'transient',
    });
  }
  const files: LogFile[] = [];
  const commits = new Map<number, string>();
  const checkpoints: CheckpointFiles[] = [];
  const multi = new Map<string, { version: number; of: number; parts: Map<number, string> }>();
  for (const name of names) {
    const file = classifyLogFile(name);
    if (!file) continue;
    files.push(file);
    if (file.kind === 'commit') commits.set(file.version, name);
    else if (file.kind === 'classic-checkpoint')
      checkpoints.push({ version: file.version, kind: 'classic', names: [name] });
    else if (file.kind === 'v2-checkpoint')
      checkpoints.push({ version: file.version, kind: 'v2', names: [name] });
    else if (file.kind === 'multi-part-checkpoint' && file.part) {
      const key = `${file.version}/${file.part[1]}`;
      let group = multi.get(key);
      if (!group) {
        group = { version: file.version, of: file.part[1], parts: new Map() };
        multi.set(key, group);
      }
      group.parts.set(file.part[0], name);
    }
  }
  for (const group of multi.values()) {
    const parts: string[] = [];
    for (let i = 1; i <= group.of; i++) {
      const name = group.parts.get(i);
      if (name !== undefined) parts.push(name);
    }
    // An interrupted multi-part write leaves parts missing; such a checkpoint must never be used.
    if (parts.length === group.of)
      checkpoints.push({ version: group.version, kind: 'multi-part', names: parts });
  }
  const rank = { classic: 0, 'multi-part': 1, v2: 2 } as const;
  checkpoints.sort((a, b) => b.version - a.version || rank[a.kind] - rank[b.kind]);
  files.sort((a, b) => a.version - b.version || a.name.localeCompare(b.name));
  return { logDir, files, commits, checkpoints };
}

/** The newest version with a commit or checkpoint, or -1 for an empty log. */
export function latestLogVersion(listing: LogListing): number {
  let latest = -1;
  for (const v of listing.commits.keys()) latest = Math.max(latest, v);
  for (const c of listing.checkpoints) latest = Math.max(latest, c.version);
  return latest;
}

/** Parses NDJSON log text (a commit or a JSON checkpoint) into actions; any line that is not a JSON object is corruption. */
export function parseLogText(text: string, file: string): RawAction[] {
  const actions: RawAction[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] as string).trim();
    if (line === '') continue;
    let parsed: unknown;
    try {
      parsed = JSON.parse(line);
    } catch (error) {
      throw new TributaryError(
        'DELTA_CORRUPT',
        `Unparseable Delta log file ${file} line ${i + 1}: ${messageOf(error)}`,
        { cause: error, hint: 'The log was written partially or by a broken writer; restore the file.' },
      );
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new TributaryError('DELTA_CORRUPT', `Delta log file ${file} line ${i + 1} is not a JSON object`);
    }
    actions.push(parsed as RawAction);
  }
  return actions;
}

/** The actions of commit `version`. @throws `DELTA_CORRUPT` when it is missing or unparseable. */
export async function readCommitActions(tableRoot: string, version: number): Promise<RawAction[]> {
  const file = path.join(tableRoot, LOG_DIR, commitFileName(version));
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw new TributaryError('DELTA_CORRUPT', `Cannot read Delta commit ${file}: ${messageOf(error)}`, {
      cause: error,
    });
  }
  return parseLogText(text, file);
}

/**
 * A file path from an action, made comparable: absolute, percent-decoding undone. Two writers may spell the
 * same file differently (relative vs `file:` URI, encoded vs not), and replay keys must not care.
 */
export function canonicalFilePath(tableRoot: string, p: string): string {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(p)) {
    if (p.startsWith('file:')) {
      try {
        return fileURLToPath(new URL(p));
      } catch {
        return safeDecode(p.replace(/^file:(\/\/)?/, ''));
      }
    }
    return p;
  }
  return path.resolve(tableRoot, safeDecode(p));
}

function safeDecode(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    // Some old writers did not encode `%`; the raw string is then the best guess.
    return p;
  }
}

/**
 * The first line of a log file (up to its first newline), or undefined when empty. Reads only as far as the
 * newline: a commit's `commitInfo` comes first, so history and in-commit timestamps need no full parse.
 */
export async function readFirstLine(file: string): Promise<string | undefined> {
  const handle = await open(file, 'r');
  try {
    const chunks: Buffer[] = [];
    let position = 0;
    for (;;) {
      const buffer = Buffer.alloc(16_384);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead === 0) break;
      const chunk = buffer.subarray(0, bytesRead);
      chunks.push(chunk);
      position += bytesRead;
      if (chunk.includes(0x0a)) break;
    }
    return Buffer.concat(chunks).toString('utf8').split('\n')[0]?.trim() || undefined;
  } finally {
    await handle.close();
  }
}
