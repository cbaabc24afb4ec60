/**
 * The markdown tables of docs/benchmarks.md ("End to end"), rendered from the newest pipeline results in
 * bench/results/ into bench/results/pipeline.md, so the docs are filled from the files rather than by hand.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

type Json = Record<string, unknown>;

const RESULTS = join(process.cwd(), 'bench', 'results');

async function load(name: string): Promise<Json | undefined> {
  try {
    return JSON.parse(await readFile(join(RESULTS, `${name}.json`), 'utf8')) as Json;
  } catch {
    return undefined;
  }
}

/** A nested field, or undefined: the results are read as plain JSON. */
function at(value: unknown, ...path: Array<string | number>): unknown {
  let v = value;
  for (const p of path) v = v === null || typeof v !== 'object' ? undefined : (v as Json)[p];
  return v;
}

function n(value: unknown, digits = 0): string {
  return typeof value === 'number' && Number.isFinite(value)
    ? value.toLocaleString('en-US', { maximumFractionDigits: digits })
    : '—';
}

function met(value: unknown): string {
  return value === true ? 'met' : value === false ? 'missed' : '—';
}

function perCore(list: unknown): string {
  if (!Array.isArray(list)) return '—';
  return list
    .map((a) =>
      typeof at(a, 'anchorPerCore') === 'number'
        ? `${n(at(a, 'oursPerCore'))} vs ${n(at(a, 'anchorPerCore'))} (${String(at(a, 'anchor')).split(' ')[0]}: ${met(at(a, 'met'))})`
        : `${n(at(a, 'oursPerCore'))} vs ? (${String(at(a, 'anchor')).split(' ')[0]}: per core not published)`,
    )
    .join('; ');
}

function snapshotTable(r: Json): string[] {
  const lines = [
    '| source | rows | limit (same run) | Tributary | ratio (target ≥ 0.8) | rows/s per core vs OLake / Debezium | peak RSS (≤ 512 MiB) | runs |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const [source, s] of Object.entries((r['sources'] ?? {}) as Json)) {
    for (const t of (at(s, 'tables') ?? []) as unknown[]) {
      lines.push(
        `| ${source} | ${n(at(t, 'rows'))} | ${n(at(t, 'limit', 'perSec'))} rows/s | ${n(at(t, 'tributary', 'perSec'))} rows/s | **${n(at(t, 'ratio'), 2)}** (${met(at(t, 'met'))}) | ${perCore(at(t, 'perCore'))} | ${n(at(t, 'peakRssMiB'))} MiB (${met(at(t, 'rssMet'))}) | ${n(at(t, 'runs'))} |`,
      );
    }
  }
  return lines;
}

