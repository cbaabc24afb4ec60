/** `tributary run <pipeline>`: capture from the source and apply to the bronze tables. */
import type { Command } from 'commander';
import { claimPipelines } from '../../app/pipeline-claim.js';
import { runRecordedRound } from '../../app/pipeline-rounds.js';
import { RoundResources } from '../../app/round-resources.js';
import type { RunReport } from '../../app/run-pipeline.js';
import { loadConfig } from '../../config/load-config.js';
import { TributaryError } from '../../core/errors.js';
import { stderrLogger } from '../../pipeline/logger.js';
import { superviseRounds } from '../../pipeline/supervisor.js';
import type { CliContext } from '../context.js';
import { appliedLine } from '../output-format.js';
import { untilStopped } from '../until-stopped.js';

export function registerRunCommand(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .description('run a pipeline: snapshot on the first run, then apply the changes in the source log')
    .argument('<pipeline>', 'pipeline name from the config')
    .option('--once', 'catch up to the source position at the start of the run, then exit')
    .option('--interval <seconds>', 'without --once: seconds between catch-up rounds', '10')
    .option('--quiet', 'log warnings and errors only')
    .action(async (name: string, opts: { once?: boolean; interval: string; quiet?: boolean }) => {
      const interval = Number(opts.interval);
      if (!Number.isFinite(interval) || interval < 0) {
        throw new TributaryError('USAGE', `--interval must be a number of seconds, not "${opts.interval}".`);
      }
      const config = await loadConfig(ctx.configPath());
      const log = stderrLogger(opts.quiet === true);
      const report = (r: RunReport) => {
        for (const t of r.tables) {
          ctx.stdout.write(appliedLine(t));
        }
      };
      if (opts.once) {
        report(await runRecordedRound(config, name, { signal: new AbortController().signal, log }));
        return;
      }
      await using _claim = await claimPipelines(config, [name]);
      await using resources = new RoundResources();
      // The round in progress sees the abort between segments and commits.
      await untilStopped(log, 'the current step', (signal) =>
        superviseRounds(
          async (retry) => report(await runRecordedRound(config, name, { signal, log, resources, retry })),
          {
            signal,
            log,
            intervalMs: interval * 1000,
          },
        ),
      );
    });
}
