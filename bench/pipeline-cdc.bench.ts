/**
 * CDC end to end through `tributary run` (continuous, `--interval 0`: rounds back to back), on a table of
 * 100,000 rows with ten mixed columns, driven by the lane workload (workload.ts):
 *
 * - sustained: the generator runs flat out on 4 connections for BENCH_CDC_SECONDS while the pipeline
 *   follows; every second a sample records generated and applied changes and the lag (the newest source
 *   commit against the newest commit visible at the consistent cut). Rates are taken over the last two thirds
 *   of the window (steady state), and the lag is bounded when the last third's maximum stays within 1.25× the
 *   middle third's (plus 0.5 s of slack for one slow round): a lag that grows linearly gives 1.5×;
 * - latency: one connection at a fixed BENCH_LATENCY_RATE changes/s; per transaction, from its COMMIT's
 *   acknowledgement to the first read at the consistent cut that shows it (cut-probe.ts);
 * - catch-up: BENCH_CATCHUP_CHANGES changes made while no pipeline runs, then one `run --once` catches up
 *   (throughput and the CLI's peak RSS).
 *
 * Usage: npm run bench -- pipeline-cdc
 *   BENCH_SCALE=small  BENCH_RUNS  BENCH_CDC_SECONDS  BENCH_LATENCY_RATE  BENCH_LATENCY_SECONDS
 *   BENCH_CATCHUP_CHANGES  BENCH_CATCHUP_RUNS  BENCH_CDC_INTERVAL (seconds, 0)  BENCH_SOURCES
 */

import { readFile } from 'node:fs/promises';
import { ProgressProbe, type Sighting } from './cut-probe.js';
import {
  ANCHORS,
  logger,
  machine,
  machineCores,
  type PipelineSizes,
  pipelineSizes,
  sourceKinds,
  versusAnchor,
  writeResult,
} from './pipeline-config.js';
import { compareWithSource, distribution, type Measured, measured } from './pipeline-results.js';
import { ensureSchema, ensureTable, sharedSource } from './pipeline-shared.js';
import type { BenchSource, TableRef, Workspace } from './pipeline-sources.js';
import { median, round, sleep } from './postgres-bench-support.js';
import { type ChildResult, cliInfo, runOnce, runSql, spawnTributary } from './tributary-child.js';
import { CHANGES_PER_TX, type Generated, LaneWorkload } from './workload.js';

const log = logger('pipeline-cdc');
/** How often the probe reads the cut file; it queries bronze only when the cut moved. */
const POLL_MS = 10;
const DRAIN_TIMEOUT_MS = 300_000;
const TARGET = { appliedOverGenerated: 1.0, latencyP50Ms: 250, latencyP99Ms: 1000, rssMiB: 512 };
const WORKLOAD: TableRef = { schema: 'cdc', table: 'workload' };
const PROGRESS: TableRef = { schema: 'cdc', table: 'progress' };

interface Context {
  readonly source: BenchSource;
  readonly ws: Workspace;
  readonly probe: ProgressProbe;
  readonly workload: LaneWorkload;
  readonly sizes: PipelineSizes;
}

export async function benchPipelineCdc(): Promise<Record<string, unknown>> {
  const sizes = pipelineSizes();
  const bySource: Record<string, unknown> = {};
  for (const kind of sourceKinds()) bySource[kind] = await benchSource(await sharedSource(kind), sizes);
  const result = {
    bench: 'pipeline-cdc',
    scale: sizes.scale,
    machine: machine(),
    cli: cliInfo(),
    pipeline: `tributary run p --interval ${interval()} (continuous)`,
    transaction: `${CHANGES_PER_TX} changes: 3 inserts, 3 updates, 3 deletes, 1 progress-row update; one round trip`,
    tableRows: sizes.cdcRows,
    sources: bySource,
  };
  await writeResult('pipeline-cdc', result);
  return result;
}

function interval(): number {
  return Number(process.env['BENCH_CDC_INTERVAL'] ?? 0);
}

