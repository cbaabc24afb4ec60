/**
 * The shapes of the captured tables as the source's log describes them, for the rows capture stages.
 *
 * A round reads the table shapes when it starts, after the head it catches up to, so they are the newest:
 * rows written before a DDL statement may carry a column the shape no longer has (dropped, or renamed since).
 * Capture re-reads a table's shape when a row has an unknown column; that answer is the source's current
 * shape and would still lack the column, so its values would be left out. A source whose log describes the
 * tables (MySQL with binlog_row_metadata=FULL) sends a `schema` event with the shape at each change; this
 * module records them on the way to capture, and adds to the re-read shape the columns the log's shape at
 * that point still has, so those values are staged (and bronze, which never drops a column, keeps them).
 */
import { isTributaryError } from '../core/errors.js';
import type { SourceConnector, TableSelection } from '../core/ports.js';
import { type TableId, type TableSchema, tableKey } from '../core/table.js';

export class LogShapes {
  readonly #shapes = new Map<string, TableSchema>();

  /** The source, with the `schema` events of its streams recorded as their batches pass to the caller. */
  watch(source: SourceConnector): SourceConnector {
    const shapes = this.#shapes;
    async function* stream(...args: Parameters<SourceConnector['stream']>) {
      for await (const batch of source.stream(...args)) {
        for (const e of batch.events) if (e.kind === 'schema') shapes.set(tableKey(e.table), e.schema);
        yield batch;
      }
    }
    return new Proxy(source, {
      get(target, property) {
        if (property === 'stream') return stream;
        const value: unknown = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  /**
   * The table's shape for the rows being staged now: `read()` (the source's current shape, with the
   * selection's column filters applied), plus the columns of the shape the log last described that it lacks
   * and the filters let through. A table the source no longer has gives undefined (capture keeps the shape
   * it has).
   */
  async refresh(
    id: TableId,
    selection: TableSelection,
    read: () => Promise<TableSchema | undefined>,
  ): Promise<TableSchema | undefined> {
    let fresh: TableSchema | undefined;
    try {
      fresh = await read();
    } catch (error) {
      if (isTributaryError(error) && error.code === 'SOURCE_TABLE_NOT_FOUND') return undefined;
      throw error;
    }
    const logged = this.#shapes.get(tableKey(id));
    if (!fresh || !logged) return fresh;
    const filter = selection.columnFilters?.get(tableKey(id));
    const wanted = (name: string) =>
      (!filter?.include || filter.include.includes(name)) && !filter?.exclude?.includes(name);
    const extra = logged.columns.filter(
      (c) => wanted(c.name) && !fresh.columns.some((f) => f.name === c.name),
    );
    return extra.length === 0 ? fresh : { ...fresh, columns: [...fresh.columns, ...extra] };
  }
}
