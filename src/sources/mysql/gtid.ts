/**
 * GTID state as Tributary records it in a position: which transactions the log holds up to that point.
 *
 * - **MariaDB**: the last GTID per replication domain, `domain-server-seq` joined by commas (`0-101-42,1-5-7`),
 *   as `@@gtid_binlog_pos` and `BINLOG_GTID_POS()` print it.
 * - **MySQL**: a GTID set, `uuid:1-42[:tag:1-3],...`, as `@@gtid_executed` prints it.
 *
 * Tracking (adding each committed transaction) uses zongji's exact models, so 64-bit sequence numbers and
 * MySQL 8.3+ tags are handled; the text is always the models' canonical form, so the same state always
 * prints the same way.
 */
import { GtidSet, MariadbGtidPosition } from '@vlasky/zongji';
import { messageOf, TributaryError } from '../../core/errors.js';

export type Flavor = 'mariadb' | 'mysql';

/** The flavor a non-empty GTID text belongs to: MySQL sets always contain `:`, MariaDB positions never. */
export function gtidFlavor(text: string): Flavor | undefined {
  if (text === '') return undefined;
  return text.includes(':') ? 'mysql' : 'mariadb';
}

/** The canonical text of a GTID state read from the server (whitespace and order as the model prints). */
export function normalizeGtid(flavor: Flavor, text: string): string {
  return GtidState.parse(flavor, text).toString();
}

/**
 * A number that grows with every transaction in the log: for MariaDB the sum of the per-domain sequence
 * numbers, for MySQL the count of GTIDs in the set. It does not depend on which server wrote the log, so
 * positions on a new primary after a failover sort after those captured on the old one (see
 * binlog-position.ts). Under gtid_strict_mode (MariaDB) every transaction raises its domain's sequence
 * number; in MySQL every transaction adds one GTID to the set.
 */
export function gtidOrdinal(text: string): bigint {
  if (text === '') return 0n;
  let total = 0n;
  if (gtidFlavor(text) === 'mariadb') {
    for (const entry of text.split(',')) {
      const seq = entry.trim().split('-')[2];
      if (seq === undefined || !/^\d+$/.test(seq)) throw badGtid(text);
      total += BigInt(seq);
    }
    return total;
  }
  for (const entry of text.split(',')) {
    // uuid, then interval items (`5` or `1-5`) and tag items (`tag_a`) that name the intervals after them.
    for (const item of entry.trim().split(':').slice(1)) {
      const trimmed = item.trim();
      if (/^[A-Za-z_]/.test(trimmed)) continue;
      const m = /^(\d+)(?:-(\d+))?$/.exec(trimmed);
      if (!m?.[1]) throw badGtid(text);
      const start = BigInt(m[1]);
      const end = m[2] === undefined ? start : BigInt(m[2]);
      total += end - start + 1n;
    }
  }
  return total;
}

/** The replication domains of a MariaDB GTID position. */
export function mariaDbDomains(text: string): number[] {
  if (text === '') return [];
  return text.split(',').map((entry) => Number(entry.trim().split('-')[0]));
}

/** The executed-transactions state, extended transaction by transaction while the binlog streams. */
export class GtidState {
  readonly flavor: Flavor;
  readonly #mariadb: MariadbGtidPosition | undefined;
  readonly #mysql: GtidSet | undefined;

  private constructor(flavor: Flavor, mariadb?: MariadbGtidPosition, mysqlSet?: GtidSet) {
    this.flavor = flavor;
    this.#mariadb = mariadb;
    this.#mysql = mysqlSet;
  }

  static parse(flavor: Flavor, text: string): GtidState {
    const clean = text.replace(/\s+/g, '');
    try {
      return flavor === 'mariadb'
        ? new GtidState(flavor, MariadbGtidPosition.parse(clean))
        : new GtidState(flavor, undefined, GtidSet.parse(clean));
    } catch (error) {
      throw badGtid(text, error);
    }
  }

  /** MariaDB's GTID_LIST event (the state at the start of a binlog file). */
  static fromMariaDbList(
    entries: ReadonlyArray<{ domainId: number; serverId: number; seqNo: number | string }>,
  ): GtidState {
    return new GtidState('mariadb', MariadbGtidPosition.fromGtidList([...entries]));
  }

  /** Records one committed transaction: `domain-server-seq` (MariaDB) or `uuid:gno` / `uuid:tag:gno` (MySQL). */
  add(gtid: string): void {
    try {
      if (this.#mariadb) {
        const [domain, server, seq] = gtid.split('-');
        if (domain === undefined || server === undefined || seq === undefined) throw new Error('not d-s-n');
        this.#mariadb.add({ domainId: Number(domain), serverId: Number(server), seqNo: seq });
      } else {
        this.#mysql?.add(gtid);
      }
    } catch (error) {
      throw badGtid(gtid, error);
    }
  }

  toString(): string {
    return (this.#mariadb ?? this.#mysql)?.toString() ?? '';
  }
}

function badGtid(text: string, cause?: unknown): TributaryError {
  return new TributaryError(
    'STAGING_CORRUPT',
    `"${text}" is not a GTID state${cause === undefined ? '' : `: ${messageOf(cause)}`}`,
    cause === undefined ? {} : { cause },
  );
}
