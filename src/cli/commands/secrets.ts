/**
 * `tributary secrets ...`, modelled on `databricks secrets`. A value is only ever read from stdin: a value on
 * the command line would land in shell history and in every process listing.
 */
import type { Command } from 'commander';
import { TributaryError } from '../../core/errors.js';
import { SecretStore, tributaryHome } from '../../secrets/secret-store.js';

export interface SecretsCommandIo {
  stdin: NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
}

interface ScopeOptions {
  scope: string;
}

interface KeyOptions extends ScopeOptions {
  key: string;
}

export function registerSecretsCommand(program: Command, io: SecretsCommandIo): void {
  const secrets = program
    .command('secrets')
    .description('manage the local secret store that {{secrets/<scope>/<key>}} references resolve against');
  // The store is opened per action so that TRIBUTARY_HOME is read when the command runs, not when it is built.
  const store = () => new SecretStore(tributaryHome());
  const printLines = (lines: string[]) => {
    if (lines.length > 0) io.stdout.write(`${lines.join('\n')}\n`);
  };

  secrets
    .command('create-scope')
    .description('create a secret scope')
    .requiredOption('--scope <scope>', 'scope name')
    .action(async (options: ScopeOptions) => {
      await store().createScope(options.scope);
    });

  secrets
    .command('put')
    .description('store a secret, reading its value from stdin (one trailing newline is removed)')
    .requiredOption('--scope <scope>', 'scope name')
    .requiredOption('--key <key>', 'key name')
    .action(async (options: KeyOptions) => {
      const s = store();
      // Fail on a bad name or a missing scope before the user types a password.
      await s.list(options.scope);
      const value = await readSecretValue(io.stdin, options.scope, options.key);
      await s.put(options.scope, options.key, value);
    });

  secrets
    .command('list-scopes')
    .description('list secret scopes')
    .action(async () => {
      printLines(await store().listScopes());
    });

  secrets
    .command('list')
    .description('list the key names in a scope (never the values)')
    .requiredOption('--scope <scope>', 'scope name')
    .action(async (options: ScopeOptions) => {
      printLines(await store().list(options.scope));
    });

  secrets
    .command('delete')
    .description('delete a secret')
    .requiredOption('--scope <scope>', 'scope name')
    .requiredOption('--key <key>', 'key name')
    .action(async (options: KeyOptions) => {
      await store().delete(options.scope, options.key);
    });

  secrets
    .command('delete-scope')
    .description('delete a scope and every secret in it')
    .requiredOption('--scope <scope>', 'scope name')
    .action(async (options: ScopeOptions) => {
      await store().deleteScope(options.scope);
    });
}

interface MaybeTty {
  isTTY?: boolean;
  setRawMode?: (mode: boolean) => unknown;
}

async function readSecretValue(stdin: NodeJS.ReadableStream, scope: string, key: string): Promise<string> {
  const tty = stdin as NodeJS.ReadableStream & MaybeTty;
  let text: string;
  if (tty.isTTY === true) {
    process.stderr.write(`value for ${scope}/${key} (input is hidden): `);
    text = await readHiddenLine(tty);
    process.stderr.write('\n');
  } else {
    text = await readAll(stdin);
  }
  // `echo` adds one newline and editors add one at the end of a file; anything more is part of the value.
  const value = text.endsWith('\r\n') ? text.slice(0, -2) : text.endsWith('\n') ? text.slice(0, -1) : text;
  if (value === '') {
    throw new TributaryError('USAGE', `refusing to store an empty value for secret ${scope}/${key}`, {
      hint: `pipe the value in, e.g.: echo -n '...' | tributary secrets put --scope ${scope} --key ${key}`,
    });
  }
  return value;
}

async function readAll(stdin: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stdin) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * One line from a terminal without echoing it (so the password stays out of scrollback), handling
 * backspace; Ctrl-C aborts, Ctrl-D or Enter ends the line.
 */
function readHiddenLine(stdin: NodeJS.ReadableStream & MaybeTty): Promise<string> {
  return new Promise((resolve, reject) => {
    const raw = typeof stdin.setRawMode === 'function';
    if (raw) stdin.setRawMode?.(true);
    let line = '';
    const finish = (error?: TributaryError) => {
      stdin.removeListener('data', onData);
      stdin.removeListener('end', onEnd);
      if (raw) stdin.setRawMode?.(false);
      stdin.pause();
      if (error === undefined) resolve(line);
      else reject(error);
    };
    const onEnd = () => finish();
    const onData = (chunk: string | Buffer) => {
      for (const char of typeof chunk === 'string' ? chunk : chunk.toString('utf8')) {
        if (char === '\r' || char === '\n' || char === '\u0004') return finish();
        if (char === '\u0003') return finish(new TributaryError('USAGE', 'cancelled; no secret was stored'));
        if (char === '\u007f' || char === '\b') line = Array.from(line).slice(0, -1).join('');
        else line += char;
      }
    };
    stdin.on('data', onData);
    stdin.on('end', onEnd);
    stdin.resume();
  });
}