async function benchSource(source: BenchSource, sizes: PipelineSizes): Promise<Record<string, unknown>> {
  await ensureSchema(source, WORKLOAD.schema);
  await ensureTable(source, WORKLOAD, sizes.cdcRows);
  await source.createProgressTable(PROGRESS, sizes.lanes);
  const ws = await source.newWorkspace([WORKLOAD, PROGRESS]);
  const workload = new LaneWorkload(source, WORKLOAD, PROGRESS, sizes.lanes, sizes.cdcRows);
  let probe: ProgressProbe | undefined;
  try {
    await runOnce(ws);
    probe = await ProgressProbe.open(ws, PROGRESS, sizes.lanes);
    const c: Context = { source, ws, probe, workload, sizes };
    const label = `${source.kind}`;
    const parts = cdcParts();
    const sustained = await repeat(
      parts.has('sustained') ? sizes.sustainedRuns : 0,
      `${label} sustained`,
      () => sustainedRun(c),
      describeSustained,
    );
    const latency = await repeat(
      parts.has('latency') ? sizes.latencyRuns : 0,
      `${label} latency`,
      () => latencyRun(c),
      (r) => `p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, max ${r.latencyMs.max} ms`,
    );
    const catchUp = await repeat(
      parts.has('catchup') ? sizes.catchUpRuns : 0,
      `${label} catch-up`,
      () => catchUpRun(c),
      (r) => `${r.changesPerSec} changes/s, peak RSS ${r.peakRssMiB} MiB`,
    );
    // Last, since it changes the tables: the same latency runs with merge-on-read apply.
    if (parts.has('latency-dv')) {
      for (const t of [WORKLOAD, PROGRESS]) {
        await runSql(
          ws,
          `ALTER TABLE ${ws.bronzeName(t)} SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')`,
        );
      }
    }
    const latencyDv = await repeat(
      parts.has('latency-dv') ? sizes.latencyRuns : 0,
      `${label} latency, deletion vectors`,
      () => latencyRun(c),
      (r) => `p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, max ${r.latencyMs.max} ms`,
    );
    return {
      server: source.version,
      sustained: summarizeSustained(sustained),
      latency: summarizeLatency(latency, sizes),
      catchUp: summarizeCatchUp(catchUp),
      latencyDeletionVectors: summarizeLatency(latencyDv, sizes),
      consistency: await checkConsistency(c),
    };
  } finally {
    await probe?.close();
    await workload.close();
    await ws.dispose();
  }
}

/**
 * `BENCH_CDC_PARTS=latency` (a comma list of sustained, latency, catchup, latency-dv; default all) runs only
 * those. latency-dv is the latency part again after the bronze tables turn on deletion vectors.
 */
function cdcParts(): Set<string> {
  const all = ['sustained', 'latency', 'catchup', 'latency-dv'];
  const parts = (process.env['BENCH_CDC_PARTS'] ?? all.join(',')).split(',').map((p) => p.trim());
  for (const p of parts) if (!all.includes(p)) throw new Error(`BENCH_CDC_PARTS: unknown part "${p}"`);
  return new Set(parts);
}

async function repeat<T>(
  runs: number,
  what: string,
  body: () => Promise<T>,
  describe: (r: T) => string,
): Promise<T[]> {
  const results: T[] = [];
  for (let n = 0; n < runs; n++) {
    const r = await body();
    results.push(r);
    log(`${what} ${n + 1}/${runs}: ${describe(r)}`);
  }
  return results;
}

// ---------------------------------------------------------------------------------------------------------
// A continuous pipeline around a body

interface Continuous<T> {
  readonly value: T;
  readonly child: ChildResult;
  readonly measured: Measured;
}

/**
 * Starts `tributary run p` (continuous), waits for its first round, runs `body` with the probe polling, then
 * stops the pipeline with SIGTERM. CPU figures cover the pipeline's whole life.
 */
async function continuous<T>(c: Context, body: () => Promise<T>): Promise<Continuous<T>> {
  const before = await c.probe.cutText();
  let value: T | undefined;
  let child: ChildResult | undefined;
  const m = await measured(c.source, async () => {
    const pipeline = await spawnTributary(c.ws, ['run', 'p', '--interval', String(interval())]);
    try {
      if (!(await c.probe.waitForRound(before, 60_000))) throw new Error('the pipeline completed no round');
      c.probe.start(POLL_MS);
      value = await body();
    } finally {
      await c.probe.stop();
      child = await pipeline.stop();
    }
  });
  if (child === undefined || value === undefined) throw new Error('unreachable');
  if (child.code !== 0) log(`warning: the continuous pipeline exited ${child.code ?? child.signal}`);
  return { value, child, measured: m };
}

