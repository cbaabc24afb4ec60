import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type Connection,
  type ConnectionOptions,
  createConnection,
  type RowDataPacket,
} from 'mysql2/promise';
import { isTributaryError, messageOf, TributaryError } from '../core/errors.js';
import { ensureProgram } from './ensure-program.js';
import { freePort } from './free-port.js';

/** A MariaDB server for tests and the demo: one this process started, or one named by the environment. */
export interface MariaDbServer extends AsyncDisposable {
  readonly host: string;
  readonly port: number;
  readonly rootUser: string;
  /** Not an own enumerable property, so printing the handle does not print it. */
  readonly rootPassword: string;
  /** For an external server, the server's own `@@datadir`, which may be on another machine. */
  readonly dataDir: string;
  /** The directory holding data, socket, pid file and error log; empty for an external server. */
  readonly baseDir: string;
  /** True when this process did not start the server and so cannot kill or restart it. */
  readonly external: boolean;
  /** Shuts down gracefully (SIGTERM) and removes the temporary directory unless `TRIBUTARY_KEEP_SERVERS=1`. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash would; `restart()` brings the server back on the same data and port. */
  kill(): Promise<void>;
  /** Shuts down gracefully if running, then starts again on the same data and port. */
  restart(): Promise<void>;
}

export interface LocalMariaDbServer extends MariaDbServer {
  readonly host: '127.0.0.1';
  readonly rootUser: 'root';
  readonly external: false;
}

export interface StartMariaDbOptions {
  /** Loopback port to listen on; a free one is picked when absent. */
  port?: number;
  /**
   * Directory to run in, created if missing. When it already holds a data directory from an earlier
   * `startMariaDb` (kept with `TRIBUTARY_KEEP_SERVERS=1`), that data and root password are reused. A directory
   * given here belongs to the caller and is never removed; without it a temporary one is made and removed.
   */
  baseDir?: string;
  /** `--server-id`; defaults to 101. */
  serverId?: number;
  /** Further `mariadbd` options, appended after the standard ones so they can override them. */
  extraArgs?: string[];
}

const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 60_000;
const PORT_ATTEMPTS = 5;
const PASSWORD_FILE = 'root-password';

/**
 * Starts a throwaway MariaDB with the binlog settings CDC needs (ROW format, FULL row image and metadata,
 * strict GTIDs), listening on 127.0.0.1 only, with a random root password for `root@127.0.0.1`.
 *
 * Installs `mariadb-server` through apt when `mariadbd` is missing (see {@link ensureProgram}). The server is
 * SIGKILLed when this process exits without stopping it.
 */
export async function startMariaDb(options: StartMariaDbOptions = {}): Promise<LocalMariaDbServer> {
  const { mariadbd, installDb } = await mariaDbPrograms();
  const ownsDir = options.baseDir === undefined;
  const baseDir =
    options.baseDir === undefined
      ? await mkdtemp(join(tmpdir(), 'tributary-mariadb-'))
      : resolve(options.baseDir);
  let server: LocalMariaDb | undefined;
  try {
    await mkdir(baseDir, { recursive: true, mode: 0o700 });
    const dataDir = join(baseDir, 'data');
    const socket = join(baseDir, 's.sock');
    // sun_path holds 108 bytes; past that mariadbd fails with a less obvious message.
    if (Buffer.byteLength(socket) > 100) {
      throw startFailure(`the socket path ${socket} is too long for a Unix socket`, {
        hint: 'Pass a shorter baseDir, or set TMPDIR to a shorter directory.',
      });
    }
    const passwordFile = join(baseDir, PASSWORD_FILE);
    const reuse = existsSync(join(dataDir, 'mysql'));
    let password = '';
    if (reuse) {
      try {
        password = (await readFile(passwordFile, 'utf8')).trim();
      } catch (error) {
        throw startFailure(`${dataDir} holds data but ${passwordFile} cannot be read`, {
          hint: 'Use an empty baseDir, or one kept from an earlier startMariaDb.',
          cause: error,
        });
      }
    } else {
      await installDatabase(installDb, dataDir, baseDir);
    }

    server = new LocalMariaDb({
      mariadbd,
      baseDir,
      dataDir,
      socket,
      ownsDir,
      password,
      serverId: options.serverId ?? 101,
      extraArgs: options.extraArgs ?? [],
    });
    await server.launch(options.port, false);
    if (!reuse) {
      const secret = randomBytes(18).toString('base64url');
      await server.secureRoot(secret);
      await writeFile(passwordFile, `${secret}\n`, { mode: 0o600 });
    }
    await server.checkTcp();
    return server;
  } catch (error) {
    await server?.abandon();
    if (ownsDir && !keepServers()) await rm(baseDir, { recursive: true, force: true });
    throw error;
  }
}

