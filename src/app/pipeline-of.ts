/** A pipeline's config by name, or PIPELINE_NOT_FOUND naming the pipelines that are defined. */
import type { TributaryConfig } from '../config/load-config.js';
import { TributaryError } from '../core/errors.js';

export function pipelineOf(config: TributaryConfig, name: string) {
  const pipeline = config.pipelines[name];
  if (!pipeline) {
    const known = Object.keys(config.pipelines);
    throw new TributaryError('PIPELINE_NOT_FOUND', `No pipeline named "${name}" in ${config.configPath}.`, {
      hint:
        known.length > 0 ? `Pipelines defined there: ${known.join(', ')}.` : 'Define one under `pipelines:`.',
    });
  }
  return pipeline;
}
