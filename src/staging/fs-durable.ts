/**
 * Durability helpers. A rename is atomic but not durable until the directory that holds it is fsynced;
 * a file's bytes are not durable until the file is. Both are needed before anything is acknowledged.
 */
import { open } from 'node:fs/promises';

export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
