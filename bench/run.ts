/**
 * `npm run bench [-- <name>...]`: runs the benchmarks and prints their results (also written to bench/results/).
 * `pipeline` names every end-to-end pipeline bench; they also render bench/results/pipeline.md (the docs' tables).
 * When several run, bench/results/summary.json gathers them.
 */
import { benchMysqlSource } from './mysql-source.bench.js';
import { machine, writeResult } from './pipeline-config.js';
import { writePipelineReport } from './pipeline-report.js';
import { closeShared } from './pipeline-shared.js';

const BENCHES: Record<string, () => Promise<Record<string, unknown>>> = {
  'mysql-source': benchMysqlSource,
  'delta-log': async () => (await import('./delta-log.bench.js')).benchDeltaLog(),
  'delta-merge': async () => (await import('./delta-merge.bench.js')).benchDeltaMerge(),
  'postgres-source': async () => (await import('./postgres-source.bench.js')).benchPostgresSource(),
  'staging-backlog': async () => (await import('./staging-backlog.bench.js')).benchStagingBacklog(),
  // The snapshot bench leaves its largest bronze tables for the scale bench, so it runs first.
  'pipeline-snapshot': async () => (await import('./pipeline-snapshot.bench.js')).benchPipelineSnapshot(),
  'pipeline-scale': async () => (await import('./pipeline-scale.bench.js')).benchPipelineScale(),
  'pipeline-cdc': async () => (await import('./pipeline-cdc.bench.js')).benchPipelineCdc(),
};

const wanted = process.argv.slice(2);
const selected = (name: string) =>
  wanted.length === 0 ||
  wanted.includes(name) ||
  (wanted.includes('pipeline') && name.startsWith('pipeline-'));
const results: Record<string, unknown> = {};
const startedAt = Date.now();
try {
  for (const [name, bench] of Object.entries(BENCHES)) {
    if (!selected(name)) continue;
    process.stdout.write(`\n== ${name}\n`);
    const result = await bench();
    results[name] = result;
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  }
} finally {
  await closeShared();
}
if (Object.keys(results).some((name) => name.startsWith('pipeline-'))) {
  process.stdout.write(`\nmarkdown tables: ${await writePipelineReport()}\n`);
}
if (Object.keys(results).length > 1) {
  await writeResult('summary', {
    machine: machine(),
    minutes: Math.round((Date.now() - startedAt) / 6000) / 10,
    benches: results,
  });
}
process.exit(0);
