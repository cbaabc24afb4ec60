/** `tributary status [pipeline]`: each pipeline's state, positions, lag and bronze versions. */
import { type Command, Option } from 'commander';
import { type PipelineStatus, pipelineStatus } from '../../app/pipeline-status.js';
import { loadConfig } from '../../config/load-config.js';
import type { CliContext } from '../context.js';
import { renderTable } from '../output-format.js';

function render(s: PipelineStatus): string {
  const lines = [
    `${s.pipeline}  ${s.state}`,
    `  gateway ${s.gateway}: staged up to ${s.stagedPosition ?? '-'}; source at ${s.sourcePosition ?? `unknown (${s.sourceError})`}`,
    // Unknown is said as such, never as 0.
    `  capture lag: ${s.lag.seconds === null ? 'unknown' : `${s.lag.seconds} s`} (${s.lag.reason})`,
    `  ${s.stagedSegments} staged segment(s); newest staged change committed at ${s.newestStagedCommit ?? '-'}`,
  ];
  if (s.snapshot)
    lines.push(
      `  snapshot: ${s.snapshot.rowsStaged} rows staged, ${s.snapshot.tablesDone}/${s.snapshot.tables} tables done`,
    );
  const columns = [
    'destination',
    'version',
    'appliedSegment',
    'pendingSegments',
    'appliedThrough',
    'applyLagSeconds',
    'lagSeconds',
  ];
  const table = renderTable({
    columns,
    rows: s.tables.map((t) => ({ ...t, lagSeconds: t.lagSeconds ?? 'unknown' })),
  });
  return `${lines.join('\n')}\n${table
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n')}`;
}

export function registerStatusCommand(program: Command, ctx: CliContext): void {
  program
    .command('status')
    .description("show each pipeline's state, staged and source positions, lag and bronze table versions")
    .argument('[pipeline]', 'one pipeline (default: all)')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (name: string | undefined, opts: { format: 'table' | 'json' }) => {
      const config = await loadConfig(ctx.configPath());
      const names = name ? [name] : Object.keys(config.pipelines).sort();
      const signal = new AbortController().signal;
      const statuses: PipelineStatus[] = [];
      for (const n of names) statuses.push(await pipelineStatus(config, n, signal));
      ctx.stdout.write(
        opts.format === 'json' ? `${JSON.stringify(statuses, null, 2)}\n` : statuses.map(render).join('\n'),
      );
    });
}
