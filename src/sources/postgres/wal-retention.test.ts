import { describe, expect, it } from 'vitest';
import { describeSlotWal, formatBytes } from './wal-retention.js';

const MB = 1024 * 1024;

describe('describeSlotWal', () => {
  it('reports what the slot holds against the limit', () => {
    expect(
      describeSlotWal('s', {
        retainedBytes: 10 * MB,
        maxBytes: 1024 * MB,
        safeBytes: 1014 * MB,
        walStatus: 'reserved',
      }),
    ).toEqual({
      level: 'info',
      message: 'snapshot: the slot "s" holds 10.0 MB of WAL of the 1.0 GB max_slot_wal_keep_size allows',
    });
  });

  it('warns when less than a fifth of the limit is left, or the slot is already past its reservation', () => {
    const near = describeSlotWal('s', {
      retainedBytes: 900 * MB,
      maxBytes: 1024 * MB,
      safeBytes: 124 * MB,
      walStatus: 'extended',
    });
    expect(near.level).toBe('warn');
    expect(near.message).toContain('only 124.0 MB more may be written');
    expect(near.message).toContain('ALTER SYSTEM SET max_slot_wal_keep_size');
    expect(
      describeSlotWal('s', {
        retainedBytes: 1 * MB,
        maxBytes: 1024 * MB,
        safeBytes: undefined,
        walStatus: 'unreserved',
      }).level,
    ).toBe('warn');
  });

  it('says when the limit is unlimited', () => {
    expect(
      describeSlotWal('s', {
        retainedBytes: 3,
        maxBytes: undefined,
        safeBytes: undefined,
        walStatus: 'reserved',
      }),
    ).toEqual({
      level: 'info',
      message: 'snapshot: the slot "s" holds 3 B of WAL (max_slot_wal_keep_size is unlimited)',
    });
  });

  it('formats sizes', () => {
    expect(formatBytes(1536)).toBe('1.5 kB');
    expect(formatBytes(5 * 1024 ** 4)).toBe('5.0 TB');
  });
});