/**
 * A handle to the server named by `TRIBUTARY_TEST_MYSQL_HOST`, `_PORT` (default 3306), `_USER` (default root)
 * and `_PASSWORD` (default empty), or undefined when `TRIBUTARY_TEST_MYSQL_HOST` is not set. Connects once
 * to fail early on a wrong address or password. Its `stop()` does nothing; `kill()` and `restart()` throw.
 */
export async function mariaDbFromEnv(
  env: NodeJS.ProcessEnv = process.env,
): Promise<MariaDbServer | undefined> {
  const {
    TRIBUTARY_TEST_MYSQL_HOST: host,
    TRIBUTARY_TEST_MYSQL_PORT: portText = '',
    TRIBUTARY_TEST_MYSQL_USER: userText = '',
    TRIBUTARY_TEST_MYSQL_PASSWORD: password = '',
  } = env;
  if (host === undefined || host === '') return undefined;
  const port = portText === '' ? 3306 : Number(portText);
  const user = userText === '' ? 'root' : userText;
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new TributaryError(
      'CONFIG_INVALID',
      `TRIBUTARY_TEST_MYSQL_PORT is not a port number: ${portText}`,
      {
        hint: 'Set TRIBUTARY_TEST_MYSQL_PORT to an integer from 1 to 65535, or leave it unset for 3306.',
      },
    );
  }

  let conn: Connection | undefined;
  try {
    conn = await createConnection({ host, port, user, password, connectTimeout: 10_000 });
    const [rows] = await conn.query<DataDirRow[]>('SELECT @@datadir AS datadir');
    return new ExternalMariaDb(host, port, user, password, rows[0]?.datadir ?? '');
  } catch (error) {
    const denied =
      typeof error === 'object' &&
      error !== null &&
      'code' in error &&
      error.code === 'ER_ACCESS_DENIED_ERROR';
    throw new TributaryError(
      denied ? 'SOURCE_AUTH_FAILED' : 'SOURCE_UNREACHABLE',
      `Cannot use the test server TRIBUTARY_TEST_MYSQL_HOST=${host} port ${port} as ${user}: ${messageOf(error)}`,
      {
        retry: 'fatal',
        cause: error,
        hint: denied
          ? 'Check TRIBUTARY_TEST_MYSQL_USER and TRIBUTARY_TEST_MYSQL_PASSWORD.'
          : 'Check that the server runs and TRIBUTARY_TEST_MYSQL_HOST/_PORT name it, or unset them to let the tests start their own MariaDB.',
      },
    );
  } finally {
    await conn?.end().catch(() => undefined);
  }
}

interface DataDirRow extends RowDataPacket {
  datadir: string;
}

interface RootHostRow extends RowDataPacket {
  user: string;
  host: string;
}

async function mariaDbPrograms(): Promise<{ mariadbd: string; installDb: string }> {
  const reason = 'to run a throwaway MariaDB for tests and the demo';
  try {
    // One after the other: both come from the same package, so the second finds what the first installed.
    const mariadbd = await ensureProgram({
      binary: 'mariadbd',
      searchDirs: ['/usr/sbin', '/usr/local/sbin', '/usr/local/mysql/bin', '/opt/mariadb/bin'],
      aptPackage: 'mariadb-server',
      reason,
    });
    const installDb = await ensureProgram({
      binary: 'mariadb-install-db',
      searchDirs: ['/usr/bin', '/usr/local/bin', '/usr/local/mysql/scripts', '/opt/mariadb/scripts'],
      aptPackage: 'mariadb-server',
      reason,
    });
    return { mariadbd, installDb };
  } catch (error) {
    if (isTributaryError(error) && error.code === 'DEPENDENCY_MISSING') {
      throw new TributaryError('DEPENDENCY_MISSING', error.message, {
        cause: error,
        hint: `${error.hint ?? 'Install mariadb-server.'}\nOr point the tests at an existing server with TRIBUTARY_TEST_MYSQL_HOST, _PORT, _USER and _PASSWORD.`,
      });
    }
    throw error;
  }
}

