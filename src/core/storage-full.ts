/**
 * Recognising a full disk. A write that fails because the file system is out of space (ENOSPC) or the user is
 * over quota (EDQUOT) is not a bug and not corruption: it stops the work with an error that names the
 * volume, and the work resumes once space is freed. Node reports these as an errno `code`; DuckDB reports
 * them only as the text of an IO error ("IO Error: Could not write file ...: No space left on device"), so
 * both are checked, through the whole `cause` chain of wrapped errors.
 *
 * Pure (no node: imports), like the rest of src/core; the callers measure the free space themselves.
 */

export type StorageFullReason = 'ENOSPC' | 'EDQUOT';

const TEXTS: ReadonlyArray<[RegExp, StorageFullReason]> = [
  [/no space left on device/i, 'ENOSPC'],
  // Windows' wording of ENOSPC, as DuckDB passes it on.
  [/not enough space on the disk/i, 'ENOSPC'],
  [/disk quota exceeded/i, 'EDQUOT'],
];

/** ENOSPC or EDQUOT when `error`, or an error it wraps, says that the storage is full; otherwise undefined. */
export function storageFullReason(error: unknown): StorageFullReason | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 8 && current !== null && typeof current === 'object'; depth++) {
    const code = (current as { code?: unknown }).code;
    if (code === 'ENOSPC' || code === 'EDQUOT') return code;
    const message = (current as { message?: unknown }).message;
    if (typeof message === 'string') {
      for (const [pattern, reason] of TEXTS) if (pattern.test(message)) return reason;
    }
    current = (current as { cause?: unknown }).cause;
  }
  if (typeof error === 'string') {
    for (const [pattern, reason] of TEXTS) if (pattern.test(error)) return reason;
  }
  return undefined;
}

/** Free and total bytes of a file system, as `statfs` reports them to an unprivileged writer. */
export interface StorageSpace {
  readonly freeBytes: number;
  readonly totalBytes: number;
}

/** `1.5 MiB`, `0 B`. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** "no space left on device (ENOSPC); 0 B free of 8.0 MiB" — the space part only when it was measured. */
export function describeStorageFull(reason: StorageFullReason, space: StorageSpace | undefined): string {
  const what = reason === 'ENOSPC' ? 'no space left on device (ENOSPC)' : 'disk quota exceeded (EDQUOT)';
  return space ? `${what}; ${formatBytes(space.freeBytes)} free of ${formatBytes(space.totalBytes)}` : what;
}
