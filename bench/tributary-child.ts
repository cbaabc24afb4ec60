/**
 * The real `tributary` CLI as a child process (`node bin/tributary.js ...`, cwd = the workspace), with what
 * the pipeline benchmarks read from outside it: wall time, CPU seconds, and peak RSS (VmHWM polled from
 * /proc/<pid>/status until it exits). Its stdout and stderr go to files in the workspace, so a long continuous
 * run costs no memory here and a failure can be read afterwards.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runDiscarding } from './measure.js';
import type { Workspace } from './pipeline-sources.js';

/** The checkout: this file runs from dist-bench/bench/. */
const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = resolve(REPO, 'bin', 'tributary.js');
const RSS_POLL_MS = 50;
let built = false;
let stale = false;

/**
 * bin/tributary.js runs dist/. A fresh clone has it from `npm ci` (the `prepare` script); when it is missing it
 * is built here. When src/ is newer, the suite says so and measures dist/ as it is: rebuilding under someone
 * editing the same tree could compile half a change (`npm run build` first to measure the edit).
 */
export async function ensureCliBuilt(): Promise<void> {
  if (built) return;
  const main = join(REPO, 'dist', 'cli', 'main.js');
  if (!existsSync(main)) {
    process.stderr.write('[pipeline] dist/ is missing: building it (npm run build)\n');
    await runDiscarding('npx', ['tsc', '-p', join(REPO, 'tsconfig.build.json')], {});
  } else if (newestSource(join(REPO, 'src')) > statSync(main).mtimeMs) {
    stale = true;
    process.stderr.write(
      '[pipeline] warning: src/ has changes newer than dist/; the CLI runs dist/ as built (npm run build to include them)\n',
    );
  }
  built = true;
}

/** What the results should say about the CLI they measured. */
export function cliInfo(): Record<string, unknown> {
  return { command: 'node bin/tributary.js (dist/)', distOlderThanSrc: stale };
}

function newestSource(dir: string): number {
  let newest = 0;
  // Synchronous: it runs once per process, before anything is timed.
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'testing') newest = Math.max(newest, newestSource(path));
    } else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) {
      newest = Math.max(newest, statSync(path).mtimeMs);
    }
  }
  return newest;
}

export interface ChildResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly wallMs: number;
  /** VmHWM of the child, MiB. */
  readonly peakRssMiB: number;
  /** user + system CPU of the child, from its last /proc sample (the exact figure comes from `measure`). */
  readonly cpuS: number;
  /** Date.now() when it was spawned, to line log timestamps up with. */
  readonly startedAt: number;
  readonly stderrPath: string;
}

export interface TributaryChild {
  readonly pid: number;
  readonly exited: Promise<ChildResult>;
  /** SIGTERM (the CLI stops at a safe point), then waits for the exit. */
  stop(): Promise<ChildResult>;
  /** Peak RSS so far, MiB. */
  peakRssMiB(): number;
}

let logs = 0;

export async function spawnTributary(ws: Workspace, args: readonly string[]): Promise<TributaryChild> {
  await ensureCliBuilt();
  const n = ++logs;
  const stdoutPath = join(ws.dir, `cli-${n}.out`);
  const stderrPath = join(ws.dir, `cli-${n}.err`);
  const out = await open(stdoutPath, 'w');
  const err = await open(stderrPath, 'w');
  const startedAt = Date.now();
  const start = performance.now();
  const child: ChildProcess = spawn(process.execPath, [...nodeArgs(), CLI, ...args], {
    cwd: ws.dir,
    env: { ...process.env, ...ws.env },
    stdio: ['ignore', out.fd, err.fd],
  });
  await out.close();
  await err.close();
  const pid = child.pid;
  if (pid === undefined) throw new Error('could not spawn the tributary CLI');
  let peakKiB = 0;
  let cpuS = 0;
  const sample = () => {
    const status = procRead(`/proc/${pid}/status`);
    const hwm = status === undefined ? undefined : /VmHWM:\s+(\d+) kB/.exec(status)?.[1];
    if (hwm !== undefined) peakKiB = Math.max(peakKiB, Number(hwm));
    const stat = procRead(`/proc/${pid}/stat`);
    if (stat !== undefined) {
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      cpuS = (Number(fields[11]) + Number(fields[12])) / 100;
    }
  };
  const timer = setInterval(sample, RSS_POLL_MS);
  sample();
  const exited = new Promise<ChildResult>((done, fail) => {
    child.on('error', fail);
    child.on('exit', (code, signal) => {
      clearInterval(timer);
      done({
        code,
        signal,
        wallMs: performance.now() - start,
        peakRssMiB: Math.round(peakKiB / 1024),
        cpuS,
        startedAt,
        stderrPath,
      });
    });
  });
  return {
    pid,
    exited,
    stop() {
      child.kill('SIGTERM');
      return exited;
    },
    peakRssMiB: () => Math.round(peakKiB / 1024),
  };
}

/** BENCH_CLI_NODE_ARGS, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof` to profile the CLI (not allowed in NODE_OPTIONS). */
function nodeArgs(): string[] {
  return (process.env['BENCH_CLI_NODE_ARGS'] ?? '').split(' ').filter((a) => a !== '');
}

function procRead(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** `tributary run p --once`; throws with the end of its log when it fails. */
export async function runOnce(ws: Workspace): Promise<ChildResult> {
  const child = await spawnTributary(ws, ['run', 'p', '--once']);
  const result = await child.exited;
  await assertSucceeded(result, 'tributary run p --once');
  return result;
}

/** `tributary sql <statement>` in the workspace (table output discarded). */
export async function runSql(ws: Workspace, statement: string): Promise<void> {
  const child = await spawnTributary(ws, ['sql', statement]);
  await assertSucceeded(await child.exited, `tributary sql ${statement}`);
}

export async function assertSucceeded(result: ChildResult, what: string): Promise<void> {
  if (result.code === 0) return;
  const log = await readFile(result.stderrPath, 'utf8').catch(() => '');
  throw new Error(
    `${what} exited ${result.code ?? result.signal}:\n${log.trimEnd().split('\n').slice(-20).join('\n')}`,
  );
}

/** Milliseconds since the child started of the first stderr log line matching `pattern`, if any. */
export async function logLineAt(result: ChildResult, pattern: RegExp): Promise<number | undefined> {
  const log = await readFile(result.stderrPath, 'utf8').catch(() => '');
  for (const line of log.split('\n')) {
    if (!pattern.test(line)) continue;
    const at = Date.parse(line.slice(0, 24));
    return Number.isFinite(at) ? at - result.startedAt : undefined;
  }
  return undefined;
}

/** The same for the last matching line. */
export async function lastLogLineAt(result: ChildResult, pattern: RegExp): Promise<number | undefined> {
  const log = await readFile(result.stderrPath, 'utf8').catch(() => '');
  let found: number | undefined;
  for (const line of log.split('\n')) {
    if (!pattern.test(line)) continue;
    const at = Date.parse(line.slice(0, 24));
    if (Number.isFinite(at)) found = at - result.startedAt;
  }
  return found;
}
