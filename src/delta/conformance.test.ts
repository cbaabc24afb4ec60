/**
 * Conformance against the Spark/kernel/delta-rs-written tables in the corpus (default
 * /work/shared/conformance/delta, override with DELTA_CONFORMANCE_CORPUS; see its MANIFEST.md). Every check is a
 * case that passes (possibly with a note saying what was checked), fails, or is skipped with a reason:
 *
 * - `read`: every table is opened at its latest version and fully scanned; where the corpus has expected
 *   results (kernel golden `expected/`, DAT `expected/latest`) the rows must be equal;
 * - `version`: DAT per-version expected results (time travel by version);
 * - `negative`: the corpus's broken tables must fail with the expected error code;
 * - `read-text`: kernel-rs `expected-from-tests/read/*.txt` (and the unshredded variant expectation);
 * - `cdf`: kernel-rs `expected-from-tests/cdf/*.txt`, plus a change-feed run over every CDF table;
 * - `time-travel`: by in-commit timestamp on the tables that have them;
 * - `last-checkpoint`: every `_last_checkpoint` is either a valid hint (checksum verified) or ignored.
 *
 * With TRIBUTARY_CONFORMANCE_REPORT=<dir> (set by `npm run conformance`) it also writes
 * `conformance-report.{md,json}` there. Skipped when the corpus is absent.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  type DuckDBConnection,
  DuckDBDecimalValue,
  DuckDBListValue,
  DuckDBMapValue,
  DuckDBStructValue,
  type DuckDBType,
  DuckDBTypeId,
  type DuckDBValue,
} from '@duckdb/node-api';
import { afterAll, describe, it } from 'vitest';
import { type ErrorCode, isTributaryError, messageOf } from '../core/errors.js';
import { tableChangesSql } from './change-data-feed.js';
import { withConnection } from './duckdb.js';
import { readLastCheckpoint } from './last-checkpoint-hint.js';
import { type ScanOptions, scanSql } from './scan.js';
import { loadSnapshot, type Snapshot } from './snapshot.js';

const CORPUS = process.env['DELTA_CONFORMANCE_CORPUS'] ?? '/work/shared/conformance/delta';
const REPORT_DIR = process.env['TRIBUTARY_CONFORMANCE_REPORT'];

/** Negative cases: path suffix → the error code the table must fail with. */
const EXPECTED_ERRORS: Record<string, ErrorCode> = {
  'versions-not-contiguous': 'DELTA_CORRUPT',
  'deltalog-state-reconstruction-from-checkpoint-missing-metadata': 'DELTA_CORRUPT',
  'deltalog-state-reconstruction-from-checkpoint-missing-protocol': 'DELTA_CORRUPT',
  'deltalog-state-reconstruction-without-metadata': 'DELTA_CORRUPT',
  'deltalog-state-reconstruction-without-protocol': 'DELTA_CORRUPT',
  'deltalog-invalid-protocol-version': 'DELTA_PROTOCOL',
  'data_err_logs/table_c': 'DELTA_CORRUPT',
  'data_err_logs/table_d': 'DELTA_PROTOCOL',
  'data_err_logs/table_e': 'DELTA_PROTOCOL',
  'data_err_logs/table_f': 'DELTA_PROTOCOL',
  'data_err_logs/table_h': 'DELTA_PROTOCOL',
  'data_err_logs/table_i': 'DELTA_PROTOCOL',
  'no-delta-log-folder': 'DELTA_TABLE_NOT_FOUND',
  // The log has add actions but no metaData at all (Spark's test only exercises path parsing).
  'data-reader-absolute-paths-escaped-chars': 'DELTA_CORRUPT',
  'crc-malformed': 'DELTA_TABLE_NOT_FOUND',
  // Bogus reader feature "blahabl" / unknown "geospatial": must be refused, never read.
  simple_table_features: 'DELTA_PROTOCOL',
  'table-with-geo': 'DELTA_PROTOCOL',
};

/** Scan options a case needs, with the reason (shown in the report). */
const SCAN_OVERRIDES: Record<string, { options: ScanOptions; note: string }> = {
  'golden/data-reader-partition-values': {
    options: { partitionTimeZone: 'America/Los_Angeles' },
    note:
      "legacy timestamp partition values read in America/Los_Angeles, the Spark generator's session zone " +
      '(the expected data says 11:11:11 PDT); the default UTC differs by design, which is why kernel-rs skips it',
  },
};

