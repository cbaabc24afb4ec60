/** `npm run bench [-- <name>...]`: runs the benchmarks and prints their results (also written to bench/results/). */
import { benchMysqlSource } from './mysql-source.bench.js';

const BENCHES: Record<string, () => Promise<Record<string, unknown>>> = {
  'mysql-source': benchMysqlSource,
  'delta-log': async () => (await import('./delta-log.bench.js')).benchDeltaLog(),
  'delta-merge': async () => (await import('./delta-merge.bench.js')).benchDeltaMerge(),
  'postgres-source': async () => (await import('./postgres-source.bench.js')).benchPostgresSource(),
};

const wanted = process.argv.slice(2);
for (const [name, bench] of Object.entries(BENCHES)) {
  if (wanted.length > 0 && !wanted.includes(name)) continue;
  process.stdout.write(`\n== ${name}\n`);
  const result = await bench();
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
}
process.exit(0);
