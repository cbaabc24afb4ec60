/**
 * Durability helpers. A rename is atomic but not durable until the directory that holds it is fsynced;
 * a file's bytes are not durable until the file is. Both are needed before anything is acknowledged.
 */
import { open, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes a whole file so that readers see either the old content or the new, never a mix. */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}-${Date.now()}`;
  await writeFile(tmp, data);
  await fsyncPath(tmp);
  await rename(tmp, path);
  await fsyncPath(dirname(path));
}
