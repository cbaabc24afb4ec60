import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isTributaryError, type TributaryError } from '../core/errors.js';
import {
  isSecretReference,
  parseSecretReference,
  resolveSecretReference,
  SecretStore,
  secretEnvVarName,
  tributaryHome,
} from './secret-store.js';

const SECRET_VALUE = 'hunter2-s3cr3t-VALUE';

async function caught(promise: Promise<unknown>): Promise<TributaryError> {
  try {
    await promise;
  } catch (error) {
    if (isTributaryError(error)) return error;
    throw error;
  }
  throw new Error('expected a TributaryError');
}

function expectNoSecret(error: TributaryError, secret = SECRET_VALUE): void {
  expect(error.message).not.toContain(secret);
  expect(error.hint ?? '').not.toContain(secret);
}

const modeOf = async (path: string) => (await stat(path)).mode & 0o777;

let home: string;
let store: SecretStore;

beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'tributary-secrets-'));
  store = new SecretStore(home);
});

afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

describe('tributaryHome', () => {
  it('uses TRIBUTARY_HOME when set, resolved to an absolute path', () => {
    expect(tributaryHome({ TRIBUTARY_HOME: '/srv/trib' })).toBe('/srv/trib');
    expect(tributaryHome({ TRIBUTARY_HOME: 'rel/dir' })).toBe(join(process.cwd(), 'rel/dir'));
  });

  it('falls back to ~/.tributary when unset or empty', () => {
    expect(tributaryHome({})).toBe(join(homedir(), '.tributary'));
    expect(tributaryHome({ TRIBUTARY_HOME: '' })).toBe(join(homedir(), '.tributary'));
  });
});

describe('SecretStore', () => {
  it('creates scopes and secrets with owner-only permissions, even under a permissive umask', async () => {
    // process.umask cannot be changed inside a worker thread; the modes must hold either way.
    const previous = isMainThread ? process.umask(0o000) : undefined;
    try {
      await store.createScope('mysql_credentials');
      await store.put('mysql_credentials', 'cdc_password', SECRET_VALUE);
    } finally {
      if (previous !== undefined) process.umask(previous);
    }
    expect(await modeOf(join(home, 'secrets'))).toBe(0o700);
    expect(await modeOf(join(home, 'secrets', 'mysql_credentials'))).toBe(0o700);
    const file = join(home, 'secrets', 'mysql_credentials', 'cdc_password');
    expect(await modeOf(file)).toBe(0o600);
    expect(await readFile(file, 'utf8')).toBe(SECRET_VALUE);
  });

  it('tightens a secrets directory that was created loosely', async () => {
    await mkdir(join(home, 'secrets'));
    await chmod(join(home, 'secrets'), 0o755);
    await store.createScope('s');
    expect(await modeOf(join(home, 'secrets'))).toBe(0o700);
  });

  it('creates the home directory if it does not exist', async () => {
    const nested = new SecretStore(join(home, 'a', 'b'));
    await nested.createScope('s');
    expect(await nested.listScopes()).toEqual(['s']);
  });

  it('round-trips values exactly, including newlines and unicode, and overwrites atomically', async () => {
    await store.createScope('s');
    const tricky = 'line1\nline2\r\n  päss wörd 🔑  ';
    await store.put('s', 'k', tricky);
    expect(await store.get('s', 'k')).toBe(tricky);
    await store.put('s', 'k', 'second');
    expect(await store.get('s', 'k')).toBe('second');
    // No temp files are left behind after the renames.
    expect(await readdir(join(home, 'secrets', 's'))).toEqual(['k']);
    expect(await modeOf(join(home, 'secrets', 's', 'k'))).toBe(0o600);
  });

  it('refuses to create a scope twice', async () => {
    await store.createScope('s');
    const error = await caught(store.createScope('s'));
    expect(error.code).toBe('SECRET_SCOPE_EXISTS');
    expect(error.message).toContain('"s"');
  });

  it('lists scopes and key names sorted, never values, ignoring stray files', async () => {
    expect(await store.listScopes()).toEqual([]);
    await store.createScope('zeta');
    await store.createScope('alpha');
    await store.put('alpha', 'b_key', SECRET_VALUE);
    await store.put('alpha', 'a.key-1', SECRET_VALUE);
    await writeFile(join(home, 'secrets', 'alpha', '~leftover.tmp'), 'x');
    await writeFile(join(home, 'secrets', 'not-a-scope-file'), 'x');
    expect(await store.listScopes()).toEqual(['alpha', 'zeta']);
    const keys = await store.list('alpha');
    expect(keys).toEqual(['a.key-1', 'b_key']);
    expect(keys.join('\n')).not.toContain(SECRET_VALUE);
    expect(await store.list('zeta')).toEqual([]);
  });

  it('requires the scope to exist for put, list, delete and deleteScope', async () => {
    // One at a time: a rejection nobody awaits yet is an unhandled rejection while an earlier one is awaited.
    for (const attempt of [
      () => store.put('missing', 'k', SECRET_VALUE),
      () => store.list('missing'),
      () => store.delete('missing', 'k'),
      () => store.deleteScope('missing'),
    ]) {
      const error = await caught(attempt());
      expect(error.code).toBe('SECRET_SCOPE_NOT_FOUND');
      expect(error.message).toContain('"missing"');
      expect(error.hint).toBe('create it with: tributary secrets create-scope --scope missing');
      expectNoSecret(error);
    }
  });

  it('returns undefined for a missing key or scope', async () => {
    expect(await store.get('missing', 'k')).toBeUndefined();
    await store.createScope('s');
    expect(await store.get('s', 'k')).toBeUndefined();
  });

  it('deletes keys and scopes', async () => {
    await store.createScope('s');
    await store.put('s', 'k1', 'v1');
    await store.put('s', 'k2', 'v2');
    await store.delete('s', 'k1');
    expect(await store.list('s')).toEqual(['k2']);
    const error = await caught(store.delete('s', 'k1'));
    expect(error.code).toBe('SECRET_NOT_FOUND');
    expect(error.message).toContain('"k1"');
    await store.deleteScope('s');
    expect(await store.listScopes()).toEqual([]);
    expect(await store.get('s', 'k2')).toBeUndefined();
  });

  it.each(['', 'has space', 'a/b', '../etc', '.', '..', 'x'.repeat(129), 'ünï', 'a~b'])(
    'rejects the name %j',
    async (name) => {
      for (const attempt of [
        store.createScope(name),
        store.put(name, 'k', SECRET_VALUE),
        store.put('s', name, SECRET_VALUE),
        store.get('s', name),
        store.list(name),
        store.delete('s', name),
        store.deleteScope(name),
      ]) {
        const error = await caught(attempt);
        expect(error.code).toBe('SECRET_INVALID_NAME');
        expect(error.hint).toMatch(/letters, digits/);
        expectNoSecret(error);
      }
    },
  );

  it('accepts the full allowed alphabet up to 128 characters', async () => {
    const name = `Az09_.-${'x'.repeat(121)}`;
    expect(name).toHaveLength(128);
    await store.createScope(name);
    await store.put(name, name, 'v');
    expect(await store.get(name, name)).toBe('v');
  });
});