/** Tables whose data cannot be read for a reason outside the reader. */
const UNREADABLE_DATA: Record<string, string> = {
  'spark-test-resources/partitioned-table-with-dv-large':
    "its DV files carry Spark's test-only name prefix 'test%dv%prefix-', which the descriptors do not record",
  'spark-test-resources/table-with-dv-large':
    "its DV files carry Spark's test-only name prefix 'test%dv%prefix-', which the descriptors do not record",
  'spark-test-resources/table-with-dv-small':
    "its DV files carry Spark's test-only name prefix 'test%dv%prefix-', which the descriptors do not record",
  'spark-test-resources/table-with-dv-special-char':
    'its DV descriptor holds the placeholder absolute path {{FOLDER_WITH_SPECIAL_CHAR}}',
};

/** Transcriptions whose `table(s)` line names the wrong table (its columns say which one it is). */
const TEXT_TABLE_OVERRIDES: Record<string, string> = {
  'predicate_on_unprojected_column.txt': 'app-txn-checkpoint',
};

/**
 * The kernel predicates that are known exactly (from the test's call context). Data skipping may keep extra rows
 * but never drops a matching one, so every row of the table that matches must be in the expectation.
 */
const TEXT_PREDICATES: Record<string, string> = {
  'mixed_null.txt': 'n IS NULL',
  'mixed_not_null.txt': 'n IS NOT NULL',
  'with_predicate_and_removes.txt': 'value > 3',
  'partition_values_parsed_skipping.txt': 'part = 0',
  'timestamp_truncation_real_table_eq.txt': 'epoch_us(ts_col) = 4000400',
  'timestamp_truncation_real_table_ge.txt': 'epoch_us(ts_col) >= 4000400',
  'timestamp_truncation_real_table_gt.txt': 'epoch_us(ts_col) > 4000400',
  'timestamp_truncation_real_table_le.txt': 'epoch_us(ts_col) <= 4000400',
  'timestamp_truncation_real_table_lt.txt': 'epoch_us(ts_col) < 4000400',
};

type Status = 'passed' | 'failed' | 'skipped';
interface Outcome {
  status: Exclude<Status, 'failed'>;
  note: string;
}
interface Case {
  id: string;
  kind: 'read' | 'version' | 'negative' | 'read-text' | 'cdf' | 'time-travel' | 'last-checkpoint';
  table: string;
  run: () => Promise<Outcome>;
}
interface Result {
  id: string;
  kind: Case['kind'];
  table: string;
  status: Status;
  note: string;
  ms: number;
}

const pass = (note: string): Outcome => ({ status: 'passed', note });
const skip = (note: string): Outcome => ({ status: 'skipped', note });

function lookup<T>(table: Record<string, T>, name: string): T | undefined {
  for (const [suffix, value] of Object.entries(table)) if (name.endsWith(suffix)) return value;
  return undefined;
}

function parquetFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.parquet') && !n.startsWith('.'))
    .map((n) => path.join(dir, n));
}

// ---------------------------------------------------------------------------------------------------------------
// Rendering rows the way arrow's pretty printer does (the kernel-rs expectations are arrow tables)

function isoFromMicros(micros: bigint, zone: boolean): string {
  const ms = Number(micros / 1000n - (micros % 1000n < 0n ? 1n : 0n));
  const sub = Number(((micros % 1_000_000n) + 1_000_000n) % 1_000_000n);
  const base = new Date(ms).toISOString().slice(0, 19);
  const fraction =
    sub === 0
      ? ''
      : sub % 1000 === 0
        ? `.${String(sub / 1000).padStart(3, '0')}`
        : `.${String(sub).padStart(6, '0')}`;
  return `${base}${fraction}${zone ? 'Z' : ''}`;
}

function floatText(x: number, single: boolean): string {
  if (!Number.isFinite(x)) return String(x);
  let text = String(x);
  if (single) {
    for (let p = 1; p <= 9; p++) {
      const candidate = Number(x.toPrecision(p));
      if (Math.fround(candidate) === x) {
        text = String(candidate);
        break;
      }
    }
  }
  return /[.e]/.test(text) ? text : `${text}.0`;
}

