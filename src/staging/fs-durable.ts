/**
 * Durability helpers. A rename is atomic but not durable until the directory that holds it is fsynced;
 * a file's bytes are not durable until the file is. Both are needed before anything is acknowledged.
 */
import { open, statfs } from 'node:fs/promises';
import type { StorageSpace } from '../core/storage-full.js';

export async function fsyncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Free (available to this user) and total bytes of the file system holding `path`, for the message of a full
 * disk; undefined when they cannot be read (the path is gone, or the platform has no statfs).
 */
export async function storageSpace(path: string): Promise<StorageSpace | undefined> {
  try {
    const s = await statfs(path);
    return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize };
  } catch {
    return undefined;
  }
}
