/**
 * A throwaway PostgreSQL for tests, the demo and benchmarks: one this process started (initdb + pg_ctl, as the
 * `postgres` user when we run as root, since PostgreSQL refuses to run as root), or one named by the
 * environment. Configured for logical replication and reachable only on 127.0.0.1, with a random password
 * for the `postgres` superuser over TCP.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { isTributaryError, messageOf, TributaryError } from '../core/errors.js';
import { ensureProgram } from './ensure-program.js';
import { freePort } from './free-port.js';

export interface PostgresServer extends AsyncDisposable {
  readonly host: string;
  readonly port: number;
  readonly user: string;
  /** A getter, not an own enumerable property, so printing the handle does not print it. */
  readonly password: string;
  /** True when this process did not start the server and so cannot kill or restart it. */
  readonly external: boolean;
  /** The directory holding data, socket and log; empty for an external server. */
  readonly baseDir: string;
  /** Fast shutdown, then removes the directory unless `TRIBUTARY_KEEP_SERVERS=1`. */
  stop(): Promise<void>;
  /** An immediate shutdown (no checkpoint, crash recovery on the next start), as a crash would. */
  kill(): Promise<void>;
  /** Starts again on the same data and port after `kill()`, or restarts a running server. */
  restart(): Promise<void>;
}

export interface StartPostgresOptions {
  /** Loopback port; a free one is picked when absent. */
  port?: number;
  /** `-c name=value` settings appended after the standard ones, so they can override them. */
  settings?: Record<string, string | number>;
}

const POSTGRES_SEARCH_DIRS = ['/usr/lib/postgresql/*/bin', '/usr/local/pgsql/bin', '/usr/pgsql-*/bin'];

/**
 * Starts a throwaway PostgreSQL with `wal_level=logical` and room for replication slots. Installs Debian's
 * `postgresql` package when the binaries are missing (see {@link ensureProgram}). The server is stopped
 * immediately when this process exits without stopping it.
 */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const bin = await postgresBinaries();
  const baseDir = await mkdtemp(join(tmpdir(), 'tributary-pg-'));
  const server = new LocalPostgres(bin, baseDir, options.settings ?? {});
  try {
    await server.init();
    await server.start(options.port ?? (await freePort()));
    return server;
  } catch (error) {
    await server.stop().catch(() => undefined);
    throw error;
  }
}

/**
 * The server named by `TRIBUTARY_TEST_PG_HOST`, `_PORT` (default 5432), `_USER` (default postgres) and
 * `_PASSWORD`, or undefined when `TRIBUTARY_TEST_PG_HOST` is unset. The user must be able to create
 * databases, roles and replication slots.
 */
export async function postgresFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): Promise<PostgresServer | undefined> {
  const {
    TRIBUTARY_TEST_PG_HOST: host,
    TRIBUTARY_TEST_PG_PORT: portText = '',
    TRIBUTARY_TEST_PG_USER: userText = '',
    TRIBUTARY_TEST_PG_PASSWORD: password = '',
  } = env;
  if (host === undefined || host === '') return undefined;
  const port = portText === '' ? 5432 : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new TributaryError('CONFIG_INVALID', `TRIBUTARY_TEST_PG_PORT is not a port number: ${portText}`, {
      hint: 'Set TRIBUTARY_TEST_PG_PORT to an integer from 1 to 65535, or leave it unset for 5432.',
    });
  }
  const user = userText === '' ? 'postgres' : userText;
  const client = new pg.Client({ host, port, user, password, database: 'postgres' });
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (error) {
    throw new TributaryError(
      'SOURCE_UNREACHABLE',
      `Cannot use the test server TRIBUTARY_TEST_PG_HOST=${host} port ${port} as ${user}: ${messageOf(error)}`,
      {
        retry: 'fatal',
        cause: error,
        hint: 'Check TRIBUTARY_TEST_PG_HOST/_PORT/_USER/_PASSWORD, or unset them to let the tests start their own PostgreSQL.',
      },
    );
  } finally {
    await client.end().catch(() => undefined);
  }
  return new ExternalPostgres(host, port, user, password);
}

interface Binaries {
  readonly initdb: string;
  readonly pgCtl: string;
}

