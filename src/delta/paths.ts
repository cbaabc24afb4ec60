/**
 * Turning the URIs found in a Delta log (data files, deletion vectors, sidecars, CDC files) into local paths.
 * Internal to `src/delta`.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { TributaryError } from '../core/errors.js';

function decodeUriPath(p: string): string {
  try {
    return decodeURIComponent(p);
  } catch {
    // Some old writers did not encode `%`; the raw string is then the best guess.
    return p;
  }
}

/** True for `scheme:...` URIs (and not for a Windows-style drive letter, which Delta never writes). */
export function isAbsoluteUri(p: string): boolean {
  return /^[A-Za-z][A-Za-z0-9+.-]+:/.test(p);
}

/**
 * The absolute local path of a log URI: a percent-encoded path relative to `root`, or an absolute `file:` URI
 * or scheme-less absolute path (the protocol allows those, e.g. after a SHALLOW CLONE). A relative path that climbs out of `root` (`../`) is
 * refused with `DELTA_CORRUPT`, naming `source` (the log file it came from): a log must not make a reader open
 * arbitrary files.
 */
export function resolveTablePath(root: string, p: string, source: string): string {
  if (isAbsoluteUri(p)) {
    if (!p.startsWith('file:')) {
      throw new TributaryError(
        'DELTA_PROTOCOL',
        `Delta file path ${p} in ${source} is not on the local file system`,
        {
          hint: 'Only local (file:) tables are supported.',
        },
      );
    }
    try {
      return fileURLToPath(new URL(p));
    } catch {
      return decodeUriPath(p.replace(/^file:(\/\/)?/, ''));
    }
  }
  const decoded = decodeUriPath(p);
  // Scheme-less absolute paths are absolute URIs on the default (local) file system, as Spark reads them.
  if (path.isAbsolute(decoded)) return path.normalize(decoded);
  const resolved = path.resolve(root, decoded);
  const relative = path.relative(root, resolved);
  if (relative === '..' || relative.startsWith(`..${path.sep}`)) {
    throw new TributaryError(
      'DELTA_CORRUPT',
      `Delta file path ${JSON.stringify(p)} in ${source} escapes the table root ${root}`,
      {
        hint: 'Relative paths in a Delta log must stay inside the table directory; the log is damaged or hostile.',
      },
    );
  }
  return resolved;
}
