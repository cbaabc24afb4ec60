/**
 * The one place where three-part names become storage. A warehouse is a directory:
 *
 *   <warehouse>/<catalog>/<schema>/<table>/_delta_log/...   Delta tables
 *   <warehouse>/<catalog>/<schema>/<volume>/...            volumes (staging areas), marked by .tributary-volume
 *
 * A table and a volume cannot share a name within a schema, as in Unity Catalog.
 */
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { TributaryError } from '../core/errors.js';

export interface TableName {
  readonly catalog: string;
  readonly schema: string;
  readonly table: string;
}

export interface VolumeName {
  readonly catalog: string;
  readonly schema: string;
  readonly volume: string;
}

const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;
const VOLUME_MARKER = '.tributary-volume';

export function formatTableName(name: TableName): string {
  return `${name.catalog}.${name.schema}.${name.table}`;
}

export function parseVolumeName(text: string): VolumeName {
  const parts = text.split('.');
  if (parts.length !== 3 || !parts.every((p) => IDENT.test(p))) {
    throw new TributaryError(
      'CONFIG_INVALID',
      `"${text}" is not a volume name of the form catalog.schema.volume.`,
    );
  }
  const [catalog, schema, volume] = parts as [string, string, string];
  return { catalog, schema, volume };
}

export class Warehouse {
  constructor(readonly root: string) {}

  tablePath(name: TableName): string {
    return join(this.root, name.catalog, name.schema, name.table);
  }

  /**
   * Where a `system.<schema>.<table>` table lives (`system.lakeflow.pipeline_events`): beside the catalogs but
   * outside them, since `system` is no catalog of the warehouse (and DuckDB reserves the name).
   */
  systemTablePath(schema: string, table: string): string {
    return join(this.root, '.tributary', 'system', schema, table);
  }

  volumePath(name: VolumeName): string {
    return join(this.root, name.catalog, name.schema, name.volume);
  }

  /** Creates the volume directory (idempotent) and returns its path. */
  async ensureVolume(name: VolumeName): Promise<string> {
    const path = this.volumePath(name);
    await mkdir(path, { recursive: true });
    await writeFile(join(path, VOLUME_MARKER), `${name.catalog}.${name.schema}.${name.volume}\n`, {
      flag: 'w',
    });
    return path;
  }

  /** Every Delta table in the warehouse, found by its `_delta_log` directory. */
  async listTables(): Promise<TableName[]> {
    const found: TableName[] = [];
    for (const catalog of await subdirs(this.root)) {
      for (const schema of await subdirs(join(this.root, catalog))) {
        for (const table of await subdirs(join(this.root, catalog, schema))) {
          if (await isDir(join(this.root, catalog, schema, table, '_delta_log'))) {
            found.push({ catalog, schema, table });
          }
        }
      }
    }
    return found;
  }

  async listCatalogs(): Promise<string[]> {
    return subdirs(this.root);
  }
}

async function subdirs(path: string): Promise<string[]> {
  try {
    const entries = await readdir(path, { withFileTypes: true });
    return entries
      .filter((e) => e.isDirectory() && IDENT.test(e.name))
      .map((e) => e.name)
      .sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}
