import { describe, expect, it } from 'vitest';
import { TributaryError } from './errors.js';
import { describeStorageFull, formatBytes, storageFullReason } from './storage-full.js';

const errno = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('storageFullReason', () => {
  it('recognises Node errno codes', () => {
    expect(storageFullReason(errno('ENOSPC', 'ENOSPC: no space left on device, write'))).toBe('ENOSPC');
    expect(storageFullReason(errno('EDQUOT', 'EDQUOT: disk quota exceeded, write'))).toBe('EDQUOT');
  });

  it("recognises DuckDB's IO error text, also when wrapped as SQL_ERROR", () => {
    const duck = new Error('IO Error: Could not write file "/v/x.parquet": No space left on device');
    expect(storageFullReason(duck)).toBe('ENOSPC');
    expect(storageFullReason(new TributaryError('SQL_ERROR', duck.message, { cause: duck }))).toBe('ENOSPC');
    expect(storageFullReason(new Error('IO Error: Could not write file "x": Disk quota exceeded'))).toBe(
      'EDQUOT',
    );
  });

  it('follows the cause chain', () => {
    const inner = errno('ENOSPC', 'write failed');
    const outer = new TributaryError('DELTA_CORRUPT', 'Cannot write Delta commit', { cause: inner });
    expect(storageFullReason(new Error('round failed', { cause: outer }))).toBe('ENOSPC');
  });

  it('ignores every other failure', () => {
    expect(storageFullReason(errno('EACCES', 'EACCES: permission denied'))).toBeUndefined();
    expect(storageFullReason(new Error('IO Error: Could not read file'))).toBeUndefined();
    expect(storageFullReason(undefined)).toBeUndefined();
    expect(storageFullReason('a string')).toBeUndefined();
  });
});

describe('describeStorageFull', () => {
  it('names the errno and the space left when it was measured', () => {
    expect(describeStorageFull('ENOSPC', { freeBytes: 0, totalBytes: 8 * 1024 * 1024 })).toBe(
      'no space left on device (ENOSPC); 0 B free of 8.0 MiB',
    );
    expect(describeStorageFull('EDQUOT', undefined)).toBe('disk quota exceeded (EDQUOT)');
  });

  it('formats sizes in binary units', () => {
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(5 * 1024 ** 4)).toBe('5.0 TiB');
  });
});
