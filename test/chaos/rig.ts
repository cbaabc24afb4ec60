/**
 * What a chaos scenario drives: a working directory with tributary.yaml for one scenario database, the
 * real `tributary` executable as child processes (killed with SIGKILL, stopped with SIGTERM), and the two
 * checks every scenario ends with: bronze equals the source row for row, and
 * `system.lakeflow.pipeline_events` recorded what happened.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { seededRandom } from '../../src/testing/seeded-random.js';
import { CLI_PATH, type CliRun, runCli } from '../harness/cli.js';
import { type ChaosDatabase, TABLES, type TableName } from './sources.js';
import { sleep } from './workload.js';

/** `TRIBUTARY_CHAOS=long` (npm run chaos) runs every scenario at full length; npm test runs the short one. */
export const LONG = process.env['TRIBUTARY_CHAOS'] === 'long';

/** Small segments and chunks: many more seal points, so kills land between more distinct steps. */
const SMALL_STEPS = {
  TRIBUTARY_SNAPSHOT_CHUNK_ROWS: '500',
  TRIBUTARY_SEGMENT_MAX_CHANGES: '300',
  TRIBUTARY_IDLE_SEAL_SECONDS: '0',
};

export interface WorkspaceOptions {
  /** Where Tributary reaches the source; the server itself by default, or a proxy in front of it. */
  readonly endpoint: { host: string; port: number };
  readonly autoFullRefresh?: boolean;
}

export class TributaryProcess {
  readonly child: ChildProcess;
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  #running = true;

  constructor(child: ChildProcess) {
    this.child = child;
    child.stderr?.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    child.stdout?.resume();
    this.exited = new Promise((resolve) =>
      child.on('close', (code, signal) => {
        this.#running = false;
        resolve({ code, signal });
      }),
    );
  }

  get running(): boolean {
    return this.#running;
  }

  /** SIGKILL; true when the process was still running (the kill landed), false when it had exited. */
  async kill9(): Promise<boolean> {
    const landed = this.#running;
    this.child.kill('SIGKILL');
    await this.exited;
    return landed;
  }

  /** SIGTERM: stops at a safe point; resolves with the exit. */
  async stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    this.child.kill('SIGTERM');
    return this.exited;
  }
}

export class ChaosWorkspace implements AsyncDisposable {
  readonly dir: string;
  readonly db: ChaosDatabase;
  readonly env: NodeJS.ProcessEnv;
  readonly #processes = new Set<TributaryProcess>();

  private constructor(dir: string, db: ChaosDatabase) {
    this.dir = dir;
    this.db = db;
    this.env = {
      ...process.env,
      ...SMALL_STEPS,
      TRIBUTARY_HOME: join(dir, 'home'),
      TRIBUTARY_SECRET_CHAOS__PW: db.cdcPassword,
    };
  }

  static async create(db: ChaosDatabase, options: WorkspaceOptions): Promise<ChaosWorkspace> {
    const work = new ChaosWorkspace(await mkdtemp(join(tmpdir(), `tributary-${db.name}-`)), db);
    await work.configure(options);
    return work;
  }

  /** (Re)writes tributary.yaml; a running process reads it at its next start. */
  async configure(options: WorkspaceOptions): Promise<void> {
    await writeFile(
      join(this.dir, 'tributary.yaml'),
      `warehouse: ./lake
connections:
  src:
${this.db.connectionYaml(options.endpoint)}gateways:
  gw:
    connection: src
    storage: lake.landing.vol
${this.db.gatewayYaml}pipelines:
  p:
    gateway: gw
${options.autoFullRefresh ? '    auto_full_refresh: true\n' : ''}    objects:
${this.db.objectsYaml}`,
    );
  }

  /** The staging directory of gateway `gw`. */
  get stagingDir(): string {
    return join(this.dir, 'lake', 'lake', 'landing', 'vol', 'gw');
  }

  tablePath(table: TableName): string {
    return join(this.dir, 'lake', 'lake', 'bronze', table);
  }

