import { describe, expect, it } from 'vitest';
import type { ChangeBatch } from '../core/change.js';
import { TributaryError } from '../core/errors.js';
import type { SourceConnector, TableSelection } from '../core/ports.js';
import { asPosition } from '../core/position.js';
import type { TableSchema } from '../core/table.js';
import { LogShapes } from './log-shapes.js';

const id = { schema: 'shop', table: 't' };
const col = (name: string, type = 'integer') => ({ name, type, nullable: true, sourceType: type });
/** The shape the source has now: `gone` was dropped, `a` renamed to `b`. */
const now: TableSchema = { id, columns: [col('id'), col('b', 'string')], primaryKey: ['id'] };
/** The shape the log described before the DDL. */
const before: TableSchema = {
  id,
  columns: [col('id'), col('a', 'string'), col('gone'), col('secret', 'string')],
  primaryKey: ['id'],
};

function source(batches: ChangeBatch[]): SourceConnector {
  return {
    stream: async function* () {
      yield* batches;
    },
    describe: async () => 'a source',
  } as unknown as SourceConnector;
}

const batch = (events: ChangeBatch['events']): ChangeBatch => ({
  origin: 'stream',
  position: asPosition('0001'),
  commitTime: new Date(0),
  complete: true,
  events,
});

describe('LogShapes', () => {
  const selection: TableSelection = {
    tables: [id],
    schemas: [],
    columnFilters: new Map([['shop.t', { exclude: ['secret'] }]]),
  };

  it('adds the columns of the shape the log described so far, less excluded ones, to the re-read shape', async () => {
    const shapes = new LogShapes();
    const watched = shapes.watch(
      source([
        batch([{ kind: 'schema', table: id, schema: before }]),
        batch([{ kind: 'insert', table: id, after: { id: 1, a: 'x', gone: 2 } }]),
      ]),
    );
    // Other methods reach the source itself.
    expect(await watched.describe(new AbortController().signal)).toBe('a source');
    // Before any schema event, the re-read shape is all there is.
    expect(await shapes.refresh(id, selection, async () => now)).toBe(now);
    const seen: ChangeBatch[] = [];
    for await (const b of watched.stream(asPosition('0000'), {
      tables: [],
      signal: new AbortController().signal,
    })) {
      seen.push(b);
      if (b.events[0]?.kind === 'insert') {
        // While capture handles this batch, the log's shape is the one before the DDL.
        expect((await shapes.refresh(id, selection, async () => now))?.columns.map((c) => c.name)).toEqual([
          'id',
          'b',
          'a',
          'gone',
        ]);
      }
    }
    expect(seen).toHaveLength(2);
    // Once the log describes the new shape, nothing is added.
    const after = new LogShapes();
    for await (const _ of after
      .watch(source([batch([{ kind: 'schema', table: id, schema: now }])]))
      .stream(asPosition('0000'), { tables: [], signal: new AbortController().signal })) {
      // drain
    }
    expect(await after.refresh(id, selection, async () => now)).toEqual(now);
  });

  it('a table the source no longer has keeps the shape capture has (undefined); other errors go on', async () => {
    const shapes = new LogShapes();
    const gone = async () => {
      throw new TributaryError('SOURCE_TABLE_NOT_FOUND', 'gone');
    };
    expect(await shapes.refresh(id, selection, gone)).toBeUndefined();
    await expect(
      shapes.refresh(id, selection, async () => {
        throw new TributaryError('SOURCE_UNREACHABLE', 'down');
      }),
    ).rejects.toThrow('down');
  });
});