function render(value: DuckDBValue, type: DuckDBType): string {
  if (value === null) return '';
  switch (type.typeId) {
    case DuckDBTypeId.FLOAT:
      return floatText(value as number, true);
    case DuckDBTypeId.DOUBLE:
      return floatText(value as number, false);
    case DuckDBTypeId.TIMESTAMP_TZ:
      return isoFromMicros((value as { micros: bigint }).micros, true);
    case DuckDBTypeId.TIMESTAMP:
      return isoFromMicros((value as { micros: bigint }).micros, false);
    case DuckDBTypeId.BLOB:
      return Buffer.from((value as { bytes: Uint8Array }).bytes).toString('hex');
    case DuckDBTypeId.STRUCT: {
      const struct = type as unknown as { entryNames: string[]; entryTypes: DuckDBType[] };
      const entries = (value as DuckDBStructValue).entries;
      return `{${struct.entryNames.map((n, i) => `${n}: ${render(entries[n] ?? null, struct.entryTypes[i] as DuckDBType)}`).join(', ')}}`;
    }
    case DuckDBTypeId.LIST: {
      const element = (type as unknown as { valueType: DuckDBType }).valueType;
      return `[${(value as DuckDBListValue).items.map((v) => render(v, element)).join(', ')}]`;
    }
    case DuckDBTypeId.MAP: {
      const map = type as unknown as { keyType: DuckDBType; valueType: DuckDBType };
      const entries = (value as DuckDBMapValue).entries;
      return `{${entries.map((e) => `${render(e.key, map.keyType)}: ${render(e.value, map.valueType)}`).join(', ')}}`;
    }
    default:
      if (value instanceof DuckDBDecimalValue || value instanceof DuckDBStructValue) return value.toString();
      if (value instanceof DuckDBListValue || value instanceof DuckDBMapValue) return value.toString();
      return String(value);
  }
}

/** Top-level cells compare `1.0` = `1` and `67.89000` = `67.89`: scale is covered by the golden parquet cases. */
function canonicalCell(text: string): string {
  return /^-?\d+\.\d+$/.test(text) ? text.replace(/0+$/, '').replace(/\.$/, '') : text;
}

async function renderedRows(c: DuckDBConnection, sql: string, columns: readonly string[]): Promise<string[]> {
  const select = columns.map((n) => `"${n.replaceAll('"', '""')}"`).join(', ');
  const reader = await c.runAndReadAll(`SELECT ${select} FROM (${sql})`);
  const types = reader.columnTypes();
  return reader
    .getRows()
    .map((row) => row.map((v, i) => canonicalCell(render(v, types[i] as DuckDBType))).join(' | '));
}

/** Multiset difference a − b. */
function minus(a: readonly string[], b: readonly string[]): string[] {
  const counts = new Map<string, number>();
  for (const x of b) counts.set(x, (counts.get(x) ?? 0) + 1);
  const out: string[] = [];
  for (const x of a) {
    const n = counts.get(x) ?? 0;
    if (n > 0) counts.set(x, n - 1);
    else out.push(x);
  }
  return out;
}

function diff(
  actual: readonly string[],
  expected: readonly string[],
  mode: 'equal' | 'subset',
): string | null {
  const missing = minus(expected, actual);
  const extra = mode === 'equal' ? minus(actual, expected) : [];
  if (missing.length === 0 && extra.length === 0) return null;
  const show = (rows: string[]) =>
    rows
      .slice(0, 3)
      .map((r) => `[${r}]`)
      .join(' ');
  return `${missing.length} expected rows missing ${show(missing)}; ${extra.length} unexpected rows ${show(extra)}`;
}

// ---------------------------------------------------------------------------------------------------------------
// Expected data as Parquet (kernel golden, DAT)

/** Rows as comparable text: timestamps as epoch µs (time zone independent), everything else VARCHAR. */
async function normalised(connection: DuckDBConnection, sql: string, columns: string[]): Promise<string> {
  const described = await connection.runAndReadAll(`DESCRIBE ${sql}`);
  const types = new Map(described.getRowsJS().map((r) => [String(r[0]).toLowerCase(), String(r[1])]));
  const exprs = columns.map((c) => {
    const type = types.get(c.toLowerCase());
    const id = `"${c.replaceAll('"', '""')}"`;
    if (type === undefined) return `'<missing>' AS ${id}`;
    if (/^TIMESTAMP/.test(type)) return `CAST(epoch_us(${id}) AS VARCHAR) AS ${id}`;
    return `CAST(${id} AS VARCHAR) AS ${id}`;
  });
  return `SELECT ${exprs.join(', ')} FROM (${sql})`;
}