  /** A continuous `tributary run p` (rounds 0.2 s apart), or any other long-running command. */
  spawn(args: readonly string[] = ['run', 'p', '--interval', '0.2']): TributaryProcess {
    const child = spawn(process.execPath, [CLI_PATH, ...args], {
      cwd: this.dir,
      env: this.env,
      stdio: 'pipe',
    });
    const p = new TributaryProcess(child);
    this.#processes.add(p);
    void p.exited.then(() => this.#processes.delete(p));
    return p;
  }

  cli(args: readonly string[]): Promise<CliRun> {
    return runCli(args, { cwd: this.dir, env: this.env });
  }

  /** `tributary run p --once` until it succeeds (a transient failure is retried, as the supervisor would). */
  async catchUp(): Promise<CliRun> {
    let last: CliRun | undefined;
    for (let attempt = 0; attempt < 5; attempt++) {
      last = await this.cli(['run', 'p', '--once']);
      if (last.code === 0) return last;
      await sleep(1000);
    }
    throw new Error(`tributary run --once kept failing:\n${last?.stderr}`);
  }

  async sql(statement: string): Promise<Array<Record<string, unknown>>> {
    const r = await this.cli(['sql', statement, '--format', 'json']);
    if (r.code !== 0) throw new Error(`tributary sql failed (${r.code}):\n${r.stderr}`);
    return JSON.parse(r.stdout) as Array<Record<string, unknown>>;
  }

  /** Every row of `pipeline_events` for pipeline p, oldest first. */
  async events(): Promise<Array<{ state: string; error_code: string | null; message: string }>> {
    return (await this.sql(
      "SELECT state, error_code, message FROM system.lakeflow.pipeline_events WHERE pipeline_name = 'p' ORDER BY timestamp",
    )) as Array<{ state: string; error_code: string | null; message: string }>;
  }

  /**
   * Bronze equals the source, row for row, in every table: nothing lost, nothing duplicated, nothing
   * stale. Read at the pipeline's consistent cut, as a user's query would.
   */
  async expectConverged(): Promise<{ rows: number }> {
    const client = await this.db.connect();
    let rows = 0;
    try {
      for (const [table, columns] of Object.entries(TABLES) as Array<[TableName, readonly string[]]>) {
        const list = columns.join(', ');
        const text = (r: Record<string, unknown>) =>
          columns.map((c) => (r[c] === null ? null : String(r[c])));
        const source = (await client.query(`SELECT ${list} FROM ${table} ORDER BY id`)).map(text);
        const bronze = (await this.sql(`SELECT ${list} FROM lake.bronze.${table} ORDER BY id`)).map(text);
        expect(difference(source, bronze), `${table} differs from the source`).toEqual({
          onlyInSource: [],
          onlyInBronze: [],
          different: [],
        });
        expect(bronze).toEqual(source);
        rows += source.length;
      }
    } finally {
      await client.close();
    }
    return { rows };
  }

  /** The `txn` versions of each commit to a bronze table: a segment applied twice would repeat one. */
  async expectNoSegmentAppliedTwice(): Promise<void> {
    for (const table of Object.keys(TABLES) as TableName[]) {
      const log = join(this.tablePath(table), '_delta_log');
      const versions: number[] = [];
      for (const name of (await readdir(log)).filter((n) => /^\d{20}\.json$/.test(n)).sort()) {
        for (const line of (await readFile(join(log, name), 'utf8')).split('\n')) {
          if (line.includes('"txn"'))
            versions.push((JSON.parse(line) as { txn: { version: number } }).txn.version);
        }
      }
      expect(versions, `${table}: txn versions must strictly increase`).toEqual(
        [...new Set(versions)].sort((a, b) => a - b),
      );
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const p of this.#processes) await p.kill9();
    if (process.env['TRIBUTARY_KEEP_SERVERS'] === '1') {
      process.stderr.write(`[chaos] kept workspace ${this.dir} and database ${this.db.name}\n`);
      return;
    }
    await this.db.drop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

type Row = Array<string | null>;

/** The first few rows (by id) missing on either side or differing: what a failure report needs. */
function difference(source: readonly Row[], bronze: readonly Row[]) {
  const byId = (rows: readonly Row[]) => new Map(rows.map((r) => [r[0], r]));
  const s = byId(source);
  const b = byId(bronze);
  const first = <T>(xs: T[]) => xs.slice(0, 10);
  return {
    onlyInSource: first([...s.keys()].filter((id) => !b.has(id))),
    onlyInBronze: first([...b.keys()].filter((id) => !s.has(id))),
    different: first(
      [...s.entries()]
        .filter(([id, row]) => b.has(id) && JSON.stringify(b.get(id)) !== JSON.stringify(row))
        .map(([id, row]) => ({ id, source: row, bronze: b.get(id) })),
    ),
  };
}

/** Polls until `probe` returns a value, or fails naming what it waited for. */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 120_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(250);
  }
}

/** A pseudo-random sequence for kill timings, seeded so a failing run can be replayed. */
export function randomSequence(seed: number): () => number {
  return seededRandom(seed);
}
