/**
 * Conformance against the Spark/kernel/delta-rs-written tables in /work/shared/conformance/delta (see its
 * MANIFEST.md). Every table is opened; tables with expected results are also read through DuckDB and compared
 * row for row. A table must either open (and match), be refused with DELTA_PROTOCOL naming a feature, or — for
 * the corpus's negative cases — fail with the expected error code. Skipped when the corpus is absent.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { DuckDBConnection } from '@duckdb/node-api';
import { afterAll, describe, expect, it } from 'vitest';
import { type ErrorCode, isTributaryError, messageOf } from '../core/errors.js';
import { withConnection } from './duckdb.js';
import { scanSql } from './scan.js';
import { loadSnapshot } from './snapshot.js';

const CORPUS = '/work/shared/conformance/delta';

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

/** Comparisons known to fail for reasons outside the reader (documented in the corpus's DIGEST.md). */
const KNOWN_MISMATCHES: Record<string, string> = {
  'golden/data-reader-partition-values': 'expected/ was written with a TZ quirk (kernel-rs skips it too)',
};

interface Case {
  /** Relative to the corpus. */
  name: string;
  /** Directory that holds (or should hold) `_delta_log`. */
  root: string;
  /** version (or 'latest') → expected Parquet files. */
  expected: Map<number | 'latest', string[]>;
}

function parquetFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((n) => n.endsWith('.parquet') && !n.startsWith('.'))
    .map((n) => path.join(dir, n));
}

function discover(): Case[] {
  const cases: Case[] = [];
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
      const name = path.relative(CORPUS, path.basename(dir) === 'delta' ? parent : dir);
      cases.push({ name, root: dir, expected });
      return;
    }
    for (const n of names) {
      if (n.startsWith('.') || n === 'expected' || n === 'tools') continue;
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
    if (existsSync(root)) cases.push({ name: extra.replace(/\/delta$/, ''), root, expected: new Map() });
  }
  return cases.sort((a, b) => a.name.localeCompare(b.name));
}

function lookup<T>(table: Record<string, T>, name: string): T | undefined {
  for (const [suffix, value] of Object.entries(table)) if (name.endsWith(suffix)) return value;
  return undefined;
}

/** Rows as comparable text: timestamps as epoch µs (time zone independent), everything else VARCHAR. */
async function normalised(connection: DuckDBConnection, sql: string, columns?: string[]): Promise<string> {
  const described = await connection.runAndReadAll(`DESCRIBE ${sql}`);
  const rows = described.getRowsJS();
  const wanted = columns ?? rows.map((r) => String(r[0]));
  const types = new Map(rows.map((r) => [String(r[0]).toLowerCase(), String(r[1])]));
  const exprs = wanted.map((c) => {
    const type = types.get(c.toLowerCase());
    const id = `"${c.replaceAll('"', '""')}"`;
    if (type === undefined) return `'<missing>' AS ${id}`;
    if (/^TIMESTAMP/.test(type)) return `CAST(epoch_us(${id}) AS VARCHAR) AS ${id}`;
    return `CAST(${id} AS VARCHAR) AS ${id}`;
  });
  return `SELECT ${exprs.join(', ')} FROM (${sql})`;
}

async function compare(
  root: string,
  version: number | 'latest',
  expectedFiles: string[],
): Promise<string | null> {
  const snapshot = await loadSnapshot(root, version === 'latest' ? {} : { version });
  return withConnection(async (c) => {
    await c.run(`SET TimeZone = 'UTC'`);
    const expectedSql = `SELECT * FROM read_parquet([${expectedFiles.map((f) => `'${f.replaceAll("'", "''")}'`).join(', ')}])`;
    const expectedColumns = (await c.runAndReadAll(`DESCRIBE ${expectedSql}`))
      .getRowsJS()
      .map((r) => String(r[0]));
    const actual = await normalised(c, await scanSql(snapshot, c), expectedColumns);
    const expected = await normalised(c, expectedSql, expectedColumns);
    const count = async (sql: string): Promise<number> =>
      Number((await c.runAndReadAll(`SELECT count(*) FROM (${sql})`)).getRowsJS()[0]?.[0]);
    const extra = await count(`${actual} EXCEPT ALL ${expected}`);
    const missing = await count(`${expected} EXCEPT ALL ${actual}`);
    if (extra === 0 && missing === 0) return null;
    const sample = (await c.runAndReadAll(`(${actual} EXCEPT ALL ${expected}) LIMIT 2`)).getRowsJS();
    const sampleMissing = (await c.runAndReadAll(`(${expected} EXCEPT ALL ${actual}) LIMIT 2`)).getRowsJS();
    return `v${version}: ${extra} unexpected rows ${JSON.stringify(sample)}, ${missing} missing rows ${JSON.stringify(sampleMissing)}`;
  });
}

type Outcome = 'passed' | 'refused' | 'negative' | 'failed' | 'known';
const results: { name: string; outcome: Outcome; detail: string }[] = [];

const cases = existsSync(CORPUS) ? discover() : [];

describe.skipIf(cases.length === 0)('Delta conformance corpus', () => {
  afterAll(() => {
    const by = (o: Outcome) => results.filter((r) => r.outcome === o);
    const refusedBy = new Map<string, number>();
    for (const r of by('refused')) refusedBy.set(r.detail, (refusedBy.get(r.detail) ?? 0) + 1);
    const lines = [
      `Delta conformance: ${results.length} tables — passed ${by('passed').length} ` +
        `(compared with expected data: ${by('passed').filter((r) => r.detail === 'data').length}), ` +
        `negative cases failing as expected ${by('negative').length}, refused ${by('refused').length}, ` +
        `known mismatches ${by('known').length}, failed ${by('failed').length}`,
      ...[...refusedBy].sort((a, b) => b[1] - a[1]).map(([why, n]) => `  refused ${n}× ${why}`),
      ...by('known').map((r) => `  known: ${r.name}: ${r.detail}`),
      ...by('failed').map((r) => `  FAILED: ${r.name}: ${r.detail}`),
    ];
    console.log(lines.join('\n'));
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (name, testCase) => {
    const expectedError = lookup(EXPECTED_ERRORS, name);
    const known = lookup(KNOWN_MISMATCHES, name);
    let detail = 'opened';
    try {
      await loadSnapshot(testCase.root);
      for (const [version, files] of testCase.expected) {
        const mismatch = await compare(testCase.root, version, files);
        if (mismatch !== null) throw new Error(mismatch);
        detail = 'data';
      }
    } catch (error) {
      if (expectedError !== undefined && isTributaryError(error) && error.code === expectedError) {
        results.push({ name, outcome: 'negative', detail: error.code });
        return;
      }
      if (expectedError === undefined && isTributaryError(error) && error.code === 'DELTA_PROTOCOL') {
        const feature = /feature '([^']+)'/.exec(error.message)?.[1];
        expect(error.message.length).toBeGreaterThan(20);
        results.push({ name, outcome: 'refused', detail: feature ? `feature ${feature}` : error.message });
        return;
      }
      if (known !== undefined) {
        results.push({ name, outcome: 'known', detail: `${known} (${messageOf(error).slice(0, 200)})` });
        return;
      }
      const message = isTributaryError(error) ? `${error.code}: ${error.message}` : messageOf(error);
      results.push({ name, outcome: 'failed', detail: message.slice(0, 400) });
      throw error;
    }
    if (expectedError !== undefined) {
      results.push({ name, outcome: 'failed', detail: `opened, but ${expectedError} was expected` });
      expect.fail(`${name} opened, but ${expectedError} was expected`);
    }
    results.push({ name, outcome: 'passed', detail });
  });
});
