/**
 * Sizes, anchors and result files of the end-to-end pipeline benchmarks (`pipeline-*`).
 *
 * `BENCH_SCALE=small` shrinks every size so the whole suite validates in a few minutes; the default is the
 * full sizes of issue 7. A handful of environment variables override single knobs (see each getter).
 */

import { writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { runDiscarding } from './measure.js';

export type SourceKind = 'mariadb' | 'postgresql';

export interface PipelineSizes {
  readonly scale: 'small' | 'full';
  /** Snapshot tables: rows and how many runs each (a median needs 3; the largest may take fewer). */
  readonly snapshots: ReadonlyArray<{ readonly rows: number; readonly runs: number; readonly note?: string }>;
  /** Bronze sizes of the scale bench, smallest first. */
  readonly scaleRows: readonly number[];
  /** Changes applied per scale step, and steps per size and apply mode. */
  readonly scaleChanges: number;
  readonly scaleSteps: number;
  /** Rows preloaded into the CDC table (it keeps that size: inserts and deletes balance). */
  readonly cdcRows: number;
  /** Sustained CDC: seconds the generator runs flat out, runs, and concurrent generator connections. */
  readonly sustainedSeconds: number;
  readonly sustainedRuns: number;
  readonly lanes: number;
  /** Latency at a fixed rate: changes/s, seconds per run, runs. */
  readonly latencyRate: number;
  readonly latencySeconds: number;
  readonly latencyRuns: number;
  /** Backlog caught up by one `run --once` (peak RSS), and runs. */
  readonly catchUpChanges: number;
  readonly catchUpRuns: number;
}

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0)
    throw new Error(`${name} must be a positive number, not "${raw}"`);
  return value;
}

export function pipelineSizes(): PipelineSizes {
  const scale = process.env['BENCH_SCALE'] === 'small' ? 'small' : 'full';
  const small = scale === 'small';
  const runs = envNumber('BENCH_RUNS', small ? 2 : 3);
  return {
    scale,
    snapshots: small
      ? [
          { rows: 100_000, runs },
          { rows: 300_000, runs: 1 },
        ]
      : [
          { rows: 1_000_000, runs },
          {
            rows: 10_000_000,
            runs: envNumber('BENCH_LARGE_RUNS', 1),
            note: 'one run per side by default (BENCH_LARGE_RUNS): a Tributary run of this size takes minutes, so a median of 3 would push the suite past its time budget',
          },
        ],
    scaleRows: small ? [10_000, 100_000, 300_000] : [100_000, 1_000_000, 10_000_000],
    scaleChanges: envNumber('BENCH_SCALE_CHANGES', small ? 5_000 : 20_000),
    scaleSteps: envNumber('BENCH_SCALE_STEPS', 3),
    cdcRows: 100_000,
    sustainedSeconds: envNumber('BENCH_CDC_SECONDS', small ? 15 : 45),
    sustainedRuns: runs,
    lanes: 4,
    latencyRate: envNumber('BENCH_LATENCY_RATE', 1000),
    latencySeconds: envNumber('BENCH_LATENCY_SECONDS', small ? 10 : 20),
    latencyRuns: runs,
    catchUpChanges: envNumber('BENCH_CATCHUP_CHANGES', small ? 100_000 : 1_000_000),
    // One run: a backlog of 1M changes takes about two minutes to make and apply on 2 cores.
    catchUpRuns: envNumber('BENCH_CATCHUP_RUNS', 1),
  };
}

/** `BENCH_SOURCES=mariadb,postgresql` (the default: both). */
export function sourceKinds(): SourceKind[] {
  const raw = process.env['BENCH_SOURCES'] ?? 'mariadb,postgresql';
  const kinds = raw.split(',').map((s) => s.trim());
  for (const k of kinds) {
    if (k !== 'mariadb' && k !== 'postgresql') throw new Error(`BENCH_SOURCES: unknown source "${k}"`);
  }
  return kinds as SourceKind[];
}

/**
 * The anchors' own published figures, as issue 7 quotes them. Per core means per vCPU of the machine the
 * figure was taken on; Sequin's figure is quoted without its machine, so it has no per-core figure here.
 */
export const ANCHORS = {
  olakeCdc: { what: 'OLake MySQL→Iceberg CDC', perSec: 60_000, vcpus: 64 },
  olakeFullLoad: { what: 'OLake MySQL→Iceberg full load', perSec: 140_000, vcpus: 64 },
  debeziumCdc: { what: 'Debezium CDC (measured by OLake)', perSec: 14_000, vcpus: 64 },
  debeziumFullLoad: { what: 'Debezium full load (measured by OLake)', perSec: 14_000, vcpus: 64 },
  sequinCdc: { what: 'Sequin PostgreSQL CDC (p99 253 ms)', perSec: 50_000, vcpus: null },
} as const;

export interface Anchor {
  readonly what: string;
  readonly perSec: number;
  readonly vcpus: number | null;
}

/** Our rate per core of this machine (the source runs beside Tributary) against an anchor's per vCPU. */
export function versusAnchor(ourPerSec: number, anchor: Anchor): Record<string, unknown> {
  const oursPerCore = Math.round(ourPerSec / machineCores());
  if (anchor.vcpus === null) {
    return { anchor: anchor.what, anchorPerSec: anchor.perSec, oursPerCore, anchorPerCore: 'not published' };
  }
  const anchorPerCore = Math.round(anchor.perSec / anchor.vcpus);
  return {
    anchor: anchor.what,
    anchorPerCore,
    oursPerCore,
    ratio: Number((oursPerCore / anchorPerCore).toFixed(2)),
    met: oursPerCore > anchorPerCore,
  };
}

export function machineCores(): number {
  return cpus().length;
}

export function machine(): Record<string, unknown> {
  return {
    cpus: machineCores(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    date: new Date().toISOString(),
  };
}

/**
 * Writes bench/results/<name>.json, formatted by biome: `npm run lint` checks these files, and a results file
 * the suite just wrote must not fail it.
 */
export async function writeResult(name: string, result: unknown): Promise<void> {
  const path = join(process.cwd(), 'bench', 'results', `${name}.json`);
  await writeFile(path, `${formatJson(result)}\n`);
  const biome = join(process.cwd(), 'node_modules', '.bin', 'biome');
  await runDiscarding(biome, ['format', '--write', path], {}).catch((error: unknown) => {
    process.stderr.write(`[pipeline] could not format ${path} with biome: ${String(error)}\n`);
  });
}

export function formatJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    /\[\s+([-\d.,\s]*?)\s+\]/g,
    (_, items: string) => `[${items.split(/,\s+/).join(', ')}]`,
  );
}

export function logger(bench: string): (message: string) => void {
  return (message) => process.stderr.write(`[${bench}] ${message}\n`);
}
