/** `tributary sql "<statement>"`: DuckDB SQL, with Databricks forms, over the warehouse's Delta tables. */
import type { Command } from 'commander';
import { Option } from 'commander';
import { Warehouse } from '../../catalog/warehouse.js';
import { loadConfig } from '../../config/load-config.js';
import { SqlSession } from '../../engine/sql-session.js';
import type { CliContext } from '../context.js';
import { type OutputFormat, renderResult } from '../output-format.js';

export function registerSqlCommand(program: Command, ctx: CliContext): void {
  program
    .command('sql')
    .description('run a SQL query over the warehouse (catalog.schema.table names, or delta.`/path`)')
    .argument(
      '<statement>',
      'the SQL statement (DuckDB dialect plus Databricks forms such as CURRENT_TIMESTAMP())',
    )
    .addOption(
      new Option('--format <format>', 'output format').choices(['table', 'json', 'csv']).default('table'),
    )
    .option('--catalog <name>', 'default catalog for two-part names such as bronze.customers')
    .action(async (statement: string, opts: { format: OutputFormat; catalog?: string }) => {
      const config = await loadConfig(ctx.configPath());
      const warehouse = new Warehouse(config.warehouse);
      const defaultCatalog = opts.catalog ?? defaultCatalogOf(config, await warehouse.listCatalogs());
      await using session = await SqlSession.open(warehouse, defaultCatalog ? { defaultCatalog } : {});
      const result = await session.execute(statement);
      ctx.stdout.write(renderResult(result, opts.format));
    });
}

/** The catalog two-part names resolve in: the first pipeline's destination, else the only catalog there is. */
function defaultCatalogOf(
  config: Awaited<ReturnType<typeof loadConfig>>,
  catalogs: string[],
): string | undefined {
  for (const p of Object.values(config.pipelines)) {
    for (const o of p.objects)
      return 'table' in o ? o.table.destination_catalog : o.schema.destination_catalog;
  }
  return catalogs.length === 1 ? catalogs[0] : undefined;
}