async function installDatabase(installDb: string, dataDir: string, baseDir: string): Promise<void> {
  const args = [
    '--no-defaults',
    `--datadir=${dataDir}`,
    ...(runningAsRoot() ? ['--user=root'] : []),
    '--auth-root-authentication-method=normal',
    '--skip-test-db',
  ];
  const output: Buffer[] = [];
  const child = spawn(installDb, args, { cwd: baseDir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (chunk: Buffer) => output.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => output.push(chunk));
  const code = await new Promise<number | null>((resolvePromise, reject) => {
    child.on('error', reject);
    child.on('close', resolvePromise);
  });
  if (code !== 0) {
    throw startFailure(
      `mariadb-install-db exited with code ${code}:\n${lastLines(Buffer.concat(output).toString('utf8'))}`,
    );
  }
}

interface LocalMariaDbConfig {
  mariadbd: string;
  baseDir: string;
  dataDir: string;
  socket: string;
  ownsDir: boolean;
  password: string;
  serverId: number;
  extraArgs: string[];
}

type ExitStatus = { code: number | null; signal: NodeJS.Signals | null };

class LocalMariaDb implements LocalMariaDbServer {
  readonly host = '127.0.0.1' as const;
  readonly rootUser = 'root' as const;
  readonly external = false as const;
  readonly baseDir: string;
  readonly dataDir: string;
  readonly #config: LocalMariaDbConfig;
  readonly #errorLog: string;
  #password: string;
  #port = 0;
  #child: ChildProcess | undefined;
  #exit: Promise<ExitStatus> | undefined;
  #stopped = false;
  /** Serialises stop, kill and restart so that a test racing them cannot leave two servers on one data dir. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(config: LocalMariaDbConfig) {
    this.#config = config;
    this.baseDir = config.baseDir;
    this.dataDir = config.dataDir;
    this.#errorLog = join(config.baseDir, 'error.log');
    this.#password = config.password;
    if (config.ownsDir) ownedDirs.add(config.baseDir);
  }

  get port(): number {
    return this.#port;
  }

  get rootPassword(): string {
    return this.#password;
  }

  stop(): Promise<void> {
    return this.#serially(async () => {
      if (this.#stopped) return;
      this.#stopped = true;
      await this.#shutdown('SIGTERM');
      ownedDirs.delete(this.baseDir);
      if (keepServers()) {
        process.stderr.write(
          `[tributary] kept MariaDB directory ${this.baseDir} (TRIBUTARY_KEEP_SERVERS=1); root password in ${join(this.baseDir, PASSWORD_FILE)}\n`,
        );
      } else if (this.#config.ownsDir) {
        await rm(this.baseDir, { recursive: true, force: true });
      }
    });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.stop();
  }

  kill(): Promise<void> {
    return this.#serially(async () => {
      this.#assertNotStopped('kill');
      await this.#shutdown('SIGKILL');
    });
  }

  restart(): Promise<void> {
    return this.#serially(async () => {
      this.#assertNotStopped('restart');
      await this.#shutdown('SIGTERM');
      await this.launch(this.#port, true);
    });
  }

  /** Spawns mariadbd and waits until it accepts connections, retrying on a fresh port if another took ours. */
  async launch(port: number | undefined, restarting: boolean): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const chosen = port ?? (await freePort());
      try {
        await this.#spawnAndWait(chosen, restarting);
        this.#port = chosen;
        return;
      } catch (error) {
        const lostRace = error instanceof BindFailure && port === undefined && attempt < PORT_ATTEMPTS;
        if (!lostRace) throw error instanceof BindFailure ? error.failure : error;
      }
    }
  }

  /** Replaces the passwordless accounts mariadb-install-db made with one password, reachable over TCP. */
  async secureRoot(secret: string): Promise<void> {
    const conn = await this.#socketConnection();
    try {
      // Kept out of the binlog so that CDC tests see only their own events, from GTID 0-<id>-1.
      await conn.query('SET SESSION sql_log_bin = 0');
      const [accounts] = await conn.query<RootHostRow[]>('SELECT User AS user, Host AS host FROM mysql.user');
      for (const { user, host } of accounts) {
        const wanted = user === 'root' && (host === 'localhost' || host === '127.0.0.1');
        if (!wanted && (user === 'root' || user === '')) await conn.query('DROP USER ?@?', [user, host]);
      }
      await conn.query("ALTER USER 'root'@'localhost' IDENTIFIED BY ?", [secret]);
      await conn.query("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ?", [secret]);
      await conn.query("ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY ?", [secret]);
      await conn.query("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION");
      await conn.query("GRANT PROXY ON ''@'%' TO 'root'@'127.0.0.1' WITH GRANT OPTION");
      this.#password = secret;
    } finally {
      await conn.end().catch(() => undefined);
    }
  }

  /** Proves the address tests will use, since readiness was checked over the socket. */
  async checkTcp(): Promise<void> {
    let conn: Connection | undefined;
    try {
      conn = await createConnection({
        host: this.host,
        port: this.#port,
        user: this.rootUser,
        password: this.#password,
        connectTimeout: 10_000,
      });
      await conn.query('SELECT 1');
    } catch (error) {
      throw startFailure(
        `it started but refuses root over TCP at 127.0.0.1:${this.#port}: ${messageOf(error)}`,
        {
          cause: error,
        },
      );
    } finally {
      await conn?.end().catch(() => undefined);
    }
  }

  /** Kills the server after a failed start; the caller reports the failure. */
  async abandon(): Promise<void> {
    this.#stopped = true;
    await this.#shutdown('SIGKILL');
    ownedDirs.delete(this.baseDir);
  }

  async #spawnAndWait(port: number, restarting: boolean): Promise<void> {
    const logStart = await fileSize(this.#errorLog);
    const config = this.#config;
    const args = [
      '--no-defaults',
      `--datadir=${config.dataDir}`,
      ...(runningAsRoot() ? ['--user=root'] : []),
      `--port=${port}`,
      '--bind-address=127.0.0.1',
      `--socket=${config.socket}`,
      `--pid-file=${join(config.baseDir, 'pid')}`,
      `--log-error=${this.#errorLog}`,
      `--log-bin=${join(config.dataDir, 'mysql-bin')}`,
      '--binlog-format=ROW',
      '--binlog-row-image=FULL',
      '--binlog-row-metadata=FULL',
      `--server-id=${config.serverId}`,
      '--gtid-strict-mode=1',
      '--skip-name-resolve',
      // After a kill the port may linger briefly; a restart must keep its port, so it waits instead of failing.
      ...(restarting ? ['--port-open-timeout=10'] : []),
      ...config.extraArgs,
    ];
    const child = spawn(config.mariadbd, args, { cwd: config.baseDir, stdio: 'ignore' });
    const exit = new Promise<ExitStatus>((resolvePromise) => {
      child.once('exit', (code, signal) => resolvePromise({ code, signal }));
      child.once('error', () => resolvePromise({ code: null, signal: null }));
    });
    // Unreferenced so that a forgotten server does not keep Node alive; the exit hook then kills it.
    child.unref();
    liveChildren.add(child);
    registerExitHook();
    void exit.then(() => liveChildren.delete(child));
    this.#child = child;
    this.#exit = exit;

    let exited: ExitStatus | undefined;
    void exit.then((status) => {
      exited = status;
    });
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let lastError: unknown;
    while (exited === undefined && Date.now() < deadline) {
      try {
        const conn = await this.#socketConnection();
        await conn.end().catch(() => undefined);
        return;
      } catch (error) {
        lastError = error;
      }
      await sleep(50);
    }

    if (exited === undefined) await this.#shutdown('SIGKILL');
    const tail = await logTail(this.#errorLog, logStart);
    const how =
      exited === undefined
        ? `did not accept connections within ${READY_TIMEOUT_MS / 1000} s (last error: ${messageOf(lastError)})`
        : `exited with ${exited.signal ?? `code ${exited.code}`}`;
    // Named only when it will still exist after the failed start has cleaned up.
    const log = this.#config.ownsDir && !keepServers() ? 'its error log' : this.#errorLog;
    const failure = startFailure(`mariadbd on port ${port} ${how}. Last lines of ${log}:\n${tail}`);
    if (exited !== undefined && /Bind on TCP\/IP port|Address already in use/i.test(tail)) {
      throw new BindFailure(failure);
    }
    throw failure;
  }

  #socketConnection(): Promise<Connection> {
    const options: ConnectionOptions = {
      socketPath: this.#config.socket,
      user: this.rootUser,
      password: this.#password,
      connectTimeout: 2_000,
    };
    return createConnection(options);
  }

  /** Sends `signal` and waits for the exit, escalating to SIGKILL if a graceful shutdown hangs. */
  async #shutdown(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const child = this.#child;
    const exit = this.#exit;
    if (child === undefined || exit === undefined) return;
    if (child.exitCode === null && child.signalCode === null) {
      // Referenced again so that Node waits for the shutdown instead of exiting (and SIGKILLing) mid-way.
      child.ref();
      child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
      try {
        await exit;
      } finally {
        clearTimeout(timer);
      }
    }
    this.#child = undefined;
    this.#exit = undefined;
  }

  #assertNotStopped(operation: string): void {
    if (this.#stopped) {
      throw new TributaryError(
        'USAGE',
        `Cannot ${operation} the MariaDB in ${this.baseDir}: it was stopped.`,
        {
          hint: 'Start a new server with startMariaDb().',
        },
      );
    }
  }

  #serially<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(operation, operation);
    this.#queue = result.catch(() => undefined);
    return result;
  }
}

