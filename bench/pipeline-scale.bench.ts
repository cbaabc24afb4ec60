/**
 * Cost per applied change as the bronze table grows: for each size (100k, 1M, 10M rows), batches of changes
 * (transactions of 300 inserts, 400 updates and 300 deletes; updated and deleted keys uniformly random over the
 * whole table, the worst case for file pruning) are made at the source, then `tributary run p --once` captures
 * and applies them, and an idle run follows. The cost of a change is the run's capture and apply (from its log)
 * above the idle run's, per change (the whole process's time above the idle run's is reported too); it is taken
 * with the default copy-on-write apply, then again after `ALTER TABLE ... SET TBLPROPERTIES
 * ('delta.enableDeletionVectors' = 'true')` (merge-on-read). Target: the largest size within 2× the smallest.
 *
 * A bronze table the snapshot bench left in this process is reused; otherwise the table is loaded and
 * snapshotted here.
 *
 * Usage: npm run bench -- pipeline-scale   (BENCH_SCALE=small, BENCH_SCALE_CHANGES, BENCH_SCALE_STEPS)
 */
import { logger, machine, pipelineSizes, sourceKinds, writeResult } from './pipeline-config.js';
import { compareWithSource, measured } from './pipeline-results.js';
import { ensureTable, type KeptBronze, sharedSource, takeBronze } from './pipeline-shared.js';
import type { BenchSource, TableRef } from './pipeline-sources.js';
import { median, round } from './postgres-bench-support.js';
import { type ChildResult, cliInfo, logLineAt, runOnce, runSql } from './tributary-child.js';

const log = logger('pipeline-scale');
const TARGET_FLATNESS = 2;
const TX_CHANGES = { inserts: 300, updates: 400, deletes: 300 };
const MODES = ['copy-on-write', 'deletion-vectors'] as const;
type Mode = (typeof MODES)[number];

export async function benchPipelineScale(): Promise<Record<string, unknown>> {
  const sizes = pipelineSizes();
  const bySource: Record<string, unknown> = {};
  for (const kind of sourceKinds()) {
    const source = await sharedSource(kind);
    const points: ScalePoint[] = [];
    for (const rows of sizes.scaleRows) {
      points.push(await benchSize(source, rows, sizes.scaleChanges, sizes.scaleSteps));
    }
    bySource[kind] = { server: source.version, sizes: points, flatness: flatness(points) };
  }
  const result = {
    bench: 'pipeline-scale',
    scale: sizes.scale,
    machine: machine(),
    cli: cliInfo(),
    changesPerStep: sizes.scaleChanges,
    steps: sizes.scaleSteps,
    transaction: `${TX_CHANGES.inserts} inserts, ${TX_CHANGES.updates} updates, ${TX_CHANGES.deletes} deletes; keys uniformly random`,
    sources: bySource,
  };
  await writeResult('pipeline-scale', result);
  return result;
}

interface ScalePoint {
  readonly rows: number;
  readonly modes: Record<Mode, ModeResult>;
  /** Bronze at the cut against the source after the last step (a correctness check, not a timing). */
  readonly consistency: Record<string, unknown> & { readonly equal: boolean };
}

interface ModeResult {
  /**
   * Capture and apply inside the run (its log: "catching up" to the table's commit line) above an idle run's,
   * per change: the figure the target is about, free of the process start's noise.
   */
  readonly usPerChange: number;
  /** The whole `run --once` process above the idle run right after it, per change. */
  readonly processUsPerChange: number;
  /** CPU of the CLI child above the idle run's, per change. */
  readonly cpuUsPerChange: number;
  readonly stepRunMs: readonly number[];
  readonly idleRunMs: number;
  readonly peakRssMiB: number;
}

/** The cost at the largest size over the cost at the smallest, per mode. */
function flatness(points: readonly ScalePoint[]): Record<string, unknown> {
  const first = points[0];
  const last = points.at(-1);
  if (!first || !last) return {};
  const out: Record<string, unknown> = { target: TARGET_FLATNESS, from: first.rows, to: last.rows };
  for (const mode of MODES) {
    const ratio = round(last.modes[mode].usPerChange / first.modes[mode].usPerChange);
    out[mode] = { ratio, met: ratio <= TARGET_FLATNESS };
  }
  return out;
}

