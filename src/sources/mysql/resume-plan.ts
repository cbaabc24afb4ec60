/**
 * Where to resume the binlog from a saved position, given the server the connection reaches now.
 *
 * - Same server and its file still there: by file and offset, exactly as saved.
 * - A different server (a failover: another server_id, server_uuid or flavor), or the saved file gone: by
 *   GTID, if the position has a GTID state of the same flavor. The server then finds the first transaction
 *   that state does not contain, wherever it sits in its own binlog, and refuses (error 1236) if its binlog
 *   no longer holds everything after that state.
 * - Otherwise the place to continue cannot be found: `purged` (same server, file gone) or `lost` (another
 *   server, no usable GTID state), both of which need a new snapshot.
 *
 * Positions from before GTIDs were recorded (`legacy`) have no identity; they resume by file and offset
 * while the file exists.
 */
import {
  type DecodedPosition,
  describeCoordinates,
  describeServer,
  type ServerIdentity,
  sameServer,
} from './binlog-position.js';

export type ResumePlan =
  | {
      readonly kind: 'file';
      readonly file: string;
      readonly offset: number;
      /** The GTID state at that point; undefined when unknown (legacy positions), to be looked up. */
      readonly gtid: string | undefined;
      readonly ordinal: bigint;
    }
  | {
      readonly kind: 'gtid';
      readonly gtid: string;
      readonly ordinal: bigint;
      /** Why the file and offset cannot be used, for the warning. */
      readonly reason: string;
      /** True when the connection reaches another server than the one that wrote the saved position. */
      readonly failover: boolean;
    }
  | { readonly kind: 'purged' }
  | { readonly kind: 'lost'; readonly reason: string };

export function planResume(saved: DecodedPosition, current: ServerIdentity, fileExists: boolean): ResumePlan {
  if (saved.legacy) {
    return fileExists
      ? { kind: 'file', file: saved.file, offset: saved.offset, gtid: undefined, ordinal: 0n }
      : { kind: 'purged' };
  }
  const same = sameServer(saved.server, current);
  if (same && fileExists) {
    return { kind: 'file', file: saved.file, offset: saved.offset, gtid: saved.gtid, ordinal: saved.ordinal };
  }
  const where = describeCoordinates(saved);
  const reason = same
    ? `binlog file ${saved.file} of the saved position ${where} is no longer on ${describeServer(current)}`
    : `the saved position ${where} was recorded on ${describeServer(saved.server)}, but the connection now reaches ${describeServer(current)}`;
  if (saved.server.flavor !== current.flavor) {
    return {
      kind: 'lost',
      reason: `${reason}; a ${saved.server.flavor === 'mariadb' ? 'MariaDB' : 'MySQL'} GTID state means nothing to ${current.flavor === 'mariadb' ? 'MariaDB' : 'MySQL'}`,
    };
  }
  if (saved.gtid !== '') {
    return { kind: 'gtid', gtid: saved.gtid, ordinal: saved.ordinal, reason, failover: !same };
  }
  if (same) return { kind: 'purged' };
  return {
    kind: 'lost',
    reason: `${reason}, and the position has no GTID state (${current.flavor === 'mysql' ? 'gtid_mode was OFF' : 'no transaction had been logged yet'}) from which the new server could find the next transaction; a binlog file and offset mean something only on the server that wrote them`,
  };
}
