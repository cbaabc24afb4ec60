/**
 * Snapshot end to end: `tributary run p --once` on a fresh workspace reads a table of ten mixed columns from
 * the source, stages it and commits it to a bronze Delta table, against the source's own client reading the
 * same table into /dev/null (`mariadb --quick --batch`, or psql `COPY ... TO STDOUT`), run back to back in
 * alternating order. The Tributary time is the whole CLI process: Node start, preflight, snapshot, staging,
 * the Delta commit and the consistent cut.
 *
 * Usage: npm run bench -- pipeline-snapshot   (BENCH_SCALE=small, BENCH_RUNS, BENCH_LARGE_RUNS, BENCH_SOURCES)
 */
import {
  ANCHORS,
  logger,
  machine,
  machineCores,
  pipelineSizes,
  sourceKinds,
  versusAnchor,
  writeResult,
} from './pipeline-config.js';
import { bronzeRows, type Measured, measured, summarize } from './pipeline-results.js';
import { ensureTable, keepBronze, sharedSource } from './pipeline-shared.js';
import type { BenchSource, TableRef } from './pipeline-sources.js';
import { round } from './postgres-bench-support.js';
import { cliInfo, lastLogLineAt, logLineAt, runOnce } from './tributary-child.js';

const log = logger('pipeline-snapshot');
const TARGET_RATIO = 0.8;
const TARGET_RSS_MIB = 512;

export async function benchPipelineSnapshot(): Promise<Record<string, unknown>> {
  const sizes = pipelineSizes();
  const bySource: Record<string, unknown> = {};
  for (const kind of sourceKinds()) {
    const source = await sharedSource(kind);
    const tables = [];
    for (const size of sizes.snapshots) tables.push(await benchSize(source, size.rows, size.runs, size.note));
    bySource[kind] = { server: source.version, tables };
  }
  const result = {
    bench: 'pipeline-snapshot',
    scale: sizes.scale,
    machine: machine(),
    cli: cliInfo(),
    sources: bySource,
  };
  await writeResult('pipeline-snapshot', result);
  return result;
}

interface TributaryRun extends Measured {
  readonly peakRssMiB: number;
  readonly phasesMs: Record<string, number | null>;
}

async function benchSize(
  source: BenchSource,
  rows: number,
  runs: number,
  note: string | undefined,
): Promise<Record<string, unknown>> {
  const table: TableRef = { schema: 'snap', table: `t${rows}` };
  const loadMs = await ensureTable(source, table, rows);
  if (loadMs > 0) log(`${source.kind}: loaded ${rows} rows in ${Math.round(loadMs)} ms`);
  const limit: Measured[] = [];
  const ours: TributaryRun[] = [];
  for (let n = 0; n < runs; n++) {
    const sides = n % 2 === 0 ? (['limit', 'tributary'] as const) : (['tributary', 'limit'] as const);
    for (const side of sides) {
      if (side === 'limit') limit.push(await measured(source, () => source.readWithClient(table)));
      else ours.push(await snapshotOnce(source, table, rows, n === runs - 1));
    }
    log(
      `${source.kind} ${rows} rows, run ${n + 1}/${runs}: client ${Math.round(limit.at(-1)?.ms ?? 0)} ms, tributary ${Math.round(ours.at(-1)?.ms ?? 0)} ms (peak RSS ${ours.at(-1)?.peakRssMiB} MiB)`,
    );
  }
  const limitSummary = summarize(rows, limit, 'child');
  const oursSummary = summarize(rows, ours, 'child');
  const ratio = round(limitSummary.medianMs / oursSummary.medianMs);
  const peakRssMiB = Math.max(...ours.map((r) => r.peakRssMiB));
  return {
    rows,
    runs,
    ...(note ? { note } : runs < 3 ? { note: `${runs} run(s) per side (BENCH_RUNS)` } : {}),
    limitTool:
      source.kind === 'mariadb'
        ? 'mariadb --quick --batch -e "SELECT * FROM t" > /dev/null'
        : 'psql -c "COPY (SELECT * FROM t) TO STDOUT" > /dev/null',
    limit: limitSummary,
    tributary: { ...oursSummary, phasesMs: medianPhases(ours) },
    ratio,
    roundRatios: limit.map((l, i) => round(l.ms / (ours[i]?.ms ?? Number.NaN))),
    target: TARGET_RATIO,
    met: ratio >= TARGET_RATIO,
    perCore: [
      versusAnchor(oursSummary.perSec, ANCHORS.olakeFullLoad),
      versusAnchor(oursSummary.perSec, ANCHORS.debeziumFullLoad),
    ],
    machineCores: machineCores(),
    peakRssMiB,
    rssTargetMiB: TARGET_RSS_MIB,
    rssMet: peakRssMiB <= TARGET_RSS_MIB,
  };
}

/** One snapshot by the CLI into a fresh workspace; the last one is kept for the scale bench. */
async function snapshotOnce(
  source: BenchSource,
  table: TableRef,
  rows: number,
  keep: boolean,
): Promise<TributaryRun> {
  const ws = await source.newWorkspace([table]);
  try {
    let child: Awaited<ReturnType<typeof runOnce>> | undefined;
    const m = await measured(source, async () => {
      child = await runOnce(ws);
    });
    if (child === undefined) throw new Error('unreachable');
    const inBronze = await bronzeRows(ws.bronzeRoot(table));
    if (inBronze !== rows)
      throw new Error(`bronze holds ${inBronze} rows after the snapshot, expected ${rows}`);
    const started = await logLineAt(child, /INFO {2}snapshot of /);
    const staged = await lastLogLineAt(child, /INFO {2}snapshot: /);
    const applied = await logLineAt(child, /: \d+ commit\(s\)/);
    const span = (a: number | undefined, b: number | undefined) =>
      a === undefined || b === undefined ? null : Math.round(b - a);
    return {
      ...m,
      peakRssMiB: child.peakRssMiB,
      phasesMs: {
        startAndPreflight: span(0, started),
        readAndStage: span(started, staged),
        apply: span(staged, applied),
        finish: span(applied, child.wallMs),
      },
    };
  } finally {
    if (keep) await keepBronze(source.kind, { ws, table, rows });
    else await ws.dispose();
  }
}

function medianPhases(runs: readonly TributaryRun[]): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const key of Object.keys(runs[0]?.phasesMs ?? {})) {
    const values = runs.map((r) => r.phasesMs[key]).filter((v): v is number => typeof v === 'number');
    values.sort((a, b) => a - b);
    out[key] = values.length === 0 ? null : (values[Math.floor(values.length / 2)] as number);
  }
  return out;
}
