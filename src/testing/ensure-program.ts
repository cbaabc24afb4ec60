import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readdir, stat } from 'node:fs/promises';
import { delimiter, isAbsolute, join, resolve } from 'node:path';
import { messageOf, TributaryError } from '../core/errors.js';

export interface ProgramSpec {
  /** File name of the executable, e.g. `mariadbd`. */
  binary: string;
  /**
   * Directories searched after PATH, in order. A `*` in a segment matches any directory name, and matches are
   * tried highest version first: `/usr/lib/postgresql/*\/bin` prefers 16 over 15.
   */
  searchDirs: string[];
  /** Debian package that provides the binary. */
  aptPackage: string;
  /** Why the program is needed, for the banner printed before installing. */
  reason?: string;
  /** Environment for the PATH lookup and for apt; defaults to `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/**
 * The absolute path of `spec.binary`, installing its Debian package first when it is missing.
 *
 * Installing runs `apt-get update` (once per process) and `apt-get install -y`, as root directly or through
 * `sudo -n`; apt's output goes to stderr. When that is impossible or fails, throws `DEPENDENCY_MISSING`
 * whose hint is the command to run by hand.
 */
export async function ensureProgram(spec: ProgramSpec): Promise<string> {
  const env = spec.env ?? process.env;
  const found = await findProgram(spec.binary, spec.searchDirs, env);
  if (found !== undefined) return found;

  // Two callers needing the same package (mariadbd and mariadb-install-db) must not both run apt, and apt
  // holds a system-wide lock, so installs run one at a time.
  let install = installs.get(spec.aptPackage);
  if (install === undefined) {
    install = installQueue = installQueue.then(
      () => installPackage(spec, env),
      () => installPackage(spec, env),
    );
    installs.set(spec.aptPackage, install);
    // A failed install may succeed later (a human ran the hint's command, the apt lock was freed).
    install.catch(() => installs.delete(spec.aptPackage));
  }
  await install;

  const installed = await findProgram(spec.binary, spec.searchDirs, env);
  if (installed === undefined) {
    throw new TributaryError(
      'DEPENDENCY_MISSING',
      `Installed the Debian package ${spec.aptPackage}, but ${spec.binary} is still not on PATH or in ${spec.searchDirs.join(', ')}.`,
      {
        hint: `Find where ${spec.aptPackage} puts ${spec.binary} (dpkg -L ${spec.aptPackage}) and add it to PATH.`,
      },
    );
  }
  return installed;
}

/** The absolute path of an executable named `binary` on PATH or in `searchDirs`, if there is one. */
export async function findProgram(
  binary: string,
  searchDirs: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  const { PATH = '' } = env;
  const pathDirs = PATH.split(delimiter).filter((dir) => dir !== '');
  for (const pattern of [...pathDirs, ...searchDirs]) {
    for (const dir of await expandDir(pattern)) {
      const candidate = resolve(dir, binary);
      if (await isExecutableFile(candidate)) return candidate;
    }
  }
  return undefined;
}

const installs = new Map<string, Promise<void>>();
let installQueue: Promise<void> = Promise.resolve();
let aptUpdated: Promise<void> | undefined;

async function installPackage(spec: ProgramSpec, env: NodeJS.ProcessEnv): Promise<void> {
  const pkg = spec.aptPackage;
  const installArgs = ['install', '-y', pkg];
  const manual = (prefix: string) =>
    `${prefix}apt-get update && ${prefix}DEBIAN_FRONTEND=noninteractive apt-get install -y ${pkg}`;
  const missing = (why: string, hint: string, cause?: unknown) =>
    new TributaryError('DEPENDENCY_MISSING', `${spec.binary} is not installed and ${why}.`, {
      hint,
      ...(cause === undefined ? {} : { cause }),
    });

  const apt = await findProgram('apt-get', ['/usr/bin', '/bin'], env);
  if (apt === undefined) {
    throw missing(
      `this system has no apt-get to install the Debian package ${pkg} with`,
      `Install ${spec.binary} with your system's package manager and put it on PATH.`,
    );
  }

  let runner: string[];
  let hintPrefix: string;
  if (process.getuid?.() === 0) {
    runner = [];
    hintPrefix = '';
  } else {
    const sudo = await findProgram('sudo', ['/usr/bin', '/bin'], env);
    hintPrefix = 'sudo ';
    if (sudo === undefined) {
      throw missing(
        'installing it needs root, but this process is not root and sudo is not installed',
        manual('sudo '),
      );
    }
    // Probe first: a sudo that wants a password would otherwise fail only after a slow apt-get update.
    if ((await run(sudo, ['-n', 'true'], env, false)) !== 0) {
      throw missing('installing it needs root, and sudo asks for a password', manual(hintPrefix));
    }
    runner = [sudo, '-n'];
  }

  const reason = spec.reason === undefined ? '' : ` (${spec.reason})`;
  process.stderr.write(
    `[tributary] ${spec.binary} not found; installing Debian package ${pkg} with ${runner.length > 0 ? 'sudo ' : ''}apt-get${reason}\n`,
  );

  // Fresh CI machines often run apt's daily timer at boot; wait for its lock rather than fail at once.
  const lockWait = ['-o', 'DPkg::Lock::Timeout=300'];
  const aptEnv = { ...env, DEBIAN_FRONTEND: 'noninteractive' };
  const command = (args: string[]) => {
    const [head, ...rest] =
      runner.length > 0 ? [...runner, 'DEBIAN_FRONTEND=noninteractive', apt, ...args] : [apt, ...args];
    return { file: head ?? apt, args: rest };
  };

  try {
    if (aptUpdated === undefined) {
      const update = command([...lockWait, 'update']);
      aptUpdated = run(update.file, update.args, aptEnv, true).then((code) => {
        if (code !== 0) throw new Error(`apt-get update exited with code ${code}`);
      });
      aptUpdated.catch(() => {
        aptUpdated = undefined;
      });
    }
    await aptUpdated;
    const install = command([...lockWait, ...installArgs]);
    const code = await run(install.file, install.args, aptEnv, true);
    if (code !== 0) throw new Error(`apt-get install exited with code ${code}`);
  } catch (error) {
    throw missing(
      `installing the Debian package ${pkg} failed: ${messageOf(error)}`,
      manual(hintPrefix),
      error,
    );
  }
}

/** Runs a command to completion; with `stream`, its output is copied to our stderr. Resolves to the exit code. */
function run(file: string, args: string[], env: NodeJS.ProcessEnv, stream: boolean): Promise<number> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(file, args, {
      env,
      stdio: ['ignore', stream ? 'pipe' : 'ignore', stream ? 'pipe' : 'ignore'],
    });
    // Copied through our own stderr rather than inherited, so that test runners that capture stderr see it.
    child.stdout?.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    child.stderr?.on('data', (chunk: Buffer) => process.stderr.write(chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => resolvePromise(code ?? (signal === null ? 1 : 128)));
  });
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** The existing directories a search-dir pattern names, highest version first where it has a `*`. */
async function expandDir(pattern: string): Promise<string[]> {
  if (!isAbsolute(pattern)) return [resolve(pattern)];
  if (!pattern.includes('*')) return [pattern];
  let bases = ['/'];
  for (const segment of pattern.split('/').filter((part) => part !== '')) {
    if (!segment.includes('*')) {
      bases = bases.map((base) => join(base, segment));
      continue;
    }
    const regex = new RegExp(`^${segment.split('*').map(escapeRegExp).join('.*')}$`);
    const next: string[] = [];
    for (const base of bases) {
      let names: string[];
      try {
        names = await readdir(base);
      } catch {
        continue;
      }
      const matches = names.filter((name) => regex.test(name));
      matches.sort((a, b) => b.localeCompare(a, 'en', { numeric: true }));
      next.push(...matches.map((name) => join(base, name)));
    }
    bases = next;
  }
  return bases;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