class ExternalMariaDb implements MariaDbServer {
  readonly external = true as const;
  readonly baseDir = '';
  readonly #password: string;

  constructor(
    readonly host: string,
    readonly port: number,
    readonly rootUser: string,
    password: string,
    readonly dataDir: string,
  ) {
    this.#password = password;
  }

  get rootPassword(): string {
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
      `Cannot ${operation} the MariaDB at ${this.host}:${this.port}: TRIBUTARY_TEST_MYSQL_HOST names a server this process did not start.`,
      { hint: 'Skip this test when server.external is true, or unset TRIBUTARY_TEST_MYSQL_HOST.' },
    );
  }
}

/** Marks a start that failed because the port was taken, which a fresh port may fix. */
class BindFailure extends Error {
  constructor(readonly failure: TributaryError) {
    super(failure.message);
  }
}

function startFailure(what: string, options: { hint?: string; cause?: unknown } = {}): TributaryError {
  return new TributaryError('SOURCE_UNREACHABLE', `Could not start a throwaway MariaDB: ${what}`, {
    retry: 'fatal',
    hint: options.hint ?? 'Run with TRIBUTARY_KEEP_SERVERS=1 to keep the server directory for inspection.',
    ...(options.cause === undefined ? {} : { cause: options.cause }),
  });
}

