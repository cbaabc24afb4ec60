/** `tributary preflight <connection>`: the production checklist's source checks, with evidence and fixes. */
import { type Command, Option } from 'commander';
import { preflightConnection } from '../../app/run-pipeline.js';
import { loadConfig } from '../../config/load-config.js';
import type { Finding } from '../../core/ports.js';
import type { CliContext } from '../context.js';

const MARK: Record<Finding['status'], string> = { PASS: 'PASS', WARN: 'WARN', FAIL: 'FAIL', INFO: 'INFO' };

export function renderFindings(findings: readonly Finding[]): string {
  const out: string[] = [];
  let section = '';
  for (const f of findings) {
    if (f.section !== section) {
      section = f.section;
      out.push('', section);
    }
    out.push(`  ${MARK[f.status]}  ${f.title}`, `        seen: ${f.evidence}`);
    if (f.fix && f.status !== 'PASS') out.push(`        fix:  ${f.fix}`);
  }
  const count = (s: Finding['status']) => findings.filter((f) => f.status === s).length;
  out.push('', `${count('PASS')} passed, ${count('WARN')} warnings, ${count('FAIL')} failed`);
  return `${out.join('\n').trimStart()}\n`;
}

export function registerPreflightCommand(program: Command, ctx: CliContext): void {
  program
    .command('preflight')
    .description(
      "check a source against the production checklist (log settings and retention, the CDC user's grants, keys; MySQL binlog or PostgreSQL logical replication)",
    )
    .argument('<connection>', 'connection name from the config')
    .addOption(new Option('--format <format>', 'output format').choices(['table', 'json']).default('table'))
    .action(async (name: string, opts: { format: 'table' | 'json' }) => {
      const config = await loadConfig(ctx.configPath());
      const findings = await preflightConnection(config, name, new AbortController().signal);
      ctx.stdout.write(
        opts.format === 'json' ? `${JSON.stringify(findings, null, 2)}\n` : renderFindings(findings),
      );
      if (findings.some((f) => f.status === 'FAIL')) process.exitCode = 1;
    });
}