async function compareParquet(
  snapshot: Snapshot,
  expectedFiles: string[],
  options: ScanOptions,
): Promise<string | null> {
  return withConnection(async (c) => {
    const expectedSql = `SELECT * FROM read_parquet([${expectedFiles.map((f) => `'${f.replaceAll("'", "''")}'`).join(', ')}])`;
    const columns = (await c.runAndReadAll(`DESCRIBE ${expectedSql}`)).getRowsJS().map((r) => String(r[0]));
    const actual = await normalised(c, await scanSql(snapshot, c, options), columns);
    const expected = await normalised(c, expectedSql, columns);
    const count = async (sql: string) =>
      Number((await c.runAndReadAll(`SELECT count(*) FROM (${sql})`)).getRowsJS()[0]?.[0]);
    const extra = await count(`${actual} EXCEPT ALL ${expected}`);
    const missing = await count(`${expected} EXCEPT ALL ${actual}`);
    if (extra === 0 && missing === 0) return null;
    const sample = (await c.runAndReadAll(`(${actual} EXCEPT ALL ${expected}) LIMIT 2`)).getRowsJS();
    const sampleMissing = (await c.runAndReadAll(`(${expected} EXCEPT ALL ${actual}) LIMIT 2`)).getRowsJS();
    return `${extra} unexpected rows ${JSON.stringify(sample)}, ${missing} missing rows ${JSON.stringify(sampleMissing)}`;
  });
}