function cdcTables(r: Json): string[] {
  const sources = Object.entries((r['sources'] ?? {}) as Json);
  const lines = [
    '| source | generated | applied | applied / generated (target ≥ 1.0) | max lag, middle → last third | bounded | applied per core vs OLake / Debezium / Sequin | Tributary cores |',
    '|---|---|---|---|---|---|---|---|',
  ];
  for (const [source, s] of sources) {
    const v = at(s, 'sustained');
    lines.push(
      `| ${source} | ${n(at(v, 'generatedPerSec'))}/s | ${n(at(v, 'appliedPerSec'))}/s | **${n(at(v, 'ratio'), 2)}** (${met(at(v, 'met'))}) | ${n(at(v, 'middleThirdMaxLagMs'))} → ${n(at(v, 'lastThirdMaxLagMs'))} ms | ${at(v, 'lagBoundedInEveryRun') === true ? 'yes' : 'no'} | ${perCore(at(v, 'perCore'))} | ${n(at(v, 'cores', 'tributary'), 2)} |`,
    );
  }
  lines.push(
    '',
    '| source | load achieved | p50 (≤ 250 ms) | p99 (≤ 1 s) | max | cut moves every | round: start / capture+apply / finish |',
    '|---|---|---|---|---|---|---|',
  );
  for (const [source, s] of sources) {
    for (const [part, apply] of [
      ['latency', ''],
      ['latencyDeletionVectors', ', deletion vectors'],
    ] as const) {
      const l = at(s, part);
      // A part not run (BENCH_CDC_PARTS), or results from before the part existed.
      if (!(Number(at(l, 'runs')) > 0)) continue;
      lines.push(
        `| ${source}${apply} | ${n(at(l, 'achievedChangesPerSec'))} changes/s | **${n(at(l, 'p50Ms'))} ms** | **${n(at(l, 'p99Ms'))} ms** | ${n(at(l, 'maxMs'))} ms | ${n(at(l, 'cutMovesEveryMs'))} ms | ${n(at(l, 'roundPhasesMs', 'startMs'))} / ${n(at(l, 'roundPhasesMs', 'captureApplyMs'))} / ${n(at(l, 'roundPhasesMs', 'finishMs'))} ms |`,
      );
    }
  }
  lines.push(
    '',
    '| source | backlog | catch-up (`run --once`, whole process) | per core vs OLake / Debezium | peak RSS (≤ 512 MiB) | bronze = source |',
    '|---|---|---|---|---|---|',
  );
  for (const [source, s] of sources) {
    const c = at(s, 'catchUp');
    lines.push(
      `| ${source} | ${n(at(c, 'changes'))} changes | ${n(at(c, 'changesPerSec'))} changes/s | ${perCore(at(c, 'perCore'))} | ${n(at(c, 'peakRssMiB'))} MiB (${met(at(c, 'rssMet'))}) | ${at(s, 'consistency', 'equal') === true ? 'yes' : 'NO'} |`,
    );
  }
  return lines;
}

function scaleTable(r: Json): string[] {
  const lines: string[] = [];
  for (const [source, s] of Object.entries((r['sources'] ?? {}) as Json)) {
    const sizes = (at(s, 'sizes') ?? []) as unknown[];
    if (lines.length === 0) {
      lines.push(
        `| source | apply | ${sizes.map((p) => `${n(at(p, 'rows'))} rows`).join(' | ')} | largest / smallest (target ≤ 2) | bronze = source |`,
        `|---|---|${sizes.map(() => '---|').join('')}---|---|`,
      );
    }
    for (const mode of ['copy-on-write', 'deletion-vectors']) {
      lines.push(
        `| ${source} | ${mode} | ${sizes.map((p) => `${n(at(p, 'modes', mode, 'usPerChange'), 1)} µs`).join(' | ')} | **${n(at(s, 'flatness', mode, 'ratio'), 2)}** (${met(at(s, 'flatness', mode, 'met'))}) | ${sizes.every((p) => at(p, 'consistency', 'equal') === true) ? 'yes' : 'NO'} |`,
      );
    }
  }
  return lines;
}

/** Writes bench/results/pipeline.md from whichever pipeline results exist; returns its path. */
export async function writePipelineReport(): Promise<string> {
  const [snapshot, cdc, scale] = await Promise.all([
    load('pipeline-snapshot'),
    load('pipeline-cdc'),
    load('pipeline-scale'),
  ]);
  const machine = at(snapshot ?? cdc ?? scale, 'machine');
  const parts = [
    `Machine: ${n(at(machine, 'cpus'))} vCPU (${String(at(machine, 'cpuModel'))}), ${n(at(machine, 'memoryGiB'))} GiB, Node ${String(at(machine, 'node'))}; ${String(at(machine, 'date'))}.`,
  ];
  if (snapshot)
    parts.push('', `### Snapshot (scale: ${String(snapshot['scale'])})`, '', ...snapshotTable(snapshot));
  if (cdc) parts.push('', `### CDC (scale: ${String(cdc['scale'])})`, '', ...cdcTables(cdc));
  if (scale) parts.push('', `### Scale (scale: ${String(scale['scale'])})`, '', ...scaleTable(scale));
  const path = join(RESULTS, 'pipeline.md');
  await writeFile(path, `${parts.join('\n')}\n`);
  return path;
}
