/**
 * `tributary sql "<statements>"`: DuckDB SQL, with Databricks forms and Delta maintenance statements, over the
 * warehouse's Delta tables. Several statements may be separated by `;` (settings made with SET last for the
 * invocation); the result of the last one is printed.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { connectionDirectory } from '../../app/run-pipeline.js';
import { Warehouse } from '../../catalog/warehouse.js';
import { loadConfig } from '../../config/load-config.js';
import { SqlSession } from '../../engine/sql-session.js';
import type { CliContext } from '../context.js';
import { type OutputFormat, renderResult } from '../output-format.js';

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream)
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

export function registerSqlCommand(program: Command, ctx: CliContext): void {
  program
    .command('sql')
    .description('run SQL over the warehouse (catalog.schema.table names, or delta.`/path`)')
    .argument(
      '<statements>',
      'SQL statements separated by ";" (DuckDB plus Databricks forms: CURRENT_TIMESTAMP(), time travel, ' +
        'table_changes(), DESCRIBE HISTORY/DETAIL, OPTIMIZE, VACUUM, RESTORE, SHALLOW CLONE, ALTER TABLE ... TBLPROPERTIES, SET); ' +
        '"-" reads them from stdin',
    )
    .addOption(
      new Option('--format <format>', 'output format').choices(['table', 'json', 'csv']).default('table'),
    )
    .option('--catalog <name>', 'default catalog for two-part names such as bronze.customers')
    .option(
      '--latest',
      "read every table's newest version instead of its pipeline's consistent cut (where all tables agree)",
    )
    .action(
      async (statements: string, opts: { format: OutputFormat; catalog?: string; latest?: boolean }) => {
        const config = await loadConfig(ctx.configPath());
        const warehouse = new Warehouse(config.warehouse);
        const defaultCatalog = opts.catalog ?? defaultCatalogOf(config, await warehouse.listCatalogs());
        const script = statements === '-' ? await readAll(ctx.stdin) : statements;
        await using session = await SqlSession.open(warehouse, {
          connections: connectionDirectory(config),
          ...(defaultCatalog ? { defaultCatalog } : {}),
          consistentCut: opts.latest !== true,
        });
        const result = await session.execute(script);
        ctx.stdout.write(renderResult(result, opts.format));
      },
    );
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