async function postgresBinaries(): Promise<Binaries> {
  const reason = 'to run a throwaway PostgreSQL for tests and the demo';
  try {
    const initdb = await ensureProgram({
      binary: 'initdb',
      searchDirs: POSTGRES_SEARCH_DIRS,
      aptPackage: 'postgresql',
      reason,
    });
    const pgCtl = resolve(initdb, '..', 'pg_ctl');
    return { initdb, pgCtl };
  } catch (error) {
    if (isTributaryError(error) && error.code === 'DEPENDENCY_MISSING') {
      throw new TributaryError('DEPENDENCY_MISSING', error.message, {
        cause: error,
        hint: `${error.hint ?? 'Install postgresql.'}\nOr point the tests at an existing server with TRIBUTARY_TEST_PG_HOST, _PORT, _USER and _PASSWORD.`,
      });
    }
    throw error;
  }
}

const liveServers = new Set<LocalPostgres>();
let exitHookRegistered = false;

class LocalPostgres implements PostgresServer {
  readonly host = '127.0.0.1';
  readonly user = 'postgres';
  readonly external = false;
  readonly #bin: Binaries;
  readonly #settings: Record<string, string | number>;
  readonly #dataDir: string;
  readonly #log: string;
  #password = '';
  #port = 0;
  #running = false;
  #removed = false;

  constructor(
    bin: Binaries,
    readonly baseDir: string,
    settings: Record<string, string | number>,
  ) {
    this.#bin = bin;
    this.#settings = settings;
    this.#dataDir = join(baseDir, 'data');
    this.#log = join(baseDir, 'postgres.log');
  }

  get port(): number {
    return this.#port;
  }

  get password(): string {
    return this.#password;
  }