/** Generator transactions visible at the cut since `base`, over all lanes. */
function visibleSince(c: Context, base: readonly number[]): number {
  const committed = c.workload.committed();
  return c.probe.seqs.reduce(
    (n, seq, l) => n + Math.max(0, Math.min(seq, committed[l] ?? 0) - (base[l] ?? 0)),
    0,
  );
}

/**
 * The newest source commit against the newest commit visible at the cut, ms; 0 when all are visible. Before
 * anything of this run is visible, the lag runs from `since` (just before its first transaction).
 */
function lagMs(c: Context, base: readonly number[], since: number): number {
  const committed = c.workload.committed();
  const seqs = c.probe.seqs;
  if (committed.every((n, l) => (seqs[l] ?? 0) >= n)) return 0;
  let applied = since;
  seqs.forEach((seq, l) => {
    const at = seq > (base[l] ?? 0) ? c.workload.commitAt(l, seq) : undefined;
    if (at !== undefined) applied = Math.max(applied, at);
  });
  return Math.max(0, c.workload.lastCommitAt - applied);
}

/** Waits until every transaction made so far is visible at the cut; returns how long that took. */
async function drain(c: Context): Promise<number> {
  const start = performance.now();
  while (
    visibleSince(
      c,
      c.workload.committed().map(() => 0),
    ) < total(c.workload.committed())
  ) {
    if (performance.now() - start > DRAIN_TIMEOUT_MS)
      throw new Error('the pipeline did not catch up in time');
    await sleep(POLL_MS);
  }
  return performance.now() - start;
}

