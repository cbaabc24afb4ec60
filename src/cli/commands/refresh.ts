/** `tributary refresh <pipeline> [--table t ...]`: re-snapshot tables, replacing each bronze table atomically. */
import type { Command } from 'commander';
import { requestFullRefresh } from '../../app/full-refresh.js';
import { runRecordedRound } from '../../app/pipeline-rounds.js';
import { loadConfig } from '../../config/load-config.js';
import { isTributaryError } from '../../core/errors.js';
import { stderrLogger } from '../../pipeline/logger.js';
import type { CliContext } from '../context.js';
import { appliedLine } from '../output-format.js';

export function registerRefreshCommand(program: Command, ctx: CliContext): void {
  program
    .command('refresh')
    .description(
      'full refresh: snapshot tables again; each bronze table stays queryable and is replaced in one commit when its new snapshot is complete',
    )
    .argument('<pipeline>', 'pipeline name from the config')
    .option(
      '--table <name>',
      'a table to refresh (source schema.table, source table or destination table name); repeatable; default: every table of the pipeline',
      (value: string, previous: string[] = []) => [...previous, value],
    )
    .option('--quiet', 'log warnings and errors only')
    .action(async (name: string, opts: { table?: string[]; quiet?: boolean }) => {
      const config = await loadConfig(ctx.configPath());
      const log = stderrLogger(opts.quiet === true);
      const targets = await requestFullRefresh(config, name, opts.table ?? []);
      log.info(
        `full refresh requested for ${targets.includes('*') ? 'every table of the gateway (streaming restarts at the new snapshot)' : targets.join(', ')}`,
      );
      try {
        const report = await runRecordedRound(config, name, { signal: new AbortController().signal, log });
        for (const t of report.tables) {
          ctx.stdout.write(appliedLine(t));
        }
      } catch (error) {
        // A pipeline running elsewhere holds the gateway: its next round takes the request.
        if (isTributaryError(error) && / is already running /.test(error.message)) {
          ctx.stdout.write(`${error.message} Its next round performs the refresh.\n`);
          return;
        }
        throw error;
      }
    });
}
