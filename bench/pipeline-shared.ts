/**
 * What the pipeline benchmarks share within one `npm run bench` process: one server per source, tables
 * already loaded, and bronze tables a snapshot bench leaves for the scale bench (a 10M-row snapshot is the
 * costliest setup of the suite, so it is made once). `closeShared` releases everything; run.ts calls it.
 */
import type { SourceKind } from './pipeline-config.js';
import { type BenchSource, startSource, type TableRef, type Workspace } from './pipeline-sources.js';

const sources = new Map<SourceKind, Promise<BenchSource>>();
const loaded = new Map<string, number>();
const schemas = new Set<string>();
const kept = new Map<string, KeptBronze>();

/** A workspace whose pipeline has snapshotted `table` (ids 1..rows, untouched since) into bronze. */
export interface KeptBronze {
  readonly ws: Workspace;
  readonly table: TableRef;
  readonly rows: number;
}

export function sharedSource(kind: SourceKind): Promise<BenchSource> {
  let source = sources.get(kind);
  if (source === undefined) {
    source = startSource(kind);
    sources.set(kind, source);
  }
  return source;
}

export async function ensureSchema(source: BenchSource, schema: string): Promise<void> {
  const key = `${source.kind}:${schema}`;
  if (schemas.has(key)) return;
  await source.createSchema(schema);
  schemas.add(key);
}

/** Loads `t` with ids 1..rows unless this process already did; returns the load time (0 when reused). */
export async function ensureTable(source: BenchSource, t: TableRef, rows: number): Promise<number> {
  const key = `${source.kind}:${t.schema}.${t.table}`;
  const have = loaded.get(key);
  if (have === rows) return 0;
  if (have !== undefined) throw new Error(`${key} was loaded with ${have} rows, not ${rows}`);
  await ensureSchema(source, t.schema);
  const start = performance.now();
  await source.loadTable(t, rows);
  loaded.set(key, rows);
  return performance.now() - start;
}

export async function keepBronze(kind: SourceKind, bronze: KeptBronze): Promise<void> {
  const key = `${kind}:${bronze.rows}`;
  const previous = kept.get(key);
  kept.set(key, bronze);
  if (previous && previous.ws !== bronze.ws) await previous.ws.dispose();
}

/** Hands a kept bronze table over; the caller now owns (and disposes) its workspace. */
export function takeBronze(kind: SourceKind, rows: number): KeptBronze | undefined {
  const key = `${kind}:${rows}`;
  const bronze = kept.get(key);
  kept.delete(key);
  return bronze;
}

export async function closeShared(): Promise<void> {
  for (const bronze of kept.values()) await bronze.ws.dispose().catch(() => undefined);
  kept.clear();
  for (const source of sources.values()) {
    await (await source.catch(() => undefined))?.stop();
  }
  sources.clear();
  loaded.clear();
  schemas.clear();
}
