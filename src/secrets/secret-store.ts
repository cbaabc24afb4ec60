/**
 * A local secret store in the manner of `databricks secrets`: named scopes holding named keys, one file per
 * secret under `<home>/secrets/<scope>/<key>`, readable only by the owner.
 *
 * Configuration never holds a password; it holds a reference `{{secrets/<scope>/<key>}}` that is resolved at
 * run time from an environment variable (for containers and CI) or from this store (for people).
 *
 * No error or log message built here contains a secret value: only scope names, key names and paths.
 */
import { randomBytes } from 'node:crypto';
import type { Dirent } from 'node:fs';
import { chmod, mkdir, open, readdir, readFile, rename, rm, stat, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { TributaryError } from '../core/errors.js';

const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

/**
 * `{{secrets/<scope>/<key>}}`, with whitespace tolerated inside the braces and around the whole reference.
 * The name classes are wider than {@link NAME_PATTERN} on purpose, so that a reference with a bad name is
 * reported as a bad name rather than as "not a reference" (which would read as a plaintext password).
 */
const REFERENCE_PATTERN = /^\s*\{\{\s*secrets\/([^/{}\s]+)\/([^/{}\s]+)\s*\}\}\s*$/;

/** `TRIBUTARY_HOME`, or `~/.tributary`. */
export function tributaryHome(env: NodeJS.ProcessEnv = process.env): string {
  const { TRIBUTARY_HOME: fromEnv } = env;
  return fromEnv !== undefined && fromEnv !== '' ? resolve(fromEnv) : join(homedir(), '.tributary');
}

export interface SecretReference {
  scope: string;
  key: string;
}

/** The scope and key of a `{{secrets/<scope>/<key>}}` reference, or undefined if `s` is not one. */
export function parseSecretReference(s: string): SecretReference | undefined {
  const match = REFERENCE_PATTERN.exec(s);
  if (match === null) return undefined;
  const [, scope, key] = match;
  if (scope === undefined || key === undefined || !isValidName(scope) || !isValidName(key)) return undefined;
  return { scope, key };
}

export function isSecretReference(s: string): boolean {
  return parseSecretReference(s) !== undefined;
}

/**
 * The environment variable that overrides a secret: `TRIBUTARY_SECRET_<SCOPE>__<KEY>`, upper-cased, with
 * every character outside `[A-Z0-9_]` replaced by `_` (so `db.prod`/`a-b` maps to `TRIBUTARY_SECRET_DB_PROD__A_B`).
 */
export function secretEnvVarName(scope: string, key: string): string {
  const clean = (s: string) => s.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  return `TRIBUTARY_SECRET_${clean(scope)}__${clean(key)}`;
}

/**
 * The value a secret reference stands for: the environment variable first (so a deployment can inject
 * secrets without a store on disk), then the store. An empty environment variable counts as unset, because
 * the store never holds an empty value and an empty variable is far more often an accident than a password.
 */
export async function resolveSecretReference(
  ref: string,
  store: SecretStore,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const parsed = parseSecretReference(ref);
  if (parsed === undefined) {
    // The input may be a plaintext password, so it is not echoed.
    throw new TributaryError(
      'CONFIG_INVALID',
      'expected a secret reference of the form {{secrets/<scope>/<key>}}',
      {
        hint: 'scope and key names may contain only letters, digits, "_", "." and "-"',
      },
    );
  }
  const { scope, key } = parsed;
  const envName = secretEnvVarName(scope, key);
  const fromEnv = env[envName];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const stored = await store.get(scope, key);
  if (stored !== undefined) return stored;
  throw new TributaryError(
    'SECRET_NOT_FOUND',
    `secret ${scope}/${key} is not set: environment variable ${envName} is not set and the secret store at ${store.root} has no key "${key}" in scope "${scope}"`,
    {
      hint: `store it with: echo -n '...' | tributary secrets put --scope ${scope} --key ${key}\nor set the environment variable ${envName}`,
    },
  );
}

function isValidName(name: string): boolean {
  // "." and ".." match the character class but would escape the scope directory.
  return NAME_PATTERN.test(name) && name !== '.' && name !== '..';
}

function checkName(kind: 'scope' | 'key', name: string): void {
  if (!isValidName(name)) {
    throw new TributaryError('SECRET_INVALID_NAME', `invalid secret ${kind} name ${JSON.stringify(name)}`, {
      hint: `a ${kind} name is 1 to 128 letters, digits, "_", "." or "-" (and not "." or "..")`,
    });
  }
}

function errnoCode(error: unknown): string | undefined {
  return typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : undefined;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (error) {
    if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return false;
    throw error;
  }
}

/** Durability of a rename needs the directory entry flushed; some platforms cannot fsync a directory. */
async function fsyncDirectory(path: string): Promise<void> {
  let handle: Awaited<ReturnType<typeof open>> | undefined;
  try {
    handle = await open(path, 'r');
    await handle.sync();
  } catch {
    // Best effort: the value is already fsynced; only the rename may be lost on power failure.
  } finally {
    await handle?.close();
  }
}

export class SecretStore {
  /** The directory holding one sub-directory per scope. */
  readonly root: string;

  constructor(readonly home: string) {
    this.root = join(home, 'secrets');
  }

  async createScope(scope: string): Promise<void> {
    checkName('scope', scope);
    await this.ensureRoot();
    const dir = this.scopeDir(scope);
    try {
      await mkdir(dir, { mode: DIR_MODE });
    } catch (error) {
      if (errnoCode(error) === 'EEXIST') {
        throw new TributaryError('SECRET_SCOPE_EXISTS', `secret scope "${scope}" already exists`, {
          hint: `list its keys with: tributary secrets list --scope ${scope}`,
        });
      }
      throw error;
    }
    // mkdir's mode is filtered by the umask; chmod is not.
    await chmod(dir, DIR_MODE);
  }

  async listScopes(): Promise<string[]> {
    let entries: Dirent[];
    try {
      entries = await readdir(this.root, { withFileTypes: true });
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return [];
      throw error;
    }
    return entries
      .filter((e) => e.isDirectory() && isValidName(e.name))
      .map((e) => e.name)
      .sort();
  }

  async put(scope: string, key: string, value: string): Promise<void> {
    checkName('scope', scope);
    checkName('key', key);
    const dir = await this.requireScope(scope);
    // "~" is not allowed in key names, so a leftover temp file can never be mistaken for a key.
    const temp = join(dir, `~${key}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
    try {
      const handle = await open(temp, 'wx', FILE_MODE);
      try {
        await handle.chmod(FILE_MODE);
        await handle.writeFile(value, 'utf8');
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(temp, join(dir, key));
    } catch (error) {
      await unlink(temp).catch(() => {});
      throw error;
    }
    await fsyncDirectory(dir);
  }

  /** Key names in a scope, sorted. Never values. */
  async list(scope: string): Promise<string[]> {
    checkName('scope', scope);
    const dir = await this.requireScope(scope);
    const entries = await readdir(dir, { withFileTypes: true });
    return entries
      .filter((e) => e.isFile() && isValidName(e.name))
      .map((e) => e.name)
      .sort();
  }

  async get(scope: string, key: string): Promise<string | undefined> {
    checkName('scope', scope);
    checkName('key', key);
    try {
      return await readFile(join(this.scopeDir(scope), key), 'utf8');
    } catch (error) {
      const code = errnoCode(error);
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw error;
    }
  }

  async delete(scope: string, key: string): Promise<void> {
    checkName('scope', scope);
    checkName('key', key);
    const dir = await this.requireScope(scope);
    try {
      await unlink(join(dir, key));
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') {
        throw new TributaryError('SECRET_NOT_FOUND', `secret scope "${scope}" has no key "${key}"`, {
          hint: `list its keys with: tributary secrets list --scope ${scope}`,
        });
      }
      throw error;
    }
    await fsyncDirectory(dir);
  }

  /** Deletes a scope and every secret in it. */
  async deleteScope(scope: string): Promise<void> {
    checkName('scope', scope);
    const dir = await this.requireScope(scope);
    await rm(dir, { recursive: true, force: true });
  }

  private scopeDir(scope: string): string {
    return join(this.root, scope);
  }

  private async ensureRoot(): Promise<void> {
    // The home directory may be shared with other state, so only directories created here are restricted;
    // the secrets directory itself is always restricted, even if it was created loosely by someone else.
    await mkdir(this.home, { recursive: true, mode: DIR_MODE });
    await mkdir(this.root, { recursive: true, mode: DIR_MODE });
    await chmod(this.root, DIR_MODE);
  }

  private async requireScope(scope: string): Promise<string> {
    const dir = this.scopeDir(scope);
    if (!(await isDirectory(dir))) {
      throw new TributaryError(
        'SECRET_SCOPE_NOT_FOUND',
        `secret scope "${scope}" does not exist in ${this.root}`,
        {
          hint: `create it with: tributary secrets create-scope --scope ${scope}`,
        },
      );
    }
    return dir;
  }
}
