/**
 * Records a pipeline's consistent cut (see src/catalog/consistent-cut.ts): written to a temporary file,
 * fsynced, renamed into place and the directory fsynced, so a reader sees the previous cut or the new one.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { type ConsistentCut, consistentCutPath } from '../catalog/consistent-cut.js';
import { fsyncPath } from '../staging/fs-durable.js';

export async function writeConsistentCut(warehouseRoot: string, cut: ConsistentCut): Promise<void> {
  const file = consistentCutPath(warehouseRoot, cut.pipeline);
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, `${JSON.stringify(cut, null, 2)}\n`);
  await fsyncPath(tmp);
  await rename(tmp, file);
  await fsyncPath(dirname(file));
}
