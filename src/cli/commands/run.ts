/** `tributary run <pipeline>`: capture from the source and apply to the bronze tables. */
import type { Command } from 'commander';
import { runPipelineOnce } from '../../app/run-pipeline.js';
import { loadConfig } from '../../config/load-config.js';
import { stderrLogger } from '../../pipeline/logger.js';
import type { CliContext } from '../context.js';

export function registerRunCommand(program: Command, ctx: CliContext): void {
  program
    .command('run')
    .description('run a pipeline: snapshot on the first run, then apply the changes in the source log')
    .argument('<pipeline>', 'pipeline name from the config')
    .option('--once', 'catch up to the source position at the start of the run, then exit')
    .option('--interval <seconds>', 'without --once: seconds between catch-up rounds', '10')
    .option('--quiet', 'log warnings and errors only')
    .action(async (name: string, opts: { once?: boolean; interval: string; quiet?: boolean }) => {
      const config = await loadConfig(ctx.configPath());
      const log = stderrLogger(opts.quiet === true);
      const controller = new AbortController();
      const stop = () => controller.abort(new Error('interrupted'));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      try {
        for (;;) {
          const report = await runPipelineOnce(config, name, { signal: controller.signal, log });
          for (const t of report.tables) {
            ctx.stdout.write(
              `${t.destination}: version ${t.version ?? '-'}, ${t.inserted} inserted, ${t.updated} updated, ${t.deleted} deleted\n`,
            );
          }
          if (opts.once || controller.signal.aborted) break;
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Number(opts.interval) * 1000);
            controller.signal.addEventListener('abort', () => {
              clearTimeout(timer);
              resolve();
            });
          });
          if (controller.signal.aborted) break;
        }
      } finally {
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
      }
    });
}
