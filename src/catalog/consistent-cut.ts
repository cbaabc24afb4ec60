/**
 * Consistent cuts: after each apply round, the version of every table of a pipeline that together show the
 * source at one transaction boundary (the newest sealed segment). Tables are committed one after another, so
 * a reader that takes each table's newest version between two of those commits can see an order whose
 * customer is not there yet. A reader that takes the cut's versions never can: every table then reflects
 * exactly the same prefix of the source's log. `tributary sql` reads at the cut by default.
 *
 * One small JSON file per pipeline under `<warehouse>/.tributary/cuts/`, replaced atomically, so a reader
 * sees the previous cut or the new one, never a mixture.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface ConsistentCut {
  readonly pipeline: string;
  /** The newest staged segment every table of the cut has applied. */
  readonly segment: number;
  /** The source position at the end of that segment. */
  readonly position: string | null;
  readonly recordedAt: string;
  /** `catalog.schema.table` → Delta version. */
  readonly tables: Readonly<Record<string, number>>;
}

/** Where a table of a cut is read: its version, and which pipeline's cut says so. */
export interface CutVersion {
  readonly version: number;
  readonly pipeline: string;
  readonly segment: number;
}

function cutsDir(warehouseRoot: string): string {
  return join(warehouseRoot, '.tributary', 'cuts');
}

/** Where a pipeline's cut is kept (written by src/pipeline/consistent-cut-writer.ts). */
export function consistentCutPath(warehouseRoot: string, pipeline: string): string {
  return join(cutsDir(warehouseRoot), `${pipeline}.json`);
}

/** Every pipeline's cut, by table. A cut file that cannot be read is skipped: its tables read newest. */
export async function readConsistentCuts(warehouseRoot: string): Promise<Map<string, CutVersion>> {
  const byTable = new Map<string, CutVersion>();
  let names: string[];
  try {
    names = (await readdir(cutsDir(warehouseRoot))).filter((n) => n.endsWith('.json'));
  } catch {
    return byTable;
  }
  for (const name of names) {
    let cut: ConsistentCut;
    try {
      cut = JSON.parse(await readFile(join(cutsDir(warehouseRoot), name), 'utf8')) as ConsistentCut;
    } catch {
      continue;
    }
    for (const [table, version] of Object.entries(cut.tables ?? {})) {
      if (Number.isInteger(version))
        byTable.set(table, { version, pipeline: cut.pipeline, segment: cut.segment });
    }
  }
  return byTable;
}
