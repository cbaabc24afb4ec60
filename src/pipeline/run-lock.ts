/**
 * One runner at a time per gateway area: two processes interleaving segment numbers or commits would break
 * exactly-once. The lock is a file created exclusively, holding the owner's pid; a lock whose owner is
 * gone (killed -9, power cut) is taken over, so a crash never needs manual cleanup.
 */
import { open, readFile, rm } from 'node:fs/promises';
import { TributaryError } from '../core/errors.js';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export async function acquireRunLock(path: string, what: string): Promise<AsyncDisposable> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const handle = await open(path, 'wx', 0o600);
      try {
        await handle.writeFile(`${process.pid}\n`);
      } catch (error) {
        // A full disk: leave no empty lock behind (one would be taken over, but need not exist at all).
        await handle.close();
        await rm(path, { force: true });
        throw error;
      }
      await handle.close();
      return {
        [Symbol.asyncDispose]: async () => {
          await rm(path, { force: true });
        },
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      const owner = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(owner) && owner > 0 && owner !== process.pid && alive(owner)) {
        throw new TributaryError('USAGE', `${what} is already running (pid ${owner}).`, {
          hint: `Wait for it to finish, or stop it. The lock file is ${path}.`,
          retry: 'transient',
        });
      }
      await rm(path, { force: true });
    }
  }
  throw new TributaryError('INTERNAL', `Could not take the run lock ${path}.`);
}