  async init(): Promise<void> {
    await mkdir(this.baseDir, { recursive: true, mode: 0o700 });
    await this.#giveToPostgresUser(this.baseDir);
    this.#password = randomBytes(18).toString('base64url');
    const pwfile = join(this.baseDir, 'pwfile');
    await writeFile(pwfile, `${this.#password}\n`, { mode: 0o600 });
    await this.#giveToPostgresUser(pwfile);
    await this.#run(this.#bin.initdb, [
      '-D',
      this.#dataDir,
      '-U',
      'postgres',
      `--pwfile=${pwfile}`,
      '--auth-local=trust',
      '--auth-host=scram-sha-256',
      '-E',
      'UTF8',
      '--locale=C.UTF-8',
      '--no-sync',
    ]);
    await rm(pwfile, { force: true });
    // Replication connections need their own pg_hba line; `all` does not cover them.
    const hba = join(this.#dataDir, 'pg_hba.conf');
    const rules = await readFile(hba, 'utf8');
    await writeFile(hba, `${rules}\nhost replication all 127.0.0.1/32 scram-sha-256\n`);
  }

  async start(port: number): Promise<void> {
    const settings: Record<string, string | number> = {
      port,
      listen_addresses: '127.0.0.1',
      unix_socket_directories: this.baseDir,
      wal_level: 'logical',
      max_wal_senders: 20,
      max_replication_slots: 20,
      fsync: 'off',
      ...this.#settings,
    };
    const options = Object.entries(settings)
      .map(([k, v]) => `-c ${k}=${v}`)
      .join(' ');
    liveServers.add(this);
    registerExitHook();
    await this.#run(this.#bin.pgCtl, [
      '-D',
      this.#dataDir,
      '-l',
      this.#log,
      '-w',
      '-t',
      '60',
      '-o',
      options,
      'start',
    ]);
    this.#port = port;
    this.#running = true;
  }

  async stop(): Promise<void> {
    if (this.#removed) return;
    if (this.#running) await this.#pgCtlStop('fast');
    liveServers.delete(this);
    this.#removed = true;
    if (process.env['TRIBUTARY_KEEP_SERVERS'] === '1') {
      process.stderr.write(
        `[tributary] kept PostgreSQL directory ${this.baseDir} (TRIBUTARY_KEEP_SERVERS=1)\n`,
      );
    } else {
      await rm(this.baseDir, { recursive: true, force: true });
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  async kill(): Promise<void> {
    if (this.#running) await this.#pgCtlStop('immediate');
  }

  async restart(): Promise<void> {
    if (this.#removed) {
      throw new TributaryError('USAGE', `Cannot restart the PostgreSQL in ${this.baseDir}: it was stopped.`, {
        hint: 'Start a new server with startPostgres().',
      });
    }
    if (this.#running) await this.#pgCtlStop('fast');
    await this.start(this.#port);
  }

  /** Synchronous, for the exit hook. */
  stopNow(): void {
    if (!this.#running) return;
    const [file, args] = this.#asPostgres(this.#bin.pgCtl, ['-D', this.#dataDir, '-m', 'immediate', 'stop']);
    spawnSync(file, args, { stdio: 'ignore' });
    this.#running = false;
    if (process.env['TRIBUTARY_KEEP_SERVERS'] !== '1') rmSync(this.baseDir, { recursive: true, force: true });
  }

  async #pgCtlStop(mode: 'fast' | 'immediate'): Promise<void> {
    await this.#run(this.#bin.pgCtl, ['-D', this.#dataDir, '-m', mode, '-w', 'stop']);
    this.#running = false;
  }

  /** PostgreSQL refuses to run as root; as root we hand its files to `postgres` and run as that user. */
  async #giveToPostgresUser(path: string): Promise<void> {
    const ids = postgresIds();
    if (ids) await chown(path, ids.uid, ids.gid);
  }

  #asPostgres(file: string, args: string[]): [string, string[]] {
    return postgresIds() ? ['runuser', ['-u', 'postgres', '--', file, ...args]] : [file, args];
  }

  async #run(program: string, args: string[]): Promise<void> {
    const [file, argv] = this.#asPostgres(program, args);
    const output: Buffer[] = [];
    const child = spawn(file, argv, { cwd: this.baseDir, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.on('data', (chunk: Buffer) => output.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => output.push(chunk));
    const code = await new Promise<number | null>((done, fail) => {
      child.on('error', fail);
      child.on('close', done);
    });
    if (code === 0) return;
    const log = existsSync(this.#log)
      ? (await readFile(this.#log, 'utf8')).split('\n').slice(-20).join('\n')
      : '';
    throw new TributaryError(
      'SOURCE_UNREACHABLE',
      `Could not run a throwaway PostgreSQL: ${args.at(-1) === 'start' ? 'pg_ctl start' : program} exited with code ${code}:\n${Buffer.concat(output).toString('utf8').trim()}\n${log}`,
      {
        retry: 'fatal',
        hint: 'Run with TRIBUTARY_KEEP_SERVERS=1 to keep the server directory for inspection.',
      },
    );
  }
}

class ExternalPostgres implements PostgresServer {
  readonly external = true;
  readonly baseDir = '';
  readonly #password: string;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly user: string,
    password: string,
  ) {
    this.#password = password;
  }

  get password(): string {
    return this.#password;
  }

  async stop(): Promise<void> {}

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  kill(): Promise<void> {
    return Promise.reject(this.#cannot('kill'));
  }

  restart(): Promise<void> {
    return Promise.reject(this.#cannot('restart'));
  }

  #cannot(operation: string): TributaryError {
    return new TributaryError(
      'USAGE',
      `Cannot ${operation} the PostgreSQL at ${this.host}:${this.port}: TRIBUTARY_TEST_PG_HOST names a server this process did not start.`,
      { hint: 'Skip this test when server.external is true, or unset TRIBUTARY_TEST_PG_HOST.' },
    );
  }
}

let cachedIds: { uid: number; gid: number } | null | undefined;

/** The `postgres` user's ids when we run as root (and so must switch to it), else null. */
function postgresIds(): { uid: number; gid: number } | null {
  if (cachedIds !== undefined) return cachedIds;
  if (process.getuid?.() !== 0) {
    cachedIds = null;
    return cachedIds;
  }
  const id = (flag: string) => spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' });
  const uid = id('-u');
  const gid = id('-g');
  if (uid.status !== 0 || gid.status !== 0) {
    throw new TributaryError(
      'DEPENDENCY_MISSING',
      'Running as root, but there is no `postgres` user to run PostgreSQL as.',
      {
        hint: "Install Debian's postgresql package (it creates the user), or run the tests as a non-root user.",
      },
    );
  }
  cachedIds = { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
  return cachedIds;
}

function registerExitHook(): void {
  if (exitHookRegistered) return;
  exitHookRegistered = true;
  process.on('exit', () => {
    for (const server of liveServers) server.stopNow();
  });
}
