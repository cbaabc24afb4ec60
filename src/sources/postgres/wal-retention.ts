/**
 * WAL a slot holds while a long snapshot runs. Nothing confirms the slot until streaming starts, so every
 * byte written to the server meanwhile is kept for us; past `max_slot_wal_keep_size` the server invalidates
 * the slot and the snapshot is wasted. This says how much is held and warns while there is time to act.
 */

export interface SlotWal {
  /** Bytes between the slot's restart_lsn and the server's current WAL position. */
  readonly retainedBytes: number;
  /** `max_slot_wal_keep_size` in bytes; undefined when unlimited (-1). */
  readonly maxBytes: number | undefined;
  /** pg_replication_slots.safe_wal_size: bytes that may still be written before the slot is lost. */
  readonly safeBytes: number | undefined;
  readonly walStatus: string | undefined;
}

/** Warn when less than this share of the limit is left. */
const WARN_SHARE_LEFT = 0.2;

export function describeSlotWal(slot: string, wal: SlotWal): { level: 'info' | 'warn'; message: string } {
  const held = `the slot "${slot}" holds ${formatBytes(wal.retainedBytes)} of WAL`;
  if (wal.maxBytes === undefined) {
    return { level: 'info', message: `snapshot: ${held} (max_slot_wal_keep_size is unlimited)` };
  }
  const left = wal.safeBytes ?? wal.maxBytes - wal.retainedBytes;
  if (wal.walStatus === 'unreserved' || wal.walStatus === 'lost' || left < wal.maxBytes * WARN_SHARE_LEFT) {
    return {
      level: 'warn',
      message: `snapshot: ${held}, and only ${formatBytes(Math.max(0, left))} more may be written before max_slot_wal_keep_size (${formatBytes(wal.maxBytes)}) invalidates it and the snapshot must start over. Raise max_slot_wal_keep_size (ALTER SYSTEM SET max_slot_wal_keep_size = '...'; SELECT pg_reload_conf();) or reduce write load until the snapshot ends.`,
    };
  }
  return {
    level: 'info',
    message: `snapshot: ${held} of the ${formatBytes(wal.maxBytes)} max_slot_wal_keep_size allows`,
  };
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}
