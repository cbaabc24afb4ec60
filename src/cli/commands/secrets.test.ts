import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable, Writable } from 'node:stream';
import { Command, CommanderError } from 'commander';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { isTributaryError } from '../../core/errors.js';
import { registerSecretsCommand } from './secrets.js';

const SECRET_VALUE = 's3cr3t-from-stdin';

let home: string;

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'tributary-cli-secrets-'));
  vi.stubEnv('TRIBUTARY_HOME', home);
});

afterEach(async () => {
  vi.unstubAllEnvs();
  await rm(home, { recursive: true, force: true });
});

interface RunResult {
  stdout: string;
  error: unknown;
}

async function run(args: string[], stdin: NodeJS.ReadableStream = Readable.from([])): Promise<RunResult> {
  let stdout = '';
  const out = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      stdout += chunk.toString('utf8');
      callback();
    },
  });
  const program = new Command('tributary')
    .exitOverride()
    .configureOutput({ writeOut: (s) => out.write(s), writeErr: () => {} });
  registerSecretsCommand(program, { stdin, stdout: out });
  try {
    await program.parseAsync(args, { from: 'user' });
    return { stdout, error: undefined };
  } catch (error) {
    return { stdout, error };
  }
}

async function ok(args: string[], stdin?: NodeJS.ReadableStream): Promise<string> {
  const { stdout, error } = await run(args, stdin);
  if (error !== undefined) throw error;
  return stdout;
}

const secretFile = (scope: string, key: string) => join(home, 'secrets', scope, key);

