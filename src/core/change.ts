/**
 * The change model shared by every source and the staging volume.
 *
 * A source emits {@link ChangeBatch}es. A batch never splits a source transaction: `complete` is true when
 * the batch ends on a transaction boundary, and only such a batch may seal a staged segment.
 */
import type { Position } from './position.js';
import type { Row, TableId, TableSchema } from './table.js';

export type ChangeEvent =
  /** A row read by the initial snapshot. */
  | { readonly kind: 'read'; readonly table: TableId; readonly after: Row }
  | { readonly kind: 'insert'; readonly table: TableId; readonly after: Row }
  | {
      readonly kind: 'update';
      readonly table: TableId;
      readonly before: Row | null;
      readonly after: Row;
      /**
       * Columns whose new value the source did not send because it did not change (PostgreSQL's unchanged
       * TOAST values). They keep the value already stored; `after` has no entry for them.
       */
      readonly unchanged?: readonly string[];
    }
  | { readonly kind: 'delete'; readonly table: TableId; readonly before: Row }
  /** Every row of the table was removed (TRUNCATE); later events of the same batch apply after it. */
  | { readonly kind: 'truncate'; readonly table: TableId }
  /** The table's shape as of this point in the log. */
  | { readonly kind: 'schema'; readonly table: TableId; readonly schema: TableSchema };

export interface ChangeBatch {
  readonly origin: 'snapshot' | 'stream';
  /** Resume position: everything up to and including this batch has been read. */
  readonly position: Position;
  /** Source commit time of the batch's last transaction (snapshot: the snapshot's start). */
  readonly commitTime: Date;
  /** True when the batch ends on a transaction boundary. */
  readonly complete: boolean;
  /**
   * Stream batches that are a part of a transaction (`complete: false`): the position its last batch will
   * carry, when the source knows it in advance (a PostgreSQL Begin names its commit LSN). `position` must stay
   * at the previous commit so that a crash replays the whole transaction; this is what tells capture whether
   * the transaction committed before a table's snapshot (and is contained in it) or after.
   */
  readonly commitPosition?: Position;
  readonly events: readonly ChangeEvent[];
  /** Snapshot batches only: the table read. Set even when the batch is empty (an empty table). */
  readonly snapshotTable?: TableId;
  /** Snapshot batches only: true on the table's final batch (which may be empty). */
  readonly snapshotTableComplete?: boolean;
  /**
   * Snapshot batches only: where a resumed read continues, in the source's own terms (say, the server's
   * text of the last key), for sources whose key values do not survive the trip through staged text.
   */
  readonly resumeKey?: Readonly<Record<string, string | null>>;
}
