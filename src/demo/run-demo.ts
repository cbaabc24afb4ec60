/**
 * `npm run demo`: the retail workshop end to end on a throwaway MariaDB (or PostgreSQL, with `-- --source
 * postgresql`), driven through the real `tributary` command line exactly as a user would type it. Exits 0 only when every workshop validation query gives
 * the workshop's answer.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { messageOf } from '../core/errors.js';
import { type DemoSourceType, startDemoSource, startingBanner } from './demo-source.js';
import {
  createRetailSchema,
  runWorkshopScenario,
  sourceCounts,
  WORKSHOP_SCENARIO,
  WORKSHOP_VALIDATIONS,
} from './retail-workshop.js';

const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../../bin/tributary.js');

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function tributary(
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; input?: string; echo?: boolean },
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      cwd: options.cwd,
      env: options.env,
      stdio: 'pipe',
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (options.echo) process.stderr.write(d);
    });
    child.on('error', reject);
    child.on('close', (code) => resolvePromise({ code: code ?? 1, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

function banner(text: string): void {
  process.stdout.write(`\n== ${text} ${'='.repeat(Math.max(0, 100 - text.length))}\n`);
}

async function must(result: Promise<CliResult>, what: string): Promise<CliResult> {
  const r = await result;
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code}):\n${r.stderr}`);
  return r;
}

export async function runDemo(options: { keep?: boolean; source?: DemoSourceType } = {}): Promise<number> {
  const type = options.source ?? 'mariadb';
  const work = await mkdtemp(join(tmpdir(), 'tributary-demo-'));
  banner(startingBanner(type));
  process.stdout.write(`working directory ${work}\n`);
  const source = await startDemoSource(type, (line) => process.stdout.write(`${line}\n`));
  try {
    {
      const retail = source.retail;
      banner('Creating retail_db with the workshop tables and generated data');
      await createRetailSchema(retail);
      const seeded = await sourceCounts(retail);
      process.stdout.write(
        `customers ${seeded.customers}, orders ${seeded.orders}, products ${seeded.products}\n`,
      );

      banner('A least-privilege CDC user (checklist section 2)');
      for (const line of source.grants) process.stdout.write(`${line}\n`);

      const env = { ...process.env, TRIBUTARY_HOME: join(work, 'home') };
      const run = (args: string[], input?: string, echo = false) =>
        tributary(args, { cwd: work, env, ...(input === undefined ? {} : { input }), echo });

      banner('Storing the CDC password as a secret');
      const scope = source.secretScope;
      process.stdout.write(`$ tributary secrets create-scope --scope ${scope}\n`);
      await must(run(['secrets', 'create-scope', '--scope', scope]), 'secrets create-scope');
      process.stdout.write(
        `$ tributary secrets put --scope ${scope} --key cdc_password   (value on stdin)\n`,
      );
      await must(
        run(['secrets', 'put', '--scope', scope, '--key', 'cdc_password'], `${source.cdcPassword}\n`),
        'secrets put',
      );

      const config = `warehouse: ./lakehouse
connections:
${source.connectionYaml}
gateways:
  retail_ingestion_gateway:
    connection: ${type === 'mariadb' ? 'retail_mysql_connection' : 'retail_pg_connection'}
    storage: retail_analytics.landing.ingestion_volume
pipelines:
  retail_ingestion_pipeline:
    gateway: retail_ingestion_gateway
    objects:
${source.objectsYaml}
`;
      await writeFile(join(work, 'tributary.yaml'), config);
      banner('tributary.yaml');
      process.stdout.write(config);

      banner('Initial snapshot: tributary run retail_ingestion_pipeline --once');
      process.stdout.write(
        (await must(run(['run', 'retail_ingestion_pipeline', '--once'], undefined, true), 'the snapshot run'))
          .stdout,
      );
      const afterSnapshot = await sourceCounts(retail);
      const countQuery = WORKSHOP_VALIDATIONS[0];
      let failures = 0;
      if (countQuery) failures += await validate(run, countQuery, afterSnapshot);

      banner('Workshop scenario on the source (Lab 5)');
      for (const sql of WORKSHOP_SCENARIO) process.stdout.write(`${sql.replace(/\s+/g, ' ')};\n`);
      await runWorkshopScenario(retail);

      banner('Incremental run: tributary run retail_ingestion_pipeline --once');
      process.stdout.write(
        (
          await must(
            run(['run', 'retail_ingestion_pipeline', '--once'], undefined, true),
            'the incremental run',
          )
        ).stdout,
      );

      const final = await sourceCounts(retail);
      for (const v of WORKSHOP_VALIDATIONS) failures += await validate(run, v, final);

      banner(failures === 0 ? 'All workshop validations hold' : `${failures} workshop validation(s) failed`);
      return failures === 0 ? 0 : 1;
    }
  } finally {
    await source.close();
    if (options.keep) process.stdout.write(`kept ${work}\n`);
    else await rm(work, { recursive: true, force: true });
  }
}

/** `--keep` keeps the working directory; `--source postgresql` runs the workshop on PostgreSQL. */
export function demoOptions(args: readonly string[]): { keep: boolean; source: DemoSourceType } {
  const at = args.indexOf('--source');
  const source = at >= 0 ? args[at + 1] : 'mariadb';
  if (source !== 'mariadb' && source !== 'postgresql') {
    throw new Error(`--source must be mariadb or postgresql, not ${String(source)}`);
  }
  return { keep: args.includes('--keep'), source };
}

async function validate(
  run: (args: string[]) => Promise<CliResult>,
  v: (typeof WORKSHOP_VALIDATIONS)[number],
  source: Parameters<(typeof WORKSHOP_VALIDATIONS)[number]['check']>[1],
): Promise<number> {
  banner(v.title);
  process.stdout.write(`$ tributary sql "${v.sql}"\n`);
  const shown = await run(['sql', v.sql]);
  const r = await run(['sql', v.sql, '--format', 'json']);
  if (shown.code !== 0 || r.code !== 0) {
    process.stdout.write(`FAIL: ${shown.stderr || r.stderr}`);
    return 1;
  }
  process.stdout.write(shown.stdout);
  const rows = JSON.parse(r.stdout) as Record<string, unknown>[];
  const problem = v.check(rows, source);
  process.stdout.write(problem === null ? 'PASS\n' : `FAIL: ${problem}\n`);
  return problem === null ? 0 : 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  runDemo(demoOptions(process.argv.slice(2))).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`demo failed: ${messageOf(error)}\n`);
      process.exit(1);
    },
  );
}