function total(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

// ---------------------------------------------------------------------------------------------------------
// Sustained

interface LagSample {
  /** Seconds since the generator started. */
  readonly t: number;
  readonly generated: number;
  readonly applied: number;
  readonly lagMs: number;
}

interface SustainedRun {
  readonly generated: Generated;
  readonly drainMs: number;
  readonly samples: readonly LagSample[];
  readonly generatedPerSec: number;
  readonly appliedPerSec: number;
  readonly ratio: number;
  readonly middleThirdMaxLagMs: number;
  readonly lastThirdMaxLagMs: number;
  readonly bounded: boolean;
  readonly tributaryCores: number;
  readonly serverCores: number;
  readonly benchCores: number;
  readonly peakRssMiB: number;
  readonly roundsPerSec: number;
  readonly roundPhasesMs: RoundPhases | null;
}

async function sustainedRun(c: Context): Promise<SustainedRun> {
  const seconds = c.sizes.sustainedSeconds;
  const base = c.workload.committed();
  const samples: LagSample[] = [];
  let startAt = 0;
  const sample = () => {
    samples.push({
      t: round((performance.now() - startAt) / 1000, 2),
      generated: (total(c.workload.committed()) - total(base)) * CHANGES_PER_TX,
      applied: visibleSince(c, base) * CHANGES_PER_TX,
      lagMs: Math.round(lagMs(c, base, startAt)),
    });
  };
  const sightingsBefore = c.probe.sightings.length;
  const run = await continuous(c, async () => {
    startAt = performance.now();
    const generated = await c.workload.generate({ lanes: c.sizes.lanes, seconds, onTick: sample });
    sample();
    return { generated, drainMs: await drain(c) };
  });
  const { generated, drainMs } = run.value;
  const steady = steadyRates(samples, seconds);
  const lagIn = (from: number, to: number) =>
    Math.max(0, ...samples.filter((s) => s.t >= from && s.t < to).map((s) => s.lagMs));
  const middle = lagIn(seconds / 3, (2 * seconds) / 3);
  const last = lagIn((2 * seconds) / 3, seconds + 1);
  const wall = run.measured.ms / 1000;
  return {
    generated,
    drainMs: Math.round(drainMs),
    samples,
    ...steady,
    middleThirdMaxLagMs: middle,
    lastThirdMaxLagMs: last,
    bounded: last <= 1.25 * middle + 500,
    tributaryCores: round(run.measured.childCpuS / wall),
    serverCores: round(run.measured.serverCpuS / wall),
    benchCores: round(run.measured.nodeCpuS / wall),
    peakRssMiB: run.child.peakRssMiB,
    roundPhasesMs: await roundPhases(run.child, c.probe.sightings.slice(sightingsBefore)),
    roundsPerSec: round(
      (c.probe.sightings.length - sightingsBefore) /
        ((generated.endAt - generated.startAt) / 1000 + drainMs / 1000),
      1,
    ),
  };
}

/** Generated and applied changes/s over the last two thirds of the window, and their ratio. */
function steadyRates(samples: readonly LagSample[], seconds: number) {
  const from = samples.find((s) => s.t >= seconds / 3) ?? samples[0];
  const to = samples.at(-1);
  if (!from || !to || to.t <= from.t) return { generatedPerSec: 0, appliedPerSec: 0, ratio: 0 };
  const span = to.t - from.t;
  const generatedPerSec = Math.round((to.generated - from.generated) / span);
  const appliedPerSec = Math.round((to.applied - from.applied) / span);
  return { generatedPerSec, appliedPerSec, ratio: round(appliedPerSec / generatedPerSec) };
}

function describeSustained(r: SustainedRun): string {
  return `generated ${r.generatedPerSec}/s, applied ${r.appliedPerSec}/s (ratio ${r.ratio}), lag max ${r.middleThirdMaxLagMs} → ${r.lastThirdMaxLagMs} ms (${r.bounded ? 'bounded' : 'growing'}), drained in ${r.drainMs} ms, tributary ${r.tributaryCores} cores`;
}

function summarizeSustained(runs: readonly SustainedRun[]): Record<string, unknown> {
  const pick = (f: (r: SustainedRun) => number) => median(runs.map(f));
  const applied = pick((r) => r.appliedPerSec);
  const ratio = round(pick((r) => r.ratio));
  return {
    generator: 'flat out on 4 connections',
    seconds: runs[0] ? round((runs[0].generated.endAt - runs[0].generated.startAt) / 1000, 1) : 0,
    runs: runs.length,
    generatedPerSec: pick((r) => r.generatedPerSec),
    appliedPerSec: applied,
    ratio,
    target: TARGET.appliedOverGenerated,
    met: ratio >= TARGET.appliedOverGenerated && runs.every((r) => r.bounded),
    lagBoundedInEveryRun: runs.every((r) => r.bounded),
    middleThirdMaxLagMs: pick((r) => r.middleThirdMaxLagMs),
    lastThirdMaxLagMs: pick((r) => r.lastThirdMaxLagMs),
    drainAfterGeneratorMs: pick((r) => r.drainMs),
    roundsPerSec: pick((r) => r.roundsPerSec),
    roundPhasesMs: medianPhases(runs.map((r) => r.roundPhasesMs)),
    cores: {
      tributary: pick((r) => r.tributaryCores),
      server: pick((r) => r.serverCores),
      generatorAndProbe: pick((r) => r.benchCores),
    },
    appliedPerTributaryCpuSecond: Math.round(applied / pick((r) => r.tributaryCores)),
    perCore: [ANCHORS.olakeCdc, ANCHORS.debeziumCdc, ANCHORS.sequinCdc].map((a) => versusAnchor(applied, a)),
    machineCores: machineCores(),
    peakRssMiB: Math.max(...runs.map((r) => r.peakRssMiB)),
    // The median run's lag over time, one sample a second.
    lagOverTime: runs
      .slice()
      .sort((a, b) => a.appliedPerSec - b.appliedPerSec)
      [Math.floor(runs.length / 2)]?.samples.map((s) => [s.t, s.generated, s.applied, s.lagMs]),
    lagOverTimeColumns: ['seconds', 'generated', 'applied', 'lagMs'],
  };
}

// ---------------------------------------------------------------------------------------------------------
// Latency

interface LatencyRun {
  readonly changesPerSec: number;
  readonly transactions: number;
  readonly latencyMs: { p50: number; p99: number; max: number };
  readonly queryMs: number;
  readonly cutIntervalMs: number;
  readonly tributaryCores: number;
  readonly roundPhasesMs: RoundPhases | null;
}

async function latencyRun(c: Context): Promise<LatencyRun> {
  const base = c.workload.committed()[0] ?? 0;
  const firstSighting = c.probe.sightings.length;
  const queriesBefore = c.probe.queryMs.length;
  const run = await continuous(c, async () => {
    const generated = await c.workload.generate({
      lanes: 1,
      seconds: c.sizes.latencySeconds,
      rate: c.sizes.latencyRate,
    });
    await drain(c);
    return generated;
  });
  const sightings = c.probe.sightings.slice(firstSighting);
  const latencies: number[] = [];
  let s = 0;
  const last = c.workload.committed()[0] ?? 0;
  for (let seq = base + 1; seq <= last; seq++) {
    while (s < sightings.length && (sightings[s]?.seqs[0] ?? 0) < seq) s++;
    const seen = sightings[s];
    const committedAt = c.workload.commitAt(0, seq);
    if (!seen || committedAt === undefined) throw new Error(`transaction ${seq} was never seen at the cut`);
    latencies.push(seen.at - committedAt);
  }
  const gaps = sightings.slice(1).map((x, i) => x.at - (sightings[i] as { at: number }).at);
  const g = run.value;
  return {
    changesPerSec: Math.round((g.changes / (g.endAt - g.startAt)) * 1000),
    transactions: g.transactions,
    latencyMs: distribution(latencies),
    queryMs: round(median(c.probe.queryMs.slice(queriesBefore))),
    cutIntervalMs: round(median(gaps)),
    tributaryCores: round(run.measured.childCpuS / (run.measured.ms / 1000)),
    roundPhasesMs: await roundPhases(run.child, sightings),
  };
}

function summarizeLatency(runs: readonly LatencyRun[], sizes: PipelineSizes): Record<string, unknown> {
  const pick = (f: (r: LatencyRun) => number) => round(median(runs.map(f)));
  const p50 = pick((r) => r.latencyMs.p50);
  const p99 = pick((r) => r.latencyMs.p99);
  return {
    load: `${sizes.latencyRate} changes/s on one connection (open loop), ${sizes.latencySeconds} s a run`,
    method: `commit acknowledged → first in-process SqlSession read at the consistent cut showing it (cut file polled every ${POLL_MS} ms, bronze queried when the cut moves)`,
    runs: runs.length,
    achievedChangesPerSec: pick((r) => r.changesPerSec),
    transactionsPerRun: pick((r) => r.transactions),
    p50Ms: p50,
    p99Ms: p99,
    maxMs: pick((r) => r.latencyMs.max),
    worstMaxMs: Math.max(...runs.map((r) => r.latencyMs.max)),
    target: { p50Ms: TARGET.latencyP50Ms, p99Ms: TARGET.latencyP99Ms },
    met: p50 <= TARGET.latencyP50Ms && p99 <= TARGET.latencyP99Ms,
    readerQueryMs: pick((r) => r.queryMs),
    cutMovesEveryMs: pick((r) => r.cutIntervalMs),
    tributaryCores: pick((r) => r.tributaryCores),
    roundPhasesMs: medianPhases(runs.map((r) => r.roundPhasesMs)),
    roundPhasesNote:
      'per busy round, from the CLI log and the cut file: previous cut written → "catching up" logged (events row, source connection, DuckDB, head, table shapes, preflight); → last table commit (capture and apply); → cut written (retention, cut)',
    perRun: runs.map((r) => r.latencyMs),
  };
}

interface RoundPhases {
  readonly rounds: number;
  readonly startMs: number;
  readonly captureApplyMs: number;
  readonly finishMs: number;
}

/**
 * Where a busy round's time goes, from outside: the CLI logs "catching up" once the round has connected and
 * passed preflight, and a line per table when it committed; the cut file records when the round ended.
 */
async function roundPhases(child: ChildResult, sightings: readonly Sighting[]): Promise<RoundPhases | null> {
  const lines = (await readFile(child.stderrPath, 'utf8')).split('\n');
  const cuts = sightings.map((s) => s.recordedAt).filter(Number.isFinite);
  const start: number[] = [];
  const captureApply: number[] = [];
  const finish: number[] = [];
  let begun: number | undefined;
  let lastCommit: number | undefined;
  const close = () => {
    if (begun === undefined || lastCommit === undefined) return;
    const b = begun;
    const c = lastCommit;
    const before = cuts.filter((t) => t <= b).at(-1);
    const after = cuts.find((t) => t >= c);
    if (before === undefined || after === undefined) return;
    start.push(b - before);
    captureApply.push(c - b);
    finish.push(after - c);
  };
  for (const line of lines) {
    const at = Date.parse(line.slice(0, 24));
    if (!Number.isFinite(at)) continue;
    if (/ catching up to /.test(line)) {
      close();
      begun = at;
      lastCommit = undefined;
    } else if (/: [1-9]\d* commit\(s\)/.test(line)) {
      lastCommit = at;
    }
  }
  close();
  if (start.length === 0) return null;
  return {
    rounds: start.length,
    startMs: round(median(start)),
    captureApplyMs: round(median(captureApply)),
    finishMs: round(median(finish)),
  };
}

function medianPhases(phases: ReadonlyArray<RoundPhases | null>): RoundPhases | null {
  const known = phases.filter((p): p is RoundPhases => p !== null);
  if (known.length === 0) return null;
  return {
    rounds: Math.round(median(known.map((p) => p.rounds))),
    startMs: round(median(known.map((p) => p.startMs))),
    captureApplyMs: round(median(known.map((p) => p.captureApplyMs))),
    finishMs: round(median(known.map((p) => p.finishMs))),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Catch-up

interface CatchUpRun {
  readonly changes: number;
  readonly generatedPerSec: number;
  readonly wallMs: number;
  readonly changesPerSec: number;
  readonly tributaryCores: number;
  readonly peakRssMiB: number;
}

async function catchUpRun(c: Context): Promise<CatchUpRun> {
  const generated = await c.workload.generate({ lanes: c.sizes.lanes, changes: c.sizes.catchUpChanges });
  let child: ChildResult | undefined;
  const m = await measured(c.source, async () => {
    child = await runOnce(c.ws);
  });
  if (child === undefined) throw new Error('unreachable');
  await c.probe.poll();
  if (
    visibleSince(
      c,
      c.workload.committed().map(() => 0),
    ) !== total(c.workload.committed())
  ) {
    throw new Error('the catch-up run left changes unapplied');
  }
  return {
    changes: generated.changes,
    generatedPerSec: Math.round((generated.changes / (generated.endAt - generated.startAt)) * 1000),
    wallMs: Math.round(child.wallMs),
    changesPerSec: Math.round((generated.changes / child.wallMs) * 1000),
    tributaryCores: round(m.childCpuS / (m.ms / 1000)),
    peakRssMiB: child.peakRssMiB,
  };
}

function summarizeCatchUp(runs: readonly CatchUpRun[]): Record<string, unknown> {
  const peak = Math.max(...runs.map((r) => r.peakRssMiB));
  const perSec = median(runs.map((r) => r.changesPerSec));
  return {
    changes: runs[0]?.changes,
    runs: runs.length,
    what: 'backlog made while no pipeline ran, then one `tributary run p --once` (whole process)',
    generatedPerSec: median(runs.map((r) => r.generatedPerSec)),
    changesPerSec: perSec,
    wallMs: median(runs.map((r) => r.wallMs)),
    tributaryCores: median(runs.map((r) => r.tributaryCores)),
    perCore: [ANCHORS.olakeCdc, ANCHORS.debeziumCdc].map((a) => versusAnchor(perSec, a)),
    peakRssMiB: peak,
    rssTargetMiB: TARGET.rssMiB,
    rssMet: peak <= TARGET.rssMiB,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Consistency

async function checkConsistency(c: Context): Promise<Record<string, unknown>> {
  const result = await compareWithSource(c.source, c.ws, WORKLOAD);
  if (!result.equal)
    log(`MISMATCH: ${c.source.kind}: bronze differs from the source: ${JSON.stringify(result)}`);
  return result;
}
