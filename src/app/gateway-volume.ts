/** Where a pipeline's gateway stages its segments: `<warehouse>/<catalog>/<schema>/<volume>/<gateway>`. */
import { join } from 'node:path';
import { parseVolumeName, Warehouse } from '../catalog/warehouse.js';
import type { GatewayConfig, TributaryConfig } from '../config/load-config.js';
import { TributaryError } from '../core/errors.js';
import { StagingVolume } from '../staging/staging-volume.js';
import { pipelineOf } from './pipeline-of.js';

export interface GatewayVolume {
  readonly gateway: GatewayConfig & { readonly name: string };
  readonly warehouse: Warehouse;
  readonly volume: StagingVolume;
}

export function gatewayVolumeOf(config: TributaryConfig, pipelineName: string): GatewayVolume {
  const pipeline = pipelineOf(config, pipelineName);
  const gateway = config.gateways[pipeline.gateway];
  if (!gateway) throw new TributaryError('INTERNAL', `gateway ${pipeline.gateway} not validated`);
  const warehouse = new Warehouse(config.warehouse);
  const volume = new StagingVolume(gatewayStagingDir(config, gateway), gateway.name);
  return { gateway, warehouse, volume };
}

/** The directory a gateway stages into, which also holds what its source keeps beside staging. */
export function gatewayStagingDir(
  config: TributaryConfig,
  gateway: GatewayConfig & { readonly name: string },
): string {
  return join(new Warehouse(config.warehouse).volumePath(parseVolumeName(gateway.storage)), gateway.name);
}
