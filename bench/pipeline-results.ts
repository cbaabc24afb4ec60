/**
 * Measuring and summarising helpers of the pipeline benchmarks: a timed body with the CPU of this process,
 * of the commands it ran (the CLI child, the source's client) and of the server; medians; and the row count
 * of a bronze table from its Delta log alone.
 */
import { Warehouse } from '../src/catalog/warehouse.js';
import { loadSnapshot } from '../src/delta/snapshot.js';
import { SqlSession } from '../src/engine/sql-session.js';
import type { BenchSource, TableRef, Workspace } from './pipeline-sources.js';
import { type Measured, measure, median, percentile, round } from './postgres-bench-support.js';

export type { Measured } from './postgres-bench-support.js';

export function measured(source: BenchSource, body: () => Promise<unknown>): Promise<Measured> {
  return measure(source.serverPid, body);
}

export interface Summary {
  readonly medianMs: number;
  readonly perSec: number;
  readonly runsMs: readonly number[];
  /** Cores kept busy (CPU seconds / wall seconds), medians. */
  readonly clientCores: number;
  readonly serverCores: number;
  /** Items per CPU second of the client alone, and of client + server. */
  readonly perClientCpuSecond: number;
  readonly perCpuSecond: number;
}

/**
 * Medians over runs of `items` each. `client` is whose CPU counts as the client's: `child` for a command this
 * process waited for (the CLI, mariadb, psql), `node` for this process.
 */
export function summarize(items: number, runs: readonly Measured[], client: 'child' | 'node'): Summary {
  const cpu = (r: Measured) => (client === 'child' ? r.childCpuS : r.nodeCpuS);
  const medianMs = median(runs.map((r) => r.ms));
  return {
    medianMs: Math.round(medianMs),
    perSec: Math.round((items / medianMs) * 1000),
    runsMs: runs.map((r) => Math.round(r.ms)),
    clientCores: round(median(runs.map((r) => cpu(r) / (r.ms / 1000)))),
    serverCores: round(median(runs.map((r) => r.serverCpuS / (r.ms / 1000)))),
    perClientCpuSecond: Math.round(median(runs.map((r) => items / cpu(r)))),
    perCpuSecond: Math.round(median(runs.map((r) => items / (cpu(r) + r.serverCpuS)))),
  };
}

/** Rows of a bronze table at its newest version: `numRecords` of every live file less its deleted rows. */
export async function bronzeRows(tableRoot: string): Promise<number> {
  const snapshot = await loadSnapshot(tableRoot);
  let rows = 0;
  for (const file of snapshot.files) {
    const stats = file.stats ? (JSON.parse(file.stats) as { numRecords?: number }) : {};
    rows += (stats.numRecords ?? Number.NaN) - (file.deletionVector?.cardinality ?? 0);
  }
  return rows;
}

/**
 * The bronze table at the pipeline's consistent cut (read as `tributary sql` reads it) against the source:
 * row count and `sum(a)`, so a lost insert, delete or update shows. Also the row count from the Delta log.
 */
export async function compareWithSource(
  source: BenchSource,
  ws: Workspace,
  table: TableRef,
): Promise<Record<string, unknown> & { equal: boolean }> {
  const expected = await source.checksum(table);
  await using session = await SqlSession.open(new Warehouse(ws.warehouse), { consistentCut: true });
  const result = await session.execute(`SELECT count(*) AS n, sum(a) AS s FROM ${ws.bronzeName(table)}`);
  const row = result.rows[0] ?? {};
  const bronze = { rows: Number(row['n']), sumA: Number(row['s']) };
  const fromLog = await bronzeRows(ws.bronzeRoot(table));
  const equal = bronze.rows === expected.rows && bronze.sumA === expected.sumA && fromLog === expected.rows;
  return { source: expected, bronze, bronzeRowsFromLog: fromLog, equal };
}

/** p50 / p99 / max of values, rounded. */
export function distribution(values: readonly number[]): { p50: number; p99: number; max: number } {
  return {
    p50: round(percentile(values, 50)),
    p99: round(percentile(values, 99)),
    max: round(values.reduce((a, b) => Math.max(a, b), Number.NEGATIVE_INFINITY)),
  };
}