const liveChildren = new Set<ChildProcess>();
const ownedDirs = new Set<string>();
let exitHookRegistered = false;

/**
 * 'exit' handlers must be synchronous: SIGKILL cannot be refused, and the directories go on a best-effort
 * basis because the server may still be dying.
 */
function registerExitHook(): void {
  if (exitHookRegistered) return;
  exitHookRegistered = true;
  process.on('exit', () => {
    for (const child of liveChildren) {
      try {
        child.kill('SIGKILL');
      } catch {
        // Already gone.
      }
    }
    if (keepServers()) return;
    for (const dir of ownedDirs) {
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      } catch {
        // Left for the OS's temp cleaning.
      }
    }
  });
}

function keepServers(): boolean {
  const { TRIBUTARY_KEEP_SERVERS } = process.env;
  return TRIBUTARY_KEEP_SERVERS === '1';
}

function runningAsRoot(): boolean {
  return process.getuid?.() === 0;
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

/** The last lines written to a log since `from`, reading at most the final 16 KiB. */
async function logTail(path: string, from: number): Promise<string> {
  try {
    const handle = await open(path, 'r');
    try {
      const size = (await handle.stat()).size;
      const start = Math.max(from, size - 16_384);
      const buffer = Buffer.alloc(Math.max(0, size - start));
      await handle.read(buffer, 0, buffer.length, start);
      return lastLines(buffer.toString('utf8')) || '(empty)';
    } finally {
      await handle.close();
    }
  } catch (error) {
    return `(unreadable: ${messageOf(error)})`;
  }
}

function lastLines(text: string, count = 30): string {
  return text.trimEnd().split('\n').slice(-count).join('\n');
}