describe('tributary secrets', () => {
  it('creates a scope, stores a value from stdin and lists names only', async () => {
    await ok(['secrets', 'create-scope', '--scope', 'mysql_credentials']);
    await ok(
      ['secrets', 'put', '--scope', 'mysql_credentials', '--key', 'cdc_password'],
      Readable.from([`${SECRET_VALUE}\n`]),
    );
    expect(await readFile(secretFile('mysql_credentials', 'cdc_password'), 'utf8')).toBe(SECRET_VALUE);
    expect((await stat(secretFile('mysql_credentials', 'cdc_password'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(home, 'secrets', 'mysql_credentials'))).mode & 0o777).toBe(0o700);

    expect(await ok(['secrets', 'list-scopes'])).toBe('mysql_credentials\n');
    const listed = await ok(['secrets', 'list', '--scope', 'mysql_credentials']);
    expect(listed).toBe('cdc_password\n');
    expect(listed).not.toContain(SECRET_VALUE);
  });

  it('strips exactly one trailing newline or CRLF, in chunks', async () => {
    await ok(['secrets', 'create-scope', '--scope', 's']);
    const cases: [string[], string][] = [
      [['abc'], 'abc'],
      [['abc\n'], 'abc'],
      [['abc\r\n'], 'abc'],
      [['abc\n\n'], 'abc\n'],
      [['line1\nline2\n'], 'line1\nline2'],
      [['ab', 'c\r', '\n'], 'abc'],
      [['  spaced  \n'], '  spaced  '],
    ];
    for (const [chunks, expected] of cases) {
      await ok(
        ['secrets', 'put', '--scope', 's', '--key', 'k'],
        Readable.from(chunks.map((c) => Buffer.from(c))),
      );
      expect(await readFile(secretFile('s', 'k'), 'utf8')).toBe(expected);
    }
  });

  it.each([[''], ['\n'], ['\r\n']])('refuses the empty value %j', async (input) => {
    await ok(['secrets', 'create-scope', '--scope', 's']);
    const { error } = await run(['secrets', 'put', '--scope', 's', '--key', 'k'], Readable.from([input]));
    expect(isTributaryError(error) && error.code).toBe('USAGE');
    await expect(stat(secretFile('s', 'k'))).rejects.toThrow();
  });

  it('reads one hidden line from a terminal', async () => {
    await ok(['secrets', 'create-scope', '--scope', 's']);
    const rawModes: boolean[] = [];
    const tty = Object.assign(new PassThrough(), {
      isTTY: true,
      setRawMode: (mode: boolean) => rawModes.push(mode),
    });
    const stderr = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const done = ok(['secrets', 'put', '--scope', 's', '--key', 'k'], tty);
      // Typed "pax", backspace, "ss", Enter, and more that must be ignored.
      setImmediate(() => tty.write('pax\u007fss\rignored'));
      await done;
      const prompt = stderr.mock.calls.map((c) => String(c[0])).join('');
      expect(prompt).toContain('s/k');
      expect(prompt).not.toContain('pass');
    } finally {
      stderr.mockRestore();
    }
    expect(await readFile(secretFile('s', 'k'), 'utf8')).toBe('pass');
    expect(rawModes).toEqual([true, false]);
  });

  it('reports a missing scope on put before reading stdin', async () => {
    const stdin = new PassThrough();
    const { error } = await run(['secrets', 'put', '--scope', 'nope', '--key', 'k'], stdin);
    expect(isTributaryError(error) && error.code).toBe('SECRET_SCOPE_NOT_FOUND');
    expect(isTributaryError(error) && error.hint).toBe(
      'create it with: tributary secrets create-scope --scope nope',
    );
  });

  it('reports an existing scope and invalid names as TributaryErrors', async () => {
    await ok(['secrets', 'create-scope', '--scope', 's']);
    const exists = await run(['secrets', 'create-scope', '--scope', 's']);
    expect(isTributaryError(exists.error) && exists.error.code).toBe('SECRET_SCOPE_EXISTS');
    const invalid = await run(['secrets', 'create-scope', '--scope', '../escape']);
    expect(isTributaryError(invalid.error) && invalid.error.code).toBe('SECRET_INVALID_NAME');
    const badKey = await run(
      ['secrets', 'put', '--scope', 's', '--key', 'a/b'],
      Readable.from([SECRET_VALUE]),
    );
    expect(isTributaryError(badKey.error) && badKey.error.code).toBe('SECRET_INVALID_NAME');
    expect(isTributaryError(badKey.error) && badKey.error.message).not.toContain(SECRET_VALUE);
  });

  it('deletes keys and scopes', async () => {
    await ok(['secrets', 'create-scope', '--scope', 's']);
    await ok(['secrets', 'put', '--scope', 's', '--key', 'a'], Readable.from(['1']));
    await ok(['secrets', 'put', '--scope', 's', '--key', 'b'], Readable.from(['2']));
    await ok(['secrets', 'delete', '--scope', 's', '--key', 'a']);
    expect(await ok(['secrets', 'list', '--scope', 's'])).toBe('b\n');
    const missing = await run(['secrets', 'delete', '--scope', 's', '--key', 'a']);
    expect(isTributaryError(missing.error) && missing.error.code).toBe('SECRET_NOT_FOUND');
    await ok(['secrets', 'delete-scope', '--scope', 's']);
    expect(await ok(['secrets', 'list-scopes'])).toBe('');
    const gone = await run(['secrets', 'list', '--scope', 's']);
    expect(isTributaryError(gone.error) && gone.error.code).toBe('SECRET_SCOPE_NOT_FOUND');
  });

  it('leaves required options to commander', async () => {
    const { error } = await run(['secrets', 'put', '--scope', 's']);
    expect(error).toBeInstanceOf(CommanderError);
    expect((error as CommanderError).code).toBe('commander.missingMandatoryOptionValue');
  });

  it('reads TRIBUTARY_HOME when the command runs', async () => {
    const other = await mkdtemp(join(tmpdir(), 'tributary-cli-secrets-other-'));
    try {
      const program = new Command('tributary').exitOverride();
      registerSecretsCommand(program, { stdin: Readable.from([]), stdout: new PassThrough() });
      vi.stubEnv('TRIBUTARY_HOME', other);
      await program.parseAsync(['secrets', 'create-scope', '--scope', 'elsewhere'], { from: 'user' });
      expect((await stat(join(other, 'secrets', 'elsewhere'))).isDirectory()).toBe(true);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });
});
