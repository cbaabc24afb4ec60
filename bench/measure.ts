/**
 * Shared measuring helpers. Every figure is a median over several runs, and every Tributary figure is
 * reported as a ratio against a limit measured in the same process run, because these machines are noisy.
 */
import { spawn } from 'node:child_process';

export interface Timing {
  readonly medianMs: number;
  readonly runsMs: readonly number[];
}

export async function timeRuns(runs: number, body: () => Promise<unknown>): Promise<Timing> {
  const runsMs: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    await body();
    runsMs.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  const sorted = [...runsMs].sort((a, b) => a - b);
  return { medianMs: sorted[Math.floor(sorted.length / 2)] as number, runsMs };
}

/** Runs a command with its output discarded; the password travels in the environment, never in argv. */
export function runDiscarding(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${command} exited ${code}: ${stderr}`)),
    );
  });
}

export function rate(count: number, ms: number): number {
  return Math.round((count / ms) * 1000);
}