describe('secret references', () => {
  it('parses references, tolerating whitespace inside the braces', () => {
    expect(parseSecretReference('{{secrets/mysql_credentials/cdc_password}}')).toEqual({
      scope: 'mysql_credentials',
      key: 'cdc_password',
    });
    expect(parseSecretReference('{{ secrets/a.b/c-d }}')).toEqual({ scope: 'a.b', key: 'c-d' });
    expect(parseSecretReference('{{\tsecrets/a/b\n}}')).toEqual({ scope: 'a', key: 'b' });
  });

  it.each([
    'hunter2',
    '',
    '{{secrets/a}}',
    '{{secrets/a/b/c}}',
    '{{secret/a/b}}',
    '{secrets/a/b}',
    '{{secrets/a b/c}}',
    '{{secrets/../b}}',
    'prefix{{secrets/a/b}}',
    '{{secrets/a/b}}suffix',
  ])('rejects %j', (s) => {
    expect(parseSecretReference(s)).toBeUndefined();
    expect(isSecretReference(s)).toBe(false);
  });

  it('derives environment variable names', () => {
    expect(secretEnvVarName('mysql_credentials', 'cdc_password')).toBe(
      'TRIBUTARY_SECRET_MYSQL_CREDENTIALS__CDC_PASSWORD',
    );
    expect(secretEnvVarName('db.prod', 'a-b')).toBe('TRIBUTARY_SECRET_DB_PROD__A_B');
  });

  it('prefers the environment variable over the store', async () => {
    await store.createScope('mysql_credentials');
    await store.put('mysql_credentials', 'cdc_password', 'from-store');
    const ref = '{{ secrets/mysql_credentials/cdc_password }}';
    expect(await resolveSecretReference(ref, store, {})).toBe('from-store');
    expect(
      await resolveSecretReference(ref, store, {
        TRIBUTARY_SECRET_MYSQL_CREDENTIALS__CDC_PASSWORD: 'from-env',
      }),
    ).toBe('from-env');
    // An empty variable is treated as unset.
    expect(
      await resolveSecretReference(ref, store, { TRIBUTARY_SECRET_MYSQL_CREDENTIALS__CDC_PASSWORD: '' }),
    ).toBe('from-store');
  });

  it('resolves from the environment without any store on disk', async () => {
    const empty = new SecretStore(join(home, 'nothing-here'));
    expect(
      await resolveSecretReference('{{secrets/a-b/c.d}}', empty, { TRIBUTARY_SECRET_A_B__C_D: 'v' }),
    ).toBe('v');
  });

  it('reports a missing secret with the env var name and the put command', async () => {
    const error = await caught(
      resolveSecretReference('{{secrets/mysql_credentials/cdc_password}}', store, {}),
    );
    expect(error.code).toBe('SECRET_NOT_FOUND');
    expect(error.message).toContain('mysql_credentials/cdc_password');
    expect(error.message).toContain('TRIBUTARY_SECRET_MYSQL_CREDENTIALS__CDC_PASSWORD');
    expect(error.hint).toContain(
      "echo -n '...' | tributary secrets put --scope mysql_credentials --key cdc_password",
    );
    expect(error.hint).toContain('TRIBUTARY_SECRET_MYSQL_CREDENTIALS__CDC_PASSWORD');
  });

  it('does not echo a non-reference (it may be a plaintext password)', async () => {
    const error = await caught(resolveSecretReference(SECRET_VALUE, store, {}));
    expect(error.code).toBe('CONFIG_INVALID');
    expectNoSecret(error);
  });

  it('never puts a value in an error, even when other secrets exist in the scope', async () => {
    await store.createScope('s');
    await store.put('s', 'other', SECRET_VALUE);
    const error = await caught(resolveSecretReference('{{secrets/s/missing}}', store, {}));
    expect(error.code).toBe('SECRET_NOT_FOUND');
    expectNoSecret(error);
  });
});
