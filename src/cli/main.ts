/**
 * The `tributary` command line. One file per command under commands/; this file only assembles them and
 * turns errors into a message, a hint and an exit code (1 for errors, 2 for usage).
 */
import { resolve } from 'node:path';
import { Command, CommanderError } from 'commander';
import { isTributaryError, messageOf, TributaryError } from '../core/errors.js';
import { registerPreflightCommand } from './commands/preflight.js';
import { registerRefreshCommand } from './commands/refresh.js';
import { registerRunCommand } from './commands/run.js';
import { registerSecretsCommand } from './commands/secrets.js';
import { registerSqlCommand } from './commands/sql.js';
import { registerStartCommand } from './commands/start.js';
import { registerStatusCommand } from './commands/status.js';
import type { CliContext } from './context.js';

export const VERSION = '0.1.0';

export function buildProgram(ctx: CliContext): Command {
  const program = new Command('tributary')
    .description('Change data capture from MySQL, MariaDB and PostgreSQL into bronze Delta Lake tables.')
    .version(VERSION)
    .option('-c, --config <file>', 'configuration file', 'tributary.yaml')
    .showHelpAfterError('(run tributary --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => ctx.stdout.write(s),
      writeErr: (s) => ctx.stderr.write(s),
    });
  registerPreflightCommand(program, ctx);
  registerRunCommand(program, ctx);
  registerRefreshCommand(program, ctx);
  registerStartCommand(program, ctx);
  registerSqlCommand(program, ctx);
  registerStatusCommand(program, ctx);
  registerSecretsCommand(program, { stdin: ctx.stdin, stdout: ctx.stdout });
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  let program: Command | undefined;
  const ctx: CliContext = {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    configPath: () => resolve(String(program?.opts()['config'] ?? 'tributary.yaml')),
  };
  program = buildProgram(ctx);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    // A command may report failure without throwing (preflight with a FAIL finding).
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? 0 : 2;
    }
    printError(error, ctx.stderr);
    return isTributaryError(error) && error.code === 'USAGE' ? 2 : 1;
  }
}

function printError(error: unknown, stderr: NodeJS.WritableStream): void {
  if (isTributaryError(error)) {
    stderr.write(`tributary: error[${error.code}]: ${error.message}\n`);
    if (error.hint) stderr.write(`  hint: ${error.hint}\n`);
    return;
  }
  const wrapped = new TributaryError('INTERNAL', messageOf(error), { cause: error });
  stderr.write(`tributary: error[${wrapped.code}]: ${wrapped.message}\n`);
  if (process.env['TRIBUTARY_DEBUG'] && error instanceof Error) stderr.write(`${error.stack}\n`);
}
