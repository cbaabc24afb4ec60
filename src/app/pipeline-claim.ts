/**
 * A long-running process (`tributary run` without `--once`, `tributary start`) claims each pipeline it runs,
 * so that a second one started by mistake (two service units, a forgotten terminal) refuses at once with the
 * owner's pid instead of quietly taking turns with the first. Rounds are still serialised per gateway by the
 * round lock, which is what keeps writes exclusive; this claim is about operating the pipeline, and a single
 * `tributary run --once` or `tributary refresh` still takes its turn beside a running process.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { parseVolumeName } from '../catalog/warehouse.js';
import type { TributaryConfig } from '../config/load-config.js';
import { acquireRunLock } from '../pipeline/run-lock.js';
import { gatewayVolumeOf } from './gateway-volume.js';

export async function claimPipelines(
  config: TributaryConfig,
  names: readonly string[],
): Promise<AsyncDisposable> {
  const held: AsyncDisposable[] = [];
  const release = async () => {
    for (const lock of held.reverse()) await lock[Symbol.asyncDispose]();
  };
  try {
    for (const name of names) {
      const { gateway, warehouse, volume } = gatewayVolumeOf(config, name);
      await warehouse.ensureVolume(parseVolumeName(gateway.storage));
      await mkdir(volume.dir, { recursive: true });
      held.push(
        await acquireRunLock(join(volume.dir, `.pipeline-${name}.lock`), {
          what: `Pipeline ${name}`,
          pipeline: name,
          busy: 'fatal',
          hint: (owner) =>
            `Another Tributary process (pid ${owner.pid}${owner.since ? `, since ${owner.since}` : ''}) runs it. Stop that process first (SIGTERM stops it at a safe point). \`tributary run ${name} --once\` and \`tributary refresh ${name}\` may still run beside it: they take their turn between its rounds.`,
        }),
      );
    }
  } catch (error) {
    await release();
    throw error;
  }
  return { [Symbol.asyncDispose]: release };
}
