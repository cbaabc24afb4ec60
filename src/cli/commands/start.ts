/** `tributary start`: every pipeline (or the named ones) on its schedule, until SIGINT or SIGTERM. */
import type { Command } from 'commander';
import { claimPipelines } from '../../app/pipeline-claim.js';
import { pipelineOf } from '../../app/pipeline-of.js';
import { runRecordedRound } from '../../app/pipeline-rounds.js';
import { RoundResources } from '../../app/round-resources.js';
import { loadConfig } from '../../config/load-config.js';
import { TributaryError } from '../../core/errors.js';
import { stderrLogger } from '../../pipeline/logger.js';
import { runSchedules } from '../../pipeline/scheduler.js';
import type { CliContext } from '../context.js';
import { appliedLine } from '../output-format.js';
import { untilStopped } from '../until-stopped.js';

export function registerStartCommand(program: Command, ctx: CliContext): void {
  program
    .command('start')
    .description(
      'run every pipeline on its schedule (schedule: continuous, or { cron: ... }) until SIGINT or SIGTERM; a pipeline never overlaps itself',
    )
    .argument('[pipelines...]', 'only these pipelines (default: all in the config)')
    .option('--interval <seconds>', 'pause between rounds of continuous pipelines', '10')
    .option('--quiet', 'log warnings and errors only')
    .action(async (names: string[], opts: { interval: string; quiet?: boolean }) => {
      const interval = Number(opts.interval);
      if (!Number.isFinite(interval) || interval < 0) {
        throw new TributaryError('USAGE', `--interval must be a number of seconds, not "${opts.interval}".`);
      }
      const config = await loadConfig(ctx.configPath());
      const chosen = names.length > 0 ? names : Object.keys(config.pipelines);
      if (chosen.length === 0) {
        throw new TributaryError('USAGE', `No pipelines in ${config.configPath}.`, {
          hint: 'Define one under `pipelines:`.',
        });
      }
      const log = stderrLogger(opts.quiet === true);
      const pipelines = chosen.map((name) => ({
        name,
        pipeline: pipelineOf(config, name),
        resources: new RoundResources(),
      }));
      await using _claim = await claimPipelines(config, chosen);
      await using _resources = {
        [Symbol.asyncDispose]: async () => {
          for (const p of pipelines) await p.resources[Symbol.asyncDispose]();
        },
      };
      await untilStopped(log, 'the rounds in progress', (signal) =>
        runSchedules(
          pipelines.map(({ name, pipeline, resources }) => {
            log.info(
              `${name}: ${pipeline.schedule === 'continuous' ? 'continuous' : `cron ${pipeline.schedule.cron} (UTC)`}`,
            );
            return {
              name,
              exclusiveKey: pipeline.gateway,
              schedule: pipeline.schedule,
              round: async (signal: AbortSignal, retry: number) => {
                const report = await runRecordedRound(config, name, { signal, log, resources, retry });
                for (const t of report.tables) {
                  ctx.stdout.write(`${name}: ${appliedLine(t)}`);
                }
              },
            };
          }),
          { signal, log, continuousIntervalMs: interval * 1000 },
        ),
      );
    });
}