async function scanCount(snapshot: Snapshot): Promise<number> {
  return withConnection(async (c) => {
    const sql = await scanSql(snapshot, c);
    return Number((await c.runAndReadAll(`SELECT count(*) FROM (${sql})`)).getRowsJS()[0]?.[0]);
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Discovery

interface Table {
  /** Relative to the corpus. */
  name: string;
  root: string;
  /** version (or 'latest') → expected Parquet files. */
  expected: Map<number | 'latest', string[]>;
}

function discoverTables(): Table[] {
  const tables: Table[] = [];
  const walk = (dir: string): void => {
    const names = readdirSync(dir);
    if (names.includes('_delta_log')) {
      const parent = path.dirname(dir);
      const expected = new Map<number | 'latest', string[]>();
      const expectedDir = path.join(parent, 'expected');
      if (path.basename(dir) === 'delta' && existsSync(expectedDir)) {
        const entries = readdirSync(expectedDir);
        if (entries.some((n) => n.endsWith('.parquet'))) {
          expected.set('latest', parquetFiles(expectedDir));
        } else {
          // DAT layout: expected/{latest,v0,v1,...}/table_content.parquet
          for (const sub of entries) {
            const files = parquetFiles(path.join(expectedDir, sub));
            if (sub === 'latest') expected.set('latest', files);
            else if (/^v\d+$/.test(sub)) expected.set(Number(sub.slice(1)), files);
          }
        }
      }
      tables.push({
        name: path.relative(CORPUS, path.basename(dir) === 'delta' ? parent : dir),
        root: dir,
        expected,
      });
      return;
    }
    for (const n of names) {
      if (n.startsWith('.') || n === 'expected' || n === 'tools' || n === 'expected-from-tests') continue;
      const child = path.join(dir, n);
      if (statSync(child).isDirectory()) walk(child);
    }
  };
  walk(CORPUS);
  for (const extra of [
    'kernel-rs/golden/no-delta-log-folder/delta',
    'delta-spark/golden-tables/no-delta-log-folder',
  ]) {
    const root = path.join(CORPUS, extra);
    if (existsSync(root)) tables.push({ name: extra.replace(/\/delta$/, ''), root, expected: new Map() });
  }
  return tables.sort((a, b) => a.name.localeCompare(b.name));
}

// ---------------------------------------------------------------------------------------------------------------
// Read cases

function tableCases(table: Table): Case[] {
  const expectedError = lookup(EXPECTED_ERRORS, table.name);
  if (expectedError !== undefined) {
    return [
      {
        id: `negative ${table.name}`,
        kind: 'negative',
        table: table.name,
        run: async () => {
          try {
            const snapshot = await loadSnapshot(table.root);
            await scanCount(snapshot);
          } catch (error) {
            if (isTributaryError(error) && error.code === expectedError) {
              return pass(`fails with ${error.code}: ${error.message.slice(0, 160)}`);
            }
            throw new Error(
              `expected ${expectedError}, got ${isTributaryError(error) ? error.code : ''} ${messageOf(error)}`,
            );
          }
          throw new Error(`opened and scanned, but ${expectedError} was expected`);
        },
      },
    ];
  }
  const override = lookup(SCAN_OVERRIDES, table.name);
  const cases: Case[] = [
    {
      id: `read ${table.name}`,
      kind: 'read',
      table: table.name,
      run: async () => {
        let snapshot: Snapshot;
        try {
          snapshot = await loadSnapshot(table.root);
        } catch (error) {
          if (isTributaryError(error) && error.code === 'DELTA_PROTOCOL' && table.expected.size === 0) {
            return skip(`refused (no expected results in the corpus): ${error.message}`);
          }
          throw error;
        }
        const expected = table.expected.get('latest');
        if (expected) {
          const mismatch = await compareParquet(snapshot, expected, override?.options ?? {});
          if (mismatch !== null) throw new Error(`v${snapshot.version}: ${mismatch}`);
          return pass(`equal to expected/ at v${snapshot.version}${override ? `; ${override.note}` : ''}`);
        }
        const unreadable = lookup(UNREADABLE_DATA, table.name);
        if (unreadable)
          return skip(`log replay at v${snapshot.version} passed; data not read: ${unreadable}`);
        if (snapshot.schema.fields.length === 0) {
          return pass(
            `no expected results; replay passed (v${snapshot.version}, ${snapshot.files.length} live files); the schema has no columns, so there is nothing to scan`,
          );
        }
        const present = snapshot.files.filter((f) => existsSync(snapshot.dataFilePath(f))).length;
        if (present === 0 && snapshot.files.length > 0) {
          try {
            await scanCount(snapshot);
          } catch (error) {
            if (isTributaryError(error) && error.code === 'DELTA_CORRUPT') {
              return pass(
                `log-only fixture: none of its ${snapshot.files.length} data files are in the corpus; replay passed at v${snapshot.version} and the scan fails cleanly (${error.message.slice(0, 120)}…)`,
              );
            }
            throw error;
          }
          throw new Error('the scan succeeded although no data file exists');
        }
        const rows = await scanCount(snapshot);
        return pass(
          `no expected results in the corpus; replay (v${snapshot.version}) and full scan passed (${rows} rows)`,
        );
      },
    },
  ];
  for (const [version, files] of table.expected) {
    if (version === 'latest') continue;
    cases.push({
      id: `version ${table.name} v${version}`,
      kind: 'version',
      table: table.name,
      run: async () => {
        const mismatch = await compareParquet(await loadSnapshot(table.root, { version }), files, {});
        if (mismatch !== null) throw new Error(mismatch);
        return pass(`time travel to v${version} equal to expected/v${version}`);
      },
    });
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------------------------
// kernel-rs expected-from-tests

interface TextBlock {
  header: string[];
  rows: string[];
}

function parseAsciiTables(lines: readonly string[]): TextBlock[] {
  const blocks: TextBlock[] = [];
  let current: TextBlock | undefined;
  let borders = 0;
  const cells = (line: string) =>
    line
      .trim()
      .slice(1, -1)
      .split('|')
      .map((c) => c.trim());
  for (const line of lines) {
    const t = line.trim();
    if (t.startsWith('+')) {
      if (!current || borders === 3) {
        current = { header: [], rows: [] };
        blocks.push(current);
        borders = 0;
      }
      borders++;
    } else if (t.startsWith('|') && current) {
      if (borders === 1) current.header = cells(t);
      else current.rows.push(cells(t).map(canonicalCell).join(' | '));
    }
  }
  return blocks;
}

function textCases(): Case[] {
  const base = path.join(CORPUS, 'kernel-rs/expected-from-tests');
  const data = path.join(CORPUS, 'kernel-rs/data');
  if (!existsSync(base)) return [];
  const cases: Case[] = [];
  for (const kind of ['read', 'cdf'] as const) {
    for (const file of readdirSync(path.join(base, kind))
      .filter((f) => f.endsWith('.txt'))
      .sort()) {
      const text = readFileSync(path.join(base, kind, file), 'utf8').split('\n');
      const comments = text.filter((l) => l.startsWith('#'));
      const tablesLine = comments.find((l) => l.startsWith('# table(s):')) ?? '';
      const tables = tablesLine
        .replace('# table(s):', '')
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean);
      const blocks = parseAsciiTables(text.filter((l) => !l.startsWith('#')));
      const calls = comments.flatMap((l) => {
        const m = /read_cdf_for_table\("([^"]+)",\s*(\d+),\s*(None|\d+)/.exec(l);
        return m
          ? [{ table: m[1] as string, start: Number(m[2]), end: m[3] === 'None' ? undefined : Number(m[3]) }]
          : [];
      });
      const predicate =
        kind === 'read' &&
        file !== 'type_widening_decimal.txt' &&
        comments.some((l) => /Some\(pred|Pred::|predicate =|is_null\(\)|is_not_null\(\)/.test(l));
      blocks.forEach((block, i) => {
        const tableName =
          TEXT_TABLE_OVERRIDES[file] ??
          (kind === 'cdf' ? (calls[i]?.table ?? tables[0]) : (tables[i] ?? tables[0]));
        const id = `${kind === 'cdf' ? 'cdf' : 'read-text'} ${file}${blocks.length > 1 ? ` #${i + 1}` : ''}`;
        cases.push({
          id,
          kind: kind === 'cdf' ? 'cdf' : 'read-text',
          table: `kernel-rs/data/${tableName ?? '?'}`,
          run: async () => {
            if (!tableName || tableName.startsWith('(synthetic')) {
              return skip('the kernel test builds this table in memory; it is not part of the corpus');
            }
            const root = path.join(data, tableName);
            return withConnection(async (c) => {
              let sql: string;
              let what: string;
              if (kind === 'cdf') {
                const call = calls[i] ?? { start: 0, end: undefined };
                sql = await tableChangesSql(root, c, { startVersion: call.start, endVersion: call.end });
                what = `change feed v${call.start}..${call.end ?? 'latest'}`;
              } else {
                const snapshot = await loadSnapshot(root);
                const known = new Set(snapshot.schema.fields.map((f) => f.name));
                const absent = block.header.filter((h) => !known.has(h));
                if (absent.length > 0) {
                  return skip(
                    `the transcribed columns ${absent.join(', ')} are not in ${tableName} (transcription lost the table)`,
                  );
                }
                sql = await scanSql(snapshot, c);
                what = `full scan projected to ${block.header.join(', ')}`;
              }
              const actual = await renderedRows(c, sql, block.header);
              const mode = predicate ? 'subset' : 'equal';
              const mismatch = diff(actual, block.rows, mode);
              if (mismatch !== null) throw new Error(`${what}: ${mismatch}`);
              if (mode === 'equal') return pass(`${what}: ${block.rows.length} rows equal`);
              const equal = diff(actual, block.rows, 'equal') === null;
              const predicateSql = TEXT_PREDICATES[file];
              let bound = '';
              if (predicateSql !== undefined) {
                const matching = await renderedRows(
                  c,
                  `SELECT * FROM (${sql}) WHERE ${predicateSql}`,
                  block.header,
                );
                const dropped = minus(matching, block.rows);
                if (dropped.length > 0) {
                  throw new Error(
                    `${dropped.length} rows matching ${predicateSql} are not expected: [${dropped[0]}]`,
                  );
                }
                bound = `, and every row matching ${predicateSql} is among them`;
              }
              return pass(
                `${what}: the ${block.rows.length} expected rows are all present${equal ? ' (and nothing else)' : ''}${bound}; ` +
                  'kernel applies the test predicate only to skip files, so its result is a subset of the table',
              );
            });
          },
        });
      });
    }
  }
  const variant = path.join(data, 'unshredded-variant.expected.in');
  if (existsSync(variant)) {
    cases.push({
      id: 'read-text unshredded-variant.expected.in',
      kind: 'read-text',
      table: 'kernel-rs/data/unshredded-variant',
      run: async () => {
        const lines = readFileSync(variant, 'utf8')
          .split('\n')
          .flatMap((l) => {
            const m = /^\s*("(?:[^"\\]|\\.)*"),?\s*$/.exec(l);
            return m ? [JSON.parse(m[1] as string) as string] : [];
          });
        const [block] = parseAsciiTables(lines);
        if (!block) throw new Error('no table in the expectation');
        const snapshot = await loadSnapshot(path.join(data, 'unshredded-variant'));
        const actual = await withConnection(async (c) =>
          renderedRows(c, await scanSql(snapshot, c), block.header),
        );
        const mismatch = diff(actual, block.rows, 'equal');
        if (mismatch !== null) throw new Error(mismatch);
        return pass(`${block.rows.length} rows equal (variant read as struct<metadata, value>)`);
      },
    });
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------------------------
// Change data feed over every CDF table, ICT time travel, _last_checkpoint

function commitFiles(root: string): { version: number; file: string }[] {
  const log = path.join(root, '_delta_log');
  if (!existsSync(log)) return [];
  return readdirSync(log)
    .filter((n) => /^\d{20}\.json$/.test(n))
    .map((n) => ({ version: Number(n.slice(0, 20)), file: path.join(log, n) }))
    .sort((a, b) => a.version - b.version);
}

function logCases(table: Table): Case[] {
  if (lookup(EXPECTED_ERRORS, table.name) !== undefined) return [];
  const cases: Case[] = [];
  const commits = commitFiles(table.root);
  const text = (file: string) => readFileSync(file, 'utf8');
  if (commits.some((c) => text(c.file).includes('"delta.enableChangeDataFeed":"true"'))) {
    cases.push({
      id: `cdf ${table.name} (whole history)`,
      kind: 'cdf',
      table: table.name,
      run: async () => {
        const enabledFrom = commits.find((c) => text(c.file).includes('"delta.enableChangeDataFeed":"true"'));
        const first = commits[0];
        if (!enabledFrom || !first) throw new Error('no commit enables the change data feed');
        return withConnection(async (c) => {
          let note = '';
          if (enabledFrom.version > first.version) {
            try {
              await tableChangesSql(table.root, c, { startVersion: first.version });
              throw new Error(`reading from v${first.version}, before CDF was enabled, succeeded`);
            } catch (error) {
              if (!isTributaryError(error) || error.code !== 'DELTA_PROTOCOL') throw error;
              note = `; reading from v${first.version} (before enablement) is refused with DELTA_PROTOCOL`;
            }
          }
          try {
            const sql = await tableChangesSql(table.root, c, { startVersion: enabledFrom.version });
            const rows = Number((await c.runAndReadAll(`SELECT count(*) FROM (${sql})`)).getRowsJS()[0]?.[0]);
            return pass(
              `no expected change feed in the corpus; v${enabledFrom.version}..latest read (${rows} change rows)${note}`,
            );
          } catch (error) {
            const unreadable = lookup(UNREADABLE_DATA, table.name);
            if (unreadable) return skip(`change feed not read: ${unreadable}`);
            if (isTributaryError(error) && /disabled|not enabled/.test(error.message)) {
              return pass(
                `CDF was switched off later in the history; refused cleanly: ${error.message.slice(0, 160)}${note}`,
              );
            }
            throw error;
          }
        });
      },
    });
  }
  const ict = commits.flatMap((c) => {
    const first = text(c.file).split('\n')[0] ?? '';
    const m = /"inCommitTimestamp":(\d+)/.exec(first);
    return m ? [{ version: c.version, ict: Number(m[1]) }] : [];
  });
  if (ict.length > 0 && !table.name.includes('catalog_managed')) {
    cases.push({
      id: `time-travel ${table.name} (in-commit timestamps)`,
      kind: 'time-travel',
      table: table.name,
      run: async () => {
        // A monotonic run of ICTs is what the protocol guarantees; a fixture may break it on purpose (delta-rs's
        // cdc_ict_table sets v1's ICT a year back to prove CDF uses ICT, not commitInfo.timestamp).
        const monotonic = ict.every((x, i) => i === 0 || x.ict > (ict[i - 1] as { ict: number }).ict);
        for (const { version, ict: at } of ict) {
          const snapshot = await loadSnapshot(table.root, { version });
          if (snapshot.timestamp !== at)
            throw new Error(`v${version} reports timestamp ${snapshot.timestamp}, its ICT is ${at}`);
          if (!monotonic) continue;
          const exact = await loadSnapshot(table.root, { timestamp: new Date(at) });
          if (exact.version !== version)
            throw new Error(`timestamp ${at} resolved to v${exact.version}, expected v${version}`);
          const before = ict.find((x) => x.version === version - 1);
          if (before) {
            const earlier = await loadSnapshot(table.root, { timestamp: new Date(at - 1) });
            if (earlier.version !== version - 1) throw new Error(`${at - 1} resolved to v${earlier.version}`);
          }
        }
        let cdf = '';
        if (commits.some((c) => text(c.file).includes('"delta.enableChangeDataFeed":"true"'))) {
          const seen = await withConnection(async (c) => {
            const sql = await tableChangesSql(table.root, c, { startVersion: ict[0]?.version ?? 0 });
            const rows = await c.runAndReadAll(
              `SELECT DISTINCT _commit_version, epoch_ms(_commit_timestamp) FROM (${sql}) ORDER BY 1`,
            );
            return rows.getRowsJS().map((r) => [Number(r[0]), Number(r[1])] as const);
          });
          for (const [version, at] of seen) {
            const want = ict.find((x) => x.version === version)?.ict;
            if (want !== at)
              throw new Error(`change feed _commit_timestamp of v${version} is ${at}, its ICT is ${want}`);
          }
          cdf = `; the change feed's _commit_timestamp is the ICT for all ${seen.length} versions with changes`;
        }
        if (!monotonic) {
          return pass(
            `snapshot timestamps are the ICTs (the fixture's ICTs are deliberately non-monotonic, so lookup by timestamp is not checked)${cdf}`,
          );
        }
        return pass(
          `each of ${ict.length} versions found by its inCommitTimestamp (file mtimes ignored)${cdf}`,
        );
      },
    });
  }
  const hint = path.join(table.root, '_delta_log', '_last_checkpoint');
  if (existsSync(hint)) {
    cases.push({
      id: `last-checkpoint ${table.name}`,
      kind: 'last-checkpoint',
      table: table.name,
      run: async () => {
        const read = await readLastCheckpoint(path.dirname(hint));
        let snapshot: Snapshot | undefined;
        try {
          snapshot = await loadSnapshot(table.root);
        } catch (error) {
          if (!isTributaryError(error) || error.code !== 'DELTA_PROTOCOL') throw error;
        }
        const replay = snapshot
          ? `replay used ${snapshot.checkpointVersion === undefined ? 'no checkpoint' : `checkpoint v${snapshot.checkpointVersion}`}`
          : 'table refused for its reader features';
        if (read.ok) {
          const checked = read.hint.checksum ? 'checksum verified' : 'no checksum';
          return pass(`hint v${read.hint.version} (${checked}); ${replay}`);
        }
        if (!table.name.includes('corrupted-last-checkpoint'))
          throw new Error(`valid-looking hint rejected: ${read.reason}`);
        return pass(`corrupt hint ignored (${read.reason}); ${replay}`);
      },
    });
  }
  return cases;
}

// ---------------------------------------------------------------------------------------------------------------

const tables = existsSync(CORPUS) ? discoverTables() : [];
const cases = [
  ...tables.flatMap((t) => [...tableCases(t), ...logCases(t)]),
  ...(tables.length > 0 ? textCases() : []),
];
const results: Result[] = [];

function writeReport(dir: string): string {
  const count = (s: Status, kind?: string) =>
    results.filter((r) => r.status === s && (!kind || r.kind === kind)).length;
  const kinds = [...new Set(results.map((r) => r.kind))];
  const summary = `Delta conformance: ${results.length} cases — ${count('passed')} passed, ${count('failed')} failed, ${count('skipped')} skipped (${tables.length} tables)`;
  const json = {
    corpus: CORPUS,
    generatedAt: new Date().toISOString(),
    summary: {
      total: results.length,
      passed: count('passed'),
      failed: count('failed'),
      skipped: count('skipped'),
      tables: tables.length,
    },
    byKind: Object.fromEntries(
      kinds.map((k) => [
        k,
        { passed: count('passed', k), failed: count('failed', k), skipped: count('skipped', k) },
      ]),
    ),
    cases: [...results].sort((a, b) => a.id.localeCompare(b.id)),
  };
  writeFileSync(path.join(dir, 'conformance-report.json'), `${JSON.stringify(json, null, 2)}\n`);
  const md = [
    '# Delta conformance report',
    '',
    `Corpus: \`${CORPUS}\`. Generated ${json.generatedAt} by \`npm run conformance\`.`,
    '',
    `**${summary}**`,
    '',
    '| kind | passed | failed | skipped |',
    '| --- | --- | --- | --- |',
    ...kinds.map((k) => `| ${k} | ${count('passed', k)} | ${count('failed', k)} | ${count('skipped', k)} |`),
    '',
    ...(['failed', 'skipped', 'passed'] as const).flatMap((s) => {
      const rows = json.cases.filter((r) => r.status === s);
      if (rows.length === 0) return [];
      return [
        `## ${s} (${rows.length})`,
        '',
        '| case | note |',
        '| --- | --- |',
        ...rows.map((r) => `| ${r.id} | ${r.note.replaceAll('|', '\\|').replaceAll('\n', ' ')} |`),
        '',
      ];
    }),
  ].join('\n');
  writeFileSync(path.join(dir, 'conformance-report.md'), md);
  return summary;
}

describe.skipIf(cases.length === 0)('Delta conformance corpus', () => {
  afterAll(() => {
    const failed = results.filter((r) => r.status === 'failed');
    const summary = REPORT_DIR ? writeReport(REPORT_DIR) : undefined;
    console.log(
      [
        summary ??
          `Delta conformance: ${results.length} cases — ${results.length - failed.length - results.filter((r) => r.status === 'skipped').length} passed, ${failed.length} failed, ${results.filter((r) => r.status === 'skipped').length} skipped`,
        ...failed.map((r) => `  FAILED ${r.id}: ${r.note}`),
      ].join('\n'),
    );
  });

  it.each(cases.map((c) => [c.id, c] as const))('%s', async (_id, testCase) => {
    const started = Date.now();
    const record = (status: Status, note: string) =>
      results.push({
        id: testCase.id,
        kind: testCase.kind,
        table: testCase.table,
        status,
        note,
        ms: Date.now() - started,
      });
    try {
      const outcome = await testCase.run();
      record(outcome.status, outcome.note);
    } catch (error) {
      const message = isTributaryError(error) ? `${error.code}: ${error.message}` : messageOf(error);
      record('failed', message.slice(0, 600));
      throw error;
    }
  });
});
