/**
 * `tributary refresh <pipeline> [--table t]`: a full refresh of some or all of a pipeline's tables. The
 * request is written beside the gateway's segments; the next round (this command runs one, or a running
 * pipeline's next round) snapshots those tables again and replaces each bronze table in one commit once the
 * snapshot is complete. Until then the current tables stay queryable, changes keep being captured and are
 * applied after the new snapshot, and a crash resumes the snapshot from its last chunk.
 */
import type { TributaryConfig } from '../config/load-config.js';
import { TributaryError } from '../core/errors.js';
import { tableKey } from '../core/table.js';
import { gatewayVolumeOf } from './gateway-volume.js';
import { pipelineOf } from './pipeline-of.js';

/**
 * The refresh request's entries for `tables` (source `schema.table`, a source table name, or a destination
 * table name), or for every table of the pipeline when none is named: `schema.table` for table objects and
 * `schema.*` for schema objects.
 */
export function refreshTargets(
  config: TributaryConfig,
  pipelineName: string,
  tables: readonly string[],
): string[] {
  const pipeline = pipelineOf(config, pipelineName);
  if (tables.length === 0) {
    return pipeline.objects.map((o) =>
      'table' in o
        ? tableKey({ schema: o.table.source_schema, table: o.table.source_table })
        : `${o.schema.source_schema}.*`,
    );
  }
  return tables.map((wanted) => {
    for (const o of pipeline.objects) {
      if ('table' in o) {
        const key = tableKey({ schema: o.table.source_schema, table: o.table.source_table });
        if (wanted === key || wanted === o.table.source_table || wanted === o.table.destination_table)
          return key;
      } else if (wanted.startsWith(`${o.schema.source_schema}.`)) {
        return wanted;
      }
    }
    const schemas = pipeline.objects.flatMap((o) => ('schema' in o ? [o.schema.source_schema] : []));
    if (schemas.length === 1 && !wanted.includes('.')) return `${schemas[0]}.${wanted}`;
    throw new TributaryError('USAGE', `Pipeline ${pipelineName} has no table "${wanted}".`, {
      hint: `Name a table of the pipeline as <source schema>.<table>, its source table name, or its destination table name.`,
    });
  });
}

/**
 * Writes the request; returns the entries requested. A refresh of everything the gateway captures (the
 * pipeline's every table, and no other pipeline reads from that gateway) also restarts the log at the new
 * snapshot: nothing staged before it is needed any more, and it is the way out when the log is gone.
 */
export async function requestFullRefresh(
  config: TributaryConfig,
  pipelineName: string,
  tables: readonly string[],
): Promise<string[]> {
  const targets = refreshTargets(config, pipelineName, tables);
  const { gateway, volume } = gatewayVolumeOf(config, pipelineName);
  const sharing = Object.values(config.pipelines).filter((p) => p.gateway === gateway.name).length;
  if (tables.length === 0 && sharing === 1) {
    await volume.requestRefresh(['*'], { restartLog: true });
    return ['*'];
  }
  await volume.requestRefresh(targets);
  return targets;
}
