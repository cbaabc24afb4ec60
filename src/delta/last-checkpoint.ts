/**
 * Writing `_delta_log/_last_checkpoint` (DIGEST §6) after a checkpoint. Reading it, and the protocol's
 * checksum (MD5 of the canonicalised JSON), live in `last-checkpoint-hint.ts`, so writer and reader can never
 * disagree on the canonical form.
 *
 * The file is only a hint (readers must list the directory anyway), so it is replaced with a temp file and a
 * rename, and a racing writer that already pointed it at a newer checkpoint is not overwritten with an older
 * one.
 */
import { randomUUID } from 'node:crypto';
import { open, rename, unlink } from 'node:fs/promises';
import path from 'node:path';
import { messageOf, TributaryError } from '../core/errors.js';
import { lastCheckpointChecksum, readLastCheckpoint } from './last-checkpoint-hint.js';

/** What Tributary records about a checkpoint it wrote. */
export interface CheckpointInfo {
  version: number;
  /** Number of actions (rows) in the checkpoint. */
  size: number;
  sizeInBytes: number;
  numOfAddFiles: number;
}

/**
 * The exact `_last_checkpoint` text for `info`: `{"version","size","sizeInBytes","numOfAddFiles","checksum"}`,
 * the checksum computed over the text written before it.
 */
export function lastCheckpointText(info: CheckpointInfo): string {
  const body: CheckpointInfo = {
    version: info.version,
    size: info.size,
    sizeInBytes: info.sizeInBytes,
    numOfAddFiles: info.numOfAddFiles,
  };
  return JSON.stringify({ ...body, checksum: lastCheckpointChecksum(JSON.stringify(body)) });
}

/**
 * Points `<logDir>/_last_checkpoint` at the checkpoint `info` describes, unless a valid one already points at
 * a newer version. Returns whether it wrote.
 *
 * @throws `DELTA_CORRUPT` (transient) when the file cannot be written.
 */
export async function writeLastCheckpoint(logDir: string, info: CheckpointInfo): Promise<boolean> {
  const current = await readLastCheckpoint(logDir);
  if (current.ok && current.hint.version > info.version) return false;
  const temp = path.join(logDir, `._last_checkpoint.${randomUUID()}.tmp`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(lastCheckpointText(info), 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path.join(logDir, '_last_checkpoint'));
  } catch (error) {
    throw new TributaryError(
      'DELTA_CORRUPT',
      `Cannot write ${logDir}/_last_checkpoint: ${messageOf(error)}`,
      {
        cause: error,
        retry: 'transient',
      },
    );
  } finally {
    await unlink(temp).catch(() => undefined);
  }
  return true;
}
