/**
 * What DDL read from the binlog means for capture, said in the log: a captured table dropped or renamed away,
 * a column renamed, any other ALTER, a table created in a captured database; and which captured table a
 * TRUNCATE empties.
 */
import { type TableId, tableKey } from '../../core/table.js';
import {
  ALTER_TABLE,
  IDENT,
  nameList,
  QUALIFIED,
  qualifiedName,
  renamePairs,
  unquoteIdent,
  withoutComments,
} from './sql.js';

/** A line for the log about DDL read from the binlog. */
export interface DdlNotice {
  readonly level: 'info' | 'warn';
  readonly message: string;
}

/**
 * What a DDL statement of the binlog means for capture, for the tables of the captured databases: a captured
 * table dropped or renamed away (it is no longer captured, its bronze table stays), a column renamed (bronze
 * keeps the old column and adds the new one), any other ALTER of a captured table, a table created.
 */
export function ddlNotices(
  sql: string,
  schema: string,
  scope: { captured: ReadonlySet<string>; schemas: ReadonlySet<string>; where: string },
): DdlNotice[] {
  const text = withoutComments(sql);
  const { captured, schemas, where } = scope;
  const inScope = (id: TableId) => schemas.has(id.schema);
  const notices: DdlNotice[] = [];
  const dropped = (id: TableId) => {
    const key = tableKey(id);
    notices.push({
      level: captured.has(key) ? 'warn' : 'info',
      message: `${key} was dropped at the source (${where}): it is no longer captured, and its bronze table, if it has one, keeps the rows captured up to then.`,
    });
  };
  const renamed = (from: TableId, to: TableId) => {
    const key = tableKey(from);
    notices.push({
      level: captured.has(key) ? 'warn' : 'info',
      message: `${key} was renamed to ${tableKey(to)} at the source (${where}): ${key} is no longer captured, and its bronze table, if it has one, keeps the rows captured up to then; changes under the new name never reach it. A pipeline that captures the whole database ${to.schema} takes ${tableKey(to)} as a new table, with a snapshot, in its next round; one that names ${key} must name ${tableKey(to)} instead.`,
    });
  };

  let m = /^DROP\s+(?:TEMPORARY\s+)?TABLES?\s+(?:IF\s+EXISTS\s+)?([\s\S]*)$/i.exec(text);
  if (m) {
    if (/^DROP\s+TEMPORARY/i.test(text)) return notices;
    for (const id of nameList(m[1] ?? '', schema)) if (inScope(id)) dropped(id);
    return notices;
  }
  m = /^RENAME\s+TABLES?\s+([\s\S]*)$/i.exec(text);
  if (m) {
    for (const [from, to] of renamePairs(m[1] ?? '', schema)) if (inScope(from)) renamed(from, to);
    return notices;
  }
  m = /^CREATE\s+(?:OR\s+REPLACE\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?/i.exec(text);
  if (m) {
    const [id] = nameList(text.slice(m[0].length), schema);
    if (id && inScope(id)) {
      notices.push({
        level: 'info',
        message: `${tableKey(id)} was created at the source (${where}); a pipeline that captures the whole database ${id.schema} takes it, with a snapshot, in its next round.`,
      });
    }
    return notices;
  }
  m = ALTER_TABLE.exec(text);
  if (!m?.[1]) return notices;
  const id = qualifiedName(m[1], schema);
  const key = tableKey(id);
  if (!captured.has(key)) return notices;
  const rest = m[2] ?? '';
  const tableRename = new RegExp(
    `(?:^|,)\\s*RENAME\\s+(?:TO\\s+|AS\\s+)?(?!(?:COLUMN|INDEX|KEY)\\b)(${QUALIFIED})`,
    'i',
  ).exec(rest);
  if (tableRename?.[1]) renamed(id, qualifiedName(tableRename[1], id.schema));
  const columnRenames: [string, string][] = [];
  const change = new RegExp(
    `(?:^|,)\\s*CHANGE\\s+(?:COLUMN\\s+)?(?:IF\\s+EXISTS\\s+)?(${IDENT})\\s+(${IDENT})`,
    'gi',
  );
  for (const c of rest.matchAll(change))
    columnRenames.push([unquoteIdent(c[1] ?? ''), unquoteIdent(c[2] ?? '')]);
  const renameColumn = new RegExp(
    `(?:^|,)\\s*RENAME\\s+COLUMN\\s+(?:IF\\s+EXISTS\\s+)?(${IDENT})\\s+TO\\s+(${IDENT})`,
    'gi',
  );
  for (const c of rest.matchAll(renameColumn))
    columnRenames.push([unquoteIdent(c[1] ?? ''), unquoteIdent(c[2] ?? '')]);
  for (const [from, to] of columnRenames) {
    if (from === to) continue;
    notices.push({
      level: 'warn',
      message: `${key}: column ${from} was renamed to ${to} at the source (${where}). The bronze table gets a new column ${to} for the values from here on and keeps ${from}, which holds the values up to the rename (NULL in rows changed since): coalesce(${to}, ${from}) is the current value. A full refresh of the table fills ${to} in every row.`,
    });
  }
  if (!tableRename && columnRenames.every(([from, to]) => from === to)) {
    const statement = text.length > 200 ? `${text.slice(0, 200)}...` : text;
    notices.push({
      level: 'info',
      message: `${key} was altered at the source (${where}); its rows are read with the new shape from here on: ${statement}`,
    });
  }
  return notices;
}

/** The captured table a `TRUNCATE [TABLE] [db.]t` statement empties, if any; `schema` is the session's database. */
export function truncatedTable(
  sql: string,
  schema: string,
  captured: ReadonlySet<string>,
): TableId | undefined {
  const m = /^TRUNCATE\s+(?:TABLE\s+)?(`(?:[^`]|``)+`|[^\s.`;]+)(?:\.(`(?:[^`]|``)+`|[^\s.`;]+))?/i.exec(sql);
  if (!m?.[1]) return undefined;
  const id = m[2]
    ? { schema: unquoteIdent(m[1]), table: unquoteIdent(m[2]) }
    : { schema, table: unquoteIdent(m[1]) };
  return captured.has(tableKey(id)) ? id : undefined;
}
