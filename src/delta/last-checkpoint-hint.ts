/**
 * `_delta_log/_last_checkpoint`: an optional hint naming the newest checkpoint (DIGEST §6). It may be stale
 * (a writer crashed between writing a checkpoint and updating it), point at a checkpoint that no longer exists,
 * or be corrupt; readers must never fail because of it. {@link readLastCheckpoint} therefore returns a hint or
 * the reason it was ignored, never an error.
 *
 * The optional `checksum` is the MD5 of the canonicalised JSON defined in PROTOCOL.md ("JSON checksum"): every
 * leaf as `path=value`, path segments joined by `+` (object keys quoted and URL-encoded, array indexes bare),
 * strings URL-encoded (RFC 3986 unreserved characters kept, upper-case hex), numbers as written, pairs sorted
 * by the UTF-8 bytes of their path and joined by `,`; the top-level `checksum` key is left out.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';

/** The fields of `_last_checkpoint` a reader uses. */
export interface LastCheckpoint {
  version: number;
  /** Number of actions in the checkpoint. */
  size?: number;
  /** Number of parts of a multi-part checkpoint. */
  parts?: number;
  sizeInBytes?: number;
  numOfAddFiles?: number;
  /** A v2 checkpoint's manifest, when the writer embedded it. */
  v2Checkpoint?: { path?: string };
  checksum?: string;
}

export type LastCheckpointHint = { ok: true; hint: LastCheckpoint } | { ok: false; reason: string };

type Json = null | boolean | string | { raw: string } | Json[] | Map<string, Json>;

/**
 * A JSON parser that keeps numbers as written (the checksum covers their text, and `1.0` must not become `1`)
 * and rejects duplicate keys, which the checksum rules declare invalid.
 */
function parseJson(text: string): Json {
  let i = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`${what} at offset ${i}`);
  };
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i] as string)) i++;
  };
  const value = (): Json => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      const map = new Map<string, Json>();
      ws();
      if (text[i] === '}') {
        i++;
        return map;
      }
      for (;;) {
        ws();
        if (text[i] !== '"') fail('expected a key');
        const key = string();
        if (map.has(key)) fail(`duplicate key ${JSON.stringify(key)}`);
        ws();
        if (text[i++] !== ':') fail('expected ":"');
        map.set(key, value());
        ws();
        const sep = text[i++];
        if (sep === '}') return map;
        if (sep !== ',') fail('expected "," or "}"');
      }
    }
    if (c === '[') {
      i++;
      const list: Json[] = [];
      ws();
      if (text[i] === ']') {
        i++;
        return list;
      }
      for (;;) {
        list.push(value());
        ws();
        const sep = text[i++];
        if (sep === ']') return list;
        if (sep !== ',') fail('expected "," or "]"');
      }
    }
    if (c === '"') return string();
    for (const [word, v] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (text.startsWith(word, i)) {
        i += word.length;
        return v;
      }
    }
    const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 64));
    if (!m) fail('unexpected character');
    i += (m as RegExpExecArray)[0].length;
    return { raw: (m as RegExpExecArray)[0] };
  };
  const string = (): string => {
    const start = i;
    i++;
    while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
    if (i >= text.length) fail('unterminated string');
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const result = value();
  ws();
  if (i !== text.length) fail('trailing characters');
  return result;
}

/** RFC 3986 percent-encoding of everything but `A-Za-z0-9-._~`, upper-case hex. */
function urlEncode(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function leaves(value: Json, path: string, out: [string, string][]): void {
  if (value instanceof Map) {
    for (const [k, v] of value) leaves(v, `${path === '' ? '' : `${path}+`}"${urlEncode(k)}"`, out);
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => {
      leaves(v, `${path === '' ? '' : `${path}+`}${i}`, out);
    });
  } else if (value === null || typeof value === 'boolean') {
    out.push([path, String(value)]);
  } else if (typeof value === 'string') {
    out.push([path, `"${urlEncode(value)}"`]);
  } else {
    out.push([path, value.raw]);
  }
}

/** The protocol's checksum of a `_last_checkpoint` text (its own `checksum` key excluded). Throws on bad JSON. */
export function lastCheckpointChecksum(text: string): string {
  const root = parseJson(text);
  if (!(root instanceof Map)) throw new SyntaxError('not a JSON object');
  root.delete('checksum');
  const pairs: [string, string][] = [];
  leaves(root, '', pairs);
  pairs.sort((a, b) => Buffer.compare(Buffer.from(a[0], 'utf8'), Buffer.from(b[0], 'utf8')));
  const canonical = pairs.map(([p, v]) => `${p}=${v}`).join(',');
  return createHash('md5').update(canonical, 'utf8').digest('hex');
}

/**
 * Reads and validates `<logDir>/_last_checkpoint`. Missing, unparseable, checksum-mismatching or implausible
 * files yield `{ ok: false, reason }`.
 */
export async function readLastCheckpoint(logDir: string): Promise<LastCheckpointHint> {
  let text: string;
  try {
    text = await readFile(path.join(logDir, '_last_checkpoint'), 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return { ok: false, reason: code === 'ENOENT' ? 'absent' : `unreadable (${code})` };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not valid JSON' };
  }
  const hint = parsed as Partial<LastCheckpoint> | null;
  if (
    typeof hint !== 'object' ||
    hint === null ||
    !Number.isInteger(hint.version) ||
    (hint.version as number) < 0
  ) {
    return { ok: false, reason: 'no valid version' };
  }
  if (typeof hint.checksum === 'string') {
    let actual: string;
    try {
      actual = lastCheckpointChecksum(text);
    } catch (error) {
      return { ok: false, reason: `cannot canonicalise: ${(error as Error).message}` };
    }
    if (actual !== hint.checksum.toLowerCase()) {
      return { ok: false, reason: `checksum mismatch (stored ${hint.checksum}, computed ${actual})` };
    }
  }
  return { ok: true, hint: hint as LastCheckpoint };
}
