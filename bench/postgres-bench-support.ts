/**
 * Helpers of the PostgreSQL source benchmark: CPU accounting of this process, its children and the server,
 * a wall clock with microsecond resolution, the workload generator (pgbench) and small statistics.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

// ---------------------------------------------------------------------------------------------------------
// CPU accounting

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ; 100 on every Linux we run on). */
const CLOCK_TICKS = 100;

interface ProcTimes {
  readonly ppid: number;
  /** utime + stime of the process itself, in seconds. */
  readonly own: number;
  /** cutime + cstime: the children it has waited for, in seconds. */
  readonly reaped: number;
}

function procTimes(pid: number | 'self'): ProcTimes | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces; everything after its closing parenthesis is numeric.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const n = (i: number) => Number(fields[i] ?? 0);
  return { ppid: n(1), own: (n(11) + n(12)) / CLOCK_TICKS, reaped: (n(13) + n(14)) / CLOCK_TICKS };
}

/** The postmaster's pid of a server this process started, from its data directory; undefined otherwise. */
export function postmasterPid(baseDir: string): number | undefined {
  if (baseDir === '') return undefined;
  try {
    const pid = Number(readFileSync(join(baseDir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds used so far by the whole server: the postmaster, its live children (backends, walsenders,
 * background workers) and the children it has already reaped (backends of closed sessions).
 */
function serverCpuSeconds(postmaster: number): number {
  const main = procTimes(postmaster);
  if (!main) return Number.NaN;
  let total = 0;
  for (const name of readdirSync('/proc')) {
    if (name.charCodeAt(0) > 0x39) continue;
    const pid = Number(name);
    if (!Number.isInteger(pid)) continue;
    const t = procTimes(pid);
    if (t?.ppid === postmaster) total += t.own;
  }
  return total + main.own + main.reaped;
}

interface CpuSample {
  readonly node: number;
  readonly children: number;
  readonly server: number;
}

function cpuSample(postmaster: number | undefined): CpuSample {
  const usage = process.cpuUsage();
  return {
    node: (usage.user + usage.system) / 1e6,
    children: procTimes('self')?.reaped ?? Number.NaN,
    server: postmaster === undefined ? Number.NaN : serverCpuSeconds(postmaster),
  };
}

/** One measured run: wall time and CPU seconds of Node, of the commands it ran, and of the server. */
export interface Measured {
  readonly ms: number;
  readonly nodeCpuS: number;
  readonly childCpuS: number;
  readonly serverCpuS: number;
}

/**
 * Times `body` and the CPU it cost. The closing CPU sample waits a moment after the wall clock stops, so a
 * backend whose session just ended has exited and been reaped (its time moves to the postmaster's).
 */
export async function measure(
  postmaster: number | undefined,
  body: () => Promise<unknown>,
): Promise<Measured> {
  const before = cpuSample(postmaster);
  const start = process.hrtime.bigint();
  await body();
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  await sleep(150);
  const after = cpuSample(postmaster);
  return {
    ms,
    nodeCpuS: after.node - before.node,
    childCpuS: after.children - before.children,
    serverCpuS: after.server - before.server,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Statistics

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

/** Nearest-rank percentile (p in 0..100) of unsorted values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] as number;
}

export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------------------
// Wall clock

/**
 * Unix time in milliseconds with microsecond resolution: the monotonic clock anchored to the wall clock.
 * `Date.now()` truncates to the millisecond, so the anchor is the largest `Date.now() - performance.now()`
 * seen over a few milliseconds (the sample just after a millisecond tick is exact). Re-anchor before each
 * measurement so the monotonic clock cannot drift from the server's wall clock.
 */
export function anchoredClock(): () => number {
  let offset = Number.NEGATIVE_INFINITY;
  const until = performance.now() + 5;
  while (performance.now() < until) {
    const candidate = Date.now() - performance.now();
    if (candidate > offset) offset = candidate;
  }
  return () => offset + performance.now();
}

/** A UTC timestamptz as PostgreSQL prints it (`2024-05-06 07:08:09.123456+00`), in ms since the epoch. */
export function timestamptzMs(text: string): number {
  const seconds = Date.parse(`${text.slice(0, 10)}T${text.slice(11, 19)}Z`);
  const end = text.indexOf('+', 19);
  const fraction = text.slice(19, end < 0 ? undefined : end);
  return seconds + (fraction === '' ? 0 : Number(`0${fraction}`) * 1000);
}

// ---------------------------------------------------------------------------------------------------------
// Commands

/** Runs a command, returning its stdout; the password travels in the environment, never in argv. */
export function runCapturing(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve(stdout) : reject(new Error(`${command} exited ${code}: ${stderr}${stdout}`)),
    );
  });
}

/** A PostgreSQL client program: next to the server's binaries, else on PATH. */
export function pgProgram(name: string): string {
  for (const version of ['15', '16', '17', '14']) {
    const path = join('/usr/lib/postgresql', version, 'bin', name);
    if (existsSync(path)) return path;
  }
  return name;
}

// ---------------------------------------------------------------------------------------------------------
// The streaming workload

/**
 * Rows preloaded into the streamed table. Updates touch ids 1..UPDATE_RANGE (+ a transaction's span), which
 * are never deleted; ids from FIRST_DELETE_POOL_ID up are the first rows each generator client deletes.
 */
export const STREAM_PRELOAD = 100_000;
const UPDATE_RANGE = 70_000;
const FIRST_DELETE_POOL_ID = 80_001;

/** The ten columns both tables share. */
export const TABLE_COLUMNS = `id int8 PRIMARY KEY, a int4, b numeric(12,2), c text, d varchar(64),
  e timestamptz, f timestamp, g bool, h jsonb, i bytea`;

/** SELECT list producing a row of the benchmark tables from `g` (the id), with `e` the given expression. */
export function rowValues(e: string): string {
  return `g, (g % 100000)::int4, (g % 1000000) / 100.0, 'text ' || g || ' ' || repeat('x', (g % 20)::int4),
    CASE WHEN g % 10 = 0 THEN NULL ELSE 'name-' || g END, ${e},
    timestamp '2024-01-01 00:00:00' + g * interval '1.000001 second', g % 3 = 0,
    jsonb_build_object('k', g, 's', 'v' || (g % 97), 'f', g % 2 = 0), decode(md5(g::text), 'hex')`;
}

/**
 * One transaction of the generator: `5·scale` inserts of new ids, `2·scale` deletes of rows the same client
 * inserted in its previous transaction (committed for sure; a client's first transaction deletes preloaded
 * rows of its own, from `:base`), and `3·scale` updates of random preloaded ids, which stamp `e` with
 * clock_timestamp() in the last statement before COMMIT. Every statement hits exactly its rows, so a
 * transaction is exactly `10·scale` changes. Run with `-D prev=0 -D base=…` ({@link pgbenchVariables}).
 */
export function pgbenchScript(scale: number): string {
  return `\\set r random(1, ${UPDATE_RANGE})
\\if :prev = 0
\\set prev :base + ${2 * scale} * :client_id
\\endif
BEGIN;
SELECT nextval('bench.s_ids') AS n \\gset
INSERT INTO bench.s SELECT ${rowValues('clock_timestamp()').replaceAll('\n', ' ')} FROM generate_series(:n::int8, :n::int8 + ${5 * scale - 1}) g;
DELETE FROM bench.s WHERE id BETWEEN :prev::int8 AND :prev::int8 + ${2 * scale - 1};
UPDATE bench.s SET a = a + 1, b = b + 0.01, c = c || '.', e = clock_timestamp(), g = NOT g WHERE id BETWEEN :r::int8 AND :r::int8 + ${3 * scale - 1};
COMMIT;
\\set prev :n
`;
}

/** Clients a pgbench run may have: each takes its first deletes from the pool of preloaded rows. */
export const MAX_CLIENTS = 2;
let pgbenchRuns = 0;

/** The `-D` options of one pgbench run: a slice of the delete pool no earlier run used. */
export function pgbenchVariables(scale: number): string[] {
  const base = FIRST_DELETE_POOL_ID + pgbenchRuns++ * 2 * scale * MAX_CLIENTS;
  if (base + 2 * scale * MAX_CLIENTS > STREAM_PRELOAD) throw new Error('the delete pool is used up');
  return ['-D', 'prev=0', '-D', `base=${base}`];
}

/** The DDL of the streamed table and its id sequence (the sequence steps by the inserts of a transaction). */
export function streamTableDdl(scale: number): string {
  return `CREATE TABLE bench.s (${TABLE_COLUMNS});
    INSERT INTO bench.s SELECT ${rowValues("timestamptz '2024-01-01 00:00:00+00' + g * interval '1.000001 second'")}
      FROM generate_series(1, ${STREAM_PRELOAD}) g;
    CREATE SEQUENCE bench.s_ids START ${STREAM_PRELOAD + 1} INCREMENT ${5 * scale};`;
}

/** `number of transactions actually processed: N` of pgbench's report. */
export function pgbenchTransactions(report: string): number {
  const m = /number of transactions actually processed: (\d+)/.exec(report);
  if (!m) throw new Error(`pgbench printed no transaction count:\n${report}`);
  const failed = /number of failed transactions: (\d+)/.exec(report);
  if (failed && failed[1] !== '0') throw new Error(`pgbench had failed transactions:\n${report}`);
  return Number(m[1]);
}
