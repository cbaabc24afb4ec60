/**
 * `LIST '<path>'`, as the workshop runs it on the staging volume:
 *
 *   LIST 'dbfs:/Volumes/retail_analytics/landing/ingestion_volume/'
 *
 * `dbfs:/Volumes/<catalog>/<schema>/<volume>/...` and `/Volumes/...` name a volume of the warehouse (the catalog
 * is the one place names become paths); any other path is refused rather than listing the file system. One
 * level is listed, like Databricks: `path`, `name`, `size`, `modification_time` (ms since the epoch);
 * directories end in `/` and have size 0.
 */
import { readdir, stat } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { TributaryError } from '../../core/errors.js';
import { type QueryResult, route, type StatementHandler } from './context.js';
import type { Cursor } from './cursor.js';

const VOLUME_PATH =
  /^(?:dbfs:)?\/Volumes\/([A-Za-z_][A-Za-z0-9_]*)\/([A-Za-z_][A-Za-z0-9_]*)\/([A-Za-z_][A-Za-z0-9_]*)(\/.*)?$/;

export const listVolume: StatementHandler<{ readonly path: string }> = {
  kind: 'LIST',
  parse(cursor: Cursor) {
    if (!cursor.acceptKeyword('LIST')) return undefined;
    const path = cursor.stringLiteral();
    cursor.expectEnd();
    return { path };
  },
  async execute(context, { path }): Promise<QueryResult> {
    const m = VOLUME_PATH.exec(path);
    if (!m) {
      throw new TributaryError(
        'SQL_ERROR',
        `LIST takes a volume path such as 'dbfs:/Volumes/<catalog>/<schema>/<volume>/', not '${path}'.`,
      );
    }
    const [, catalog, schema, volume, rest] = m as unknown as [
      string,
      string,
      string,
      string,
      string | undefined,
    ];
    const root = context.warehouse.volumePath({ catalog, schema, volume });
    const dir = resolve(root, `.${rest ?? '/'}`);
    if (dir !== root && !dir.startsWith(`${root}${sep}`)) {
      throw new TributaryError(
        'SQL_ERROR',
        `The path '${path}' leaves the volume ${catalog}.${schema}.${volume}.`,
      );
    }
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new TributaryError('SQL_ERROR', `No such volume path: ${path}`, {
          hint: `Volume ${catalog}.${schema}.${volume} lives at ${root}; a gateway creates it on its first run.`,
        });
      }
      throw error;
    }
    const base = `dbfs:/Volumes/${catalog}/${schema}/${volume}`;
    const rows = [];
    for (const e of entries
      .filter((x) => !x.name.startsWith('.'))
      .sort((a, b) => a.name.localeCompare(b.name))) {
      const full = join(dir, e.name);
      const info = await stat(full);
      const name = e.isDirectory() ? `${e.name}/` : e.name;
      const inVolume = relative(root, full).split(sep).join('/');
      rows.push({
        path: `${base}/${inVolume}${e.isDirectory() ? '/' : ''}`,
        name,
        size: e.isDirectory() ? 0 : info.size,
        modification_time: Math.floor(info.mtimeMs),
      });
    }
    return { columns: ['path', 'name', 'size', 'modification_time'], rows };
  },
};

export const listVolumeRoute = route(listVolume);
