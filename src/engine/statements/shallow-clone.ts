/**
 * `CREATE [OR REPLACE] TABLE [IF NOT EXISTS] <new> SHALLOW CLONE <source> [VERSION AS OF n | TIMESTAMP AS OF
 * expr] [TBLPROPERTIES (...)]` (`src/delta/operations/clone.ts`). Either table may be a name or a
 * `` delta.`path` ``. DEEP CLONE (and plain CLONE, which Databricks makes deep) is refused.
 */
import { shallowClone } from '../../delta/operations/clone.js';
import { normaliseTableProperty } from '../../delta/operations/properties.js';
import { type QueryResult, route, type StatementHandler } from './context.js';
import { type Cursor, sqlError, type TableReference, type Temporal } from './cursor.js';

export interface ShallowClone {
  readonly target: TableReference;
  readonly source: TableReference;
  readonly temporal?: Temporal;
  readonly replace: boolean;
  readonly ifNotExists: boolean;
  readonly properties: ReadonlyArray<[string, string]>;
}

export const CLONE_COLUMNS = [
  'source_table_size',
  'source_num_of_files',
  'num_removed_files',
  'num_copied_files',
  'removed_files_size',
  'copied_files_size',
] as const;

export const shallowCloneStatement: StatementHandler<ShallowClone> = {
  kind: 'SHALLOW CLONE',
  parse(cursor: Cursor) {
    if (!cursor.acceptKeyword('CREATE')) return undefined;
    const replace = cursor.acceptKeyword('OR', 'REPLACE');
    if (!cursor.acceptKeyword('TABLE')) return undefined;
    const ifNotExists = cursor.acceptKeyword('IF', 'NOT', 'EXISTS');
    if (!cursor.atTableReference()) return undefined;
    const target = cursor.tableReference();
    if (cursor.acceptKeyword('DEEP', 'CLONE') || cursor.isKeyword('CLONE')) {
      throw sqlError(
        'DEEP CLONE is not supported (CREATE TABLE ... CLONE without SHALLOW is a deep clone)',
        'Use CREATE TABLE ... SHALLOW CLONE ..., which references the source files instead of copying them.',
      );
    }
    if (!cursor.acceptKeyword('SHALLOW', 'CLONE')) return undefined;
    if (replace && ifNotExists)
      throw sqlError('CREATE OR REPLACE TABLE cannot be combined with IF NOT EXISTS');
    const source = cursor.tableReference();
    const temporal = cursor.temporal();
    const properties = cursor.acceptKeyword('TBLPROPERTIES') ? cursor.propertyList(true) : [];
    if (cursor.isKeyword('LOCATION')) {
      throw sqlError('SHALLOW CLONE ... LOCATION is not supported', 'Name the clone delta.`/path` instead.');
    }
    cursor.expectEnd();
    return {
      target,
      source,
      replace,
      ifNotExists,
      properties,
      ...(temporal === undefined ? {} : { temporal }),
    };
  },
  async execute(context, statement): Promise<QueryResult> {
    const source = await context.resolveTable(statement.source);
    const snapshot = await context.loadSnapshot(source, statement.temporal);
    const target = await context.resolveTable(statement.target, { mustExist: false });
    const result = await shallowClone(snapshot, target.root, {
      replace: statement.replace,
      ifNotExists: statement.ifNotExists,
      properties: Object.fromEntries(statement.properties.map(([k, v]) => normaliseTableProperty(k, v))),
      sourceName: source.display,
    });
    context.tableChanged(target.root);
    const m = result.metrics;
    return {
      columns: CLONE_COLUMNS,
      rows: [
        {
          source_table_size: m.sourceTableSize,
          source_num_of_files: m.sourceNumOfFiles,
          num_removed_files: m.numRemovedFiles,
          num_copied_files: m.numCopiedFiles,
          removed_files_size: m.removedFilesSize,
          copied_files_size: m.copiedFilesSize,
        },
      ],
    };
  },
};

export const shallowCloneRoute = route(shallowCloneStatement);
