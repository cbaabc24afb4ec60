/**
 * Runs the real `tributary` executable (bin/tributary.js over dist/) in a child process, the way users do.
 * The test script builds dist/ before the integration tests start.
 */
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI_PATH = resolve(dirname(fileURLToPath(import.meta.url)), '../../bin/tributary.js');

export interface CliRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliOptions {
  readonly cwd: string;
  /** Added to the environment of this process. */
  readonly env?: NodeJS.ProcessEnv;
  readonly input?: string;
  /** SIGKILL the process after this many milliseconds (crash tests). */
  readonly killAfterMs?: number;
}

export function runCli(args: readonly string[], options: CliOptions): Promise<CliRun> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [CLI_PATH, ...args], {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      stdio: 'pipe',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer =
      options.killAfterMs === undefined
        ? undefined
        : setTimeout(() => child.kill('SIGKILL'), options.killAfterMs);
    child.on('error', fail);
    child.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      done({ code, signal, stdout, stderr });
    });
    child.stdin.end(options.input ?? '');
  });
}

/** A tributary.yaml for one MySQL connection, one gateway and one pipeline over whole schemas or tables. */
export function pipelineConfig(options: {
  host: string;
  port: number;
  user: string;
  secret?: string;
  objects: string;
  warehouse?: string;
}): string {
  return `warehouse: ${options.warehouse ?? './lakehouse'}
connections:
  src:
    type: mysql
    host: ${options.host}
    port: ${options.port}
    user: ${options.user}
    password: "${options.secret ?? '{{secrets/test/password}}'}"
gateways:
  gw:
    connection: src
    storage: lake.landing.staging
pipelines:
  p:
    gateway: gw
    objects:
${options.objects}
`;
}

export const TEST_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