async function benchSize(
  source: BenchSource,
  rows: number,
  changes: number,
  steps: number,
): Promise<ScalePoint> {
  const bronze = takeBronze(source.kind, rows) ?? (await freshBronze(source, rows));
  try {
    const keys = new KeySpace(rows);
    const modes = {} as Record<Mode, ModeResult>;
    for (const mode of MODES) {
      if (mode === 'deletion-vectors') {
        await runSql(
          bronze.ws,
          `ALTER TABLE ${bronze.ws.bronzeName(bronze.table)} SET TBLPROPERTIES ('delta.enableDeletionVectors' = 'true')`,
        );
      }
      modes[mode] = await benchMode(source, bronze, keys, changes, steps);
      log(
        `${source.kind} ${rows} rows, ${mode}: ${modes[mode].usPerChange} µs per change (idle run ${modes[mode].idleRunMs} ms)`,
      );
    }
    // Bronze that differs from the source is a Tributary bug, not a slow run: reported, and the timings stand.
    const consistency = await compareWithSource(source, bronze.ws, bronze.table);
    if (!consistency.equal) {
      log(
        `MISMATCH: ${source.kind} ${rows} rows: bronze differs from the source: ${JSON.stringify(consistency)}`,
      );
    }
    return { rows, modes, consistency };
  } finally {
    await bronze.ws.dispose();
  }
}

async function freshBronze(source: BenchSource, rows: number): Promise<KeptBronze> {
  const table: TableRef = { schema: 'scale', table: `t${rows}` };
  await ensureTable(source, table, rows);
  const ws = await source.newWorkspace([table]);
  await runOnce(ws);
  return { ws, table, rows };
}

async function benchMode(
  source: BenchSource,
  bronze: KeptBronze,
  keys: KeySpace,
  changes: number,
  steps: number,
): Promise<ModeResult> {
  await runOnce(bronze.ws); // settles the table after the mode switch
  const steady: StepCost[] = [];
  const runner = await source.openRunner();
  try {
    for (let s = 0; s < steps; s++) {
      for (let made = 0; made < changes; made += keys.txChanges) {
        await runner.run(source.transactionSql(bronze.table, keys.nextTransaction()));
      }
      const busy = await timedRun(source, bronze);
      // An idle run right after, on the same table: what a run costs with nothing to apply.
      const idle = await timedRun(source, bronze);
      steady.push({ busy, idle });
    }
  } finally {
    await runner.close();
  }
  const per = (f: (s: StepCost) => number) => round(median(steady.map(f)) / changes, 1);
  return {
    usPerChange: per((s) => (s.busy.captureApplyMs - s.idle.captureApplyMs) * 1000),
    processUsPerChange: per((s) => (s.busy.wallMs - s.idle.wallMs) * 1000),
    cpuUsPerChange: per((s) => (s.busy.cpuS - s.idle.cpuS) * 1e6),
    stepRunMs: steady.map((s) => Math.round(s.busy.wallMs)),
    idleRunMs: Math.round(median(steady.map((s) => s.idle.wallMs))),
    peakRssMiB: Math.max(...steady.map((s) => s.busy.peakRssMiB)),
  };
}

interface TimedRun {
  readonly wallMs: number;
  /** From "catching up" (connected, preflight passed) to the table's commit line, from the CLI's log. */
  readonly captureApplyMs: number;
  readonly cpuS: number;
  readonly peakRssMiB: number;
}

interface StepCost {
  readonly busy: TimedRun;
  readonly idle: TimedRun;
}

async function timedRun(source: BenchSource, bronze: KeptBronze): Promise<TimedRun> {
  let child: ChildResult | undefined;
  const m = await measured(source, async () => {
    child = await runOnce(bronze.ws);
  });
  if (child === undefined) throw new Error('unreachable');
  const from = await logLineAt(child, /catching up to/);
  const to = await logLineAt(child, new RegExp(`${bronze.ws.bronzeName(bronze.table)}: \\d+ commit`));
  if (from === undefined || to === undefined)
    throw new Error(`no capture/apply lines in ${child.stderrPath}`);
  return { wallMs: child.wallMs, captureApplyMs: to - from, cpuS: m.childCpuS, peakRssMiB: child.peakRssMiB };
}

/** The table's live ids: new ones above the top, updates and deletes drawn at random among the live. */
class KeySpace {
  readonly txChanges = TX_CHANGES.inserts + TX_CHANGES.updates + TX_CHANGES.deletes;
  readonly #deleted = new Set<number>();
  #next: number;

  constructor(rows: number) {
    this.#next = rows + 1;
  }

  nextTransaction() {
    const taken = new Set<number>();
    const pick = () => {
      for (;;) {
        const id = 1 + Math.floor(Math.random() * (this.#next - 1));
        if (this.#deleted.has(id) || taken.has(id)) continue;
        taken.add(id);
        return id;
      }
    };
    const updates = Array.from({ length: TX_CHANGES.updates }, pick);
    const deletes = Array.from({ length: TX_CHANGES.deletes }, pick);
    for (const id of deletes) this.#deleted.add(id);
    const first = this.#next;
    this.#next += TX_CHANGES.inserts;
    return { inserts: { first, count: TX_CHANGES.inserts, step: 1 }, updates, deletes };
  }
}
