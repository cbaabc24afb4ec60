/**
 * What a DDL statement of the binlog does to the column lists of the captured tables: the schema history
 * that decodes rows when the server does not log column names (binlog_row_metadata=MINIMAL, or a server
 * older than MySQL 8.0.1 / MariaDB 10.5).
 *
 * Without names in the log, a TABLE_MAP event says only how many columns the rows have and their type codes;
 * which name each value belongs to must come from the table's definition as it was when the rows were
 * written. information_schema has only today's definition, which is wrong for rows read during a catch-up
 * across later DDL (a column added in the middle shifts every later name by one). So the definition is
 * followed through the log instead, as Debezium's schema history does: a known starting shape (read inside
 * the snapshot's transaction, or recorded at an earlier point of the log) and every ALTER, RENAME and DROP
 * after it.
 *
 * The statement is split into its clauses here. Clauses that cannot change a column list (indexes, keys,
 * constraints, table options, ALTER COLUMN ... SET DEFAULT) are recognised and skipped, and so are renames
 * and drops, whose shape is plain. Column definitions (ADD, MODIFY, CHANGE) are parsed with node-sql-parser,
 * for their types. A clause neither side understands makes the table's shape unknown rather than guessed:
 * the reader then asks information_schema (exact while capture is live, not during a catch-up across DDL) and
 * says so.
 */
import { createRequire } from 'node:module';
import { type TableId, tableKey } from '../../core/table.js';
import { SPATIAL_TYPES } from './spatial.js';
import {
  ALTER_TABLE,
  IDENT,
  nameList,
  QUALIFIED,
  qualifiedName,
  renamePairs,
  splitTopLevel,
  unquoteIdent,
  withoutComments,
} from './sql.js';

/** A column as zongji needs it to decode values: the information_schema.COLUMNS fields it reads. */
export interface SourceColumn {
  readonly name: string;
  /** COLUMN_TYPE as information_schema writes it: `int(11) unsigned`, `enum('a','B')` (keywords in lower case, values as declared). */
  readonly type: string;
  /** CHARACTER_SET_NAME: the charset of a text column, null for every other column. */
  readonly charset: string | null;
}

/** A table's columns in definition order, and the charset a text column added without one gets. */
export interface SourceShape {
  readonly columns: readonly SourceColumn[];
  readonly charset: string | null;
}

/**
 * The effect of one statement, by `schema.table`: the table's new shape, or null when it no longer has one
 * that is known (dropped, renamed away, recreated, or altered by a clause that was not understood).
 */
export interface DdlEffect {
  readonly shapes: ReadonlyMap<string, SourceShape | null>;
  /** Tables whose shape became unknown because a clause was not understood, with that clause. */
  readonly unknown: ReadonlyArray<{ readonly table: string; readonly clause: string }>;
}

const NO_EFFECT: DdlEffect = { shapes: new Map(), unknown: [] };

/**
 * Applies a statement read from the binlog to the known shapes (`shapes`, by `schema.table`). `schema` is the
 * statement's session database. Only tables with a known shape are followed; anything else the statement
 * does is ignored.
 */
export function applyDdl(shapes: ReadonlyMap<string, SourceShape>, sql: string, schema: string): DdlEffect {
  const text = withoutComments(sql);
  const result = new Map<string, SourceShape | null>();
  const unknown: Array<{ table: string; clause: string }> = [];
  const current = (key: string): SourceShape | undefined => {
    const changed = result.get(key);
    return changed === null ? undefined : (changed ?? shapes.get(key));
  };

  let m = /^DROP\s+(TEMPORARY\s+)?TABLES?\s+(?:IF\s+EXISTS\s+)?([\s\S]*)$/i.exec(text);
  if (m) {
    if (m[1]) return NO_EFFECT;
    for (const id of nameList(m[2] ?? '', schema))
      if (shapes.has(tableKey(id))) result.set(tableKey(id), null);
    return { shapes: result, unknown };
  }
  m = /^RENAME\s+TABLES?\s+([\s\S]*)$/i.exec(text);
  if (m) {
    // Applied in order, so `RENAME TABLE t TO t_old, t_new TO t` (the online schema change tools' swap) ends
    // with t unknown (t_new's shape was never followed) rather than with t_old's.
    for (const [from, to] of renamePairs(m[1] ?? '', schema)) {
      const shape = current(tableKey(from));
      if (shape || shapes.has(tableKey(from))) result.set(tableKey(from), null);
      if (shape) result.set(tableKey(to), shape);
      else if (shapes.has(tableKey(to)) || result.has(tableKey(to))) result.set(tableKey(to), null);
    }
    return { shapes: result, unknown };
  }
  m = /^CREATE\s+(?:OR\s+REPLACE\s+)?(TEMPORARY\s+)?TABLE\s+(IF\s+NOT\s+EXISTS\s+)?([\s\S]*)$/i.exec(text);
  if (m) {
    // A table created again under a followed name (CREATE OR REPLACE; a plain CREATE of a table that exists
    // fails and is not logged): its new shape is read from information_schema when its rows first appear,
    // which is exact as it is new. IF NOT EXISTS leaves an existing table as it is.
    const [id] = nameList(m[3] ?? '', schema);
    if (!m[1] && !m[2] && id && shapes.has(tableKey(id))) result.set(tableKey(id), null);
    return { shapes: result, unknown };
  }
  m = ALTER_TABLE.exec(text);
  if (!m?.[1]) return NO_EFFECT;
  const id = qualifiedName(m[1], schema);
  const key = tableKey(id);
  const before = shapes.get(key);
  if (!before) return NO_EFFECT;
  let shape: SourceShape | undefined = before;
  let renamedTo: TableId | undefined;
  for (const clause of splitTopLevel(m[2] ?? '')) {
    const outcome = applyClause(shape, clause, id.schema);
    if (outcome === 'unknown') {
      unknown.push({ table: key, clause });
      shape = undefined;
      break;
    }
    if ('renameTo' in outcome) renamedTo = outcome.renameTo;
    else shape = outcome;
  }
  if (renamedTo && tableKey(renamedTo) !== key) {
    result.set(key, null);
    result.set(tableKey(renamedTo), shape ?? null);
  } else if (shape !== before) result.set(key, shape ?? null);
  return { shapes: result, unknown };
}

/** Clauses that never change which columns a table has, by their leading words. */
const SHAPE_NEUTRAL = new RegExp(
  [
    '^ADD\\s+(?:CONSTRAINT|PRIMARY|UNIQUE|INDEX|KEY|FULLTEXT|SPATIAL|FOREIGN|CHECK|PERIOD|SYSTEM\\s+VERSIONING|PARTITION)\\b',
    '^DROP\\s+(?:PRIMARY\\s+KEY|INDEX|KEY|FOREIGN\\s+KEY|CONSTRAINT|CHECK|PARTITION|SYSTEM\\s+VERSIONING)\\b',
    `^ALTER\\s+(?:COLUMN\\s+)?${IDENT}\\s+(?:SET|DROP)\\s+(?:DEFAULT|VISIBLE|INVISIBLE)\\b`,
    '^ALTER\\s+(?:INDEX|KEY|CONSTRAINT|CHECK)\\b',
    '^RENAME\\s+(?:INDEX|KEY)\\b',
    '^(?:ALGORITHM|LOCK|FORCE|ENGINE|COMMENT|AUTO_INCREMENT|ROW_FORMAT|KEY_BLOCK_SIZE|STATS_\\w+|ORDER\\s+BY|ENABLE|DISABLE|DISCARD|IMPORT|PARTITION|COALESCE|REORGANIZE|EXCHANGE|ANALYZE|CHECK|OPTIMIZE|REBUILD|REPAIR|REMOVE|TRUNCATE|WITH|WITHOUT|CHECKSUM|PACK_KEYS|MAX_ROWS|MIN_ROWS|AVG_ROW_LENGTH|DELAY_KEY_WRITE|INSERT_METHOD|PAGE_CHECKSUM|PAGE_COMPRESSED|PAGE_COMPRESSION_LEVEL|TRANSACTIONAL|ENCRYPTED|ENCRYPTION|ENCRYPTION_KEY_ID|COMPRESSION|DATA|INDEX|TABLESPACE|UNION|SECONDARY_ENGINE|SEQUENCE|IETF_QUOTES|WAIT|NOWAIT|ATTRIBUTE|ENGINE_ATTRIBUTE|AUTOEXTEND_SIZE|START\\s+TRANSACTION)\\b',
  ].join('|'),
  'i',
);

type ClauseOutcome = SourceShape | { readonly renameTo: TableId } | 'unknown';

function applyClause(shape: SourceShape | undefined, clause: string, schema: string): ClauseOutcome {
  if (SHAPE_NEUTRAL.test(clause)) return shape ?? 'unknown';
  let m = new RegExp(`^RENAME\\s+(?:TO\\s+|AS\\s+)?(?!(?:COLUMN|INDEX|KEY)\\b)(${QUALIFIED})\\s*$`, 'i').exec(
    clause,
  );
  if (m?.[1]) return { renameTo: qualifiedName(m[1], schema) };
  if (!shape) return 'unknown';
  const columns = [...shape.columns];
  const indexOf = (name: string) => columns.findIndex((c) => c.name.toLowerCase() === name.toLowerCase());

  m = new RegExp(`^DROP\\s+(?:COLUMN\\s+)?(IF\\s+EXISTS\\s+)?(${IDENT})\\s*(?:RESTRICT|CASCADE)?$`, 'i').exec(
    clause,
  );
  if (m?.[2]) {
    const at = indexOf(unquoteIdent(m[2]));
    if (at < 0) return m[1] ? shape : 'unknown';
    columns.splice(at, 1);
    return { ...shape, columns };
  }
  m = new RegExp(`^RENAME\\s+COLUMN\\s+(IF\\s+EXISTS\\s+)?(${IDENT})\\s+TO\\s+(${IDENT})$`, 'i').exec(clause);
  if (m?.[2] && m[3]) {
    const at = indexOf(unquoteIdent(m[2]));
    const old = columns[at];
    if (!old) return m[1] ? shape : 'unknown';
    columns[at] = { ...old, name: unquoteIdent(m[3]) };
    return { ...shape, columns };
  }
  m = /^CONVERT\s+TO\s+(?:CHARACTER\s+SET|CHARSET)\s+(\w+)/i.exec(clause);
  if (m?.[1]) {
    const charset = m[1].toLowerCase() === 'default' ? shape.charset : m[1].toLowerCase();
    // Every text column takes the charset (binary ones have none and stay binary).
    return { charset, columns: columns.map((c) => (c.charset === null ? c : { ...c, charset })) };
  }
  m = /^(?:DEFAULT\s+)?(?:CHARACTER\s+SET|CHARSET)\s*=?\s*(\w+)/i.exec(clause);
  if (m?.[1])
    return { ...shape, charset: m[1].toLowerCase() === 'default' ? shape.charset : m[1].toLowerCase() };
  m = /^(?:DEFAULT\s+)?COLLATE\s*=?\s*(\w+)/i.exec(clause);
  if (m?.[1]) return { ...shape, charset: textCharset(charsetOfCollation(m[1])) };

  m = /^ADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?\(([\s\S]*)\)$/i.exec(clause);
  if (m) {
    // ADD (a INT, b INT): each appended in turn.
    let next: SourceShape = shape;
    for (const part of splitTopLevel(m[1] ?? '')) {
      const added = applyColumnClause(next, `ADD COLUMN ${part}`);
      if (added === 'unknown') return 'unknown';
      next = added;
    }
    return next;
  }
  if (/^(?:ADD|MODIFY|CHANGE)\b/i.test(clause)) return applyColumnClause(shape, clause);
  return 'unknown';
}

/** ADD, MODIFY or CHANGE of one column, parsed for its definition and placement. */
function applyColumnClause(shape: SourceShape, clause: string): SourceShape | 'unknown' {
  // MariaDB's `IF EXISTS` / `IF NOT EXISTS` after the keyword: the parser knows only some of them.
  const ifExists = /^(?:MODIFY|CHANGE)\s+(?:COLUMN\s+)?IF\s+EXISTS\s+/i.exec(clause);
  const ifNotExists = /^ADD\s+(?:COLUMN\s+)?IF\s+NOT\s+EXISTS\s+/i.exec(clause);
  const plain = clause.replace(/^(\w+)\s+(?:COLUMN\s+)?IF\s+(?:NOT\s+)?EXISTS\s+/i, '$1 COLUMN ');
  const spec = parseColumnSpec(plain);
  if (!spec) return 'unknown';
  const columns = [...shape.columns];
  const indexOf = (name: string) => columns.findIndex((c) => c.name.toLowerCase() === name.toLowerCase());
  const column: SourceColumn = {
    name: spec.name,
    type: spec.type,
    charset: spec.textual ? (spec.charset === undefined ? shape.charset : textCharset(spec.charset)) : null,
  };
  let at: number;
  if (spec.action === 'add') {
    if (indexOf(spec.name) >= 0) return ifNotExists ? shape : 'unknown';
    at = columns.length;
  } else {
    at = indexOf(spec.oldName ?? spec.name);
    if (at < 0) return ifExists ? shape : 'unknown';
    columns.splice(at, 1);
  }
  if (spec.place === 'first') at = 0;
  else if (spec.place !== undefined) {
    const after = indexOf(spec.place.after);
    if (after < 0) return 'unknown';
    at = after + 1;
  }
  columns.splice(at, 0, column);
  return { ...shape, columns };
}

interface ColumnSpec {
  readonly action: 'add' | 'modify' | 'change';
  readonly name: string;
  readonly oldName?: string;
  readonly type: string;
  readonly textual: boolean;
  readonly charset?: string;
  readonly place?: 'first' | { readonly after: string };
}

interface ParserModule {
  Parser: new () => { astify(sql: string): unknown };
}
let parser: { astify(sql: string): unknown } | undefined;

function parse(sql: string): unknown {
  // Loaded on first use: most streams never see DDL, and the grammar is 260 kB.
  parser ??= new (
    createRequire(import.meta.url)('node-sql-parser/build/mariadb.js') as ParserModule
  ).Parser();
  return parser.astify(sql);
}

type Node = Record<string, unknown>;
const isNode = (v: unknown): v is Node => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The column name of a node-sql-parser `column_ref` (a string, or `{ expr: { value } }` in some forms). */
function columnName(ref: unknown): string | undefined {
  if (!isNode(ref)) return undefined;
  const c = ref['column'];
  if (typeof c === 'string') return c;
  if (isNode(c) && isNode(c['expr']) && typeof c['expr']['value'] === 'string') return c['expr']['value'];
  return undefined;
}

function parseColumnSpec(clause: string): ColumnSpec | undefined {
  let ast: unknown;
  try {
    ast = parse(`ALTER TABLE t ${clause}`);
  } catch {
    return undefined;
  }
  const statement = Array.isArray(ast) ? ast[0] : ast;
  if (!isNode(statement) || !Array.isArray(statement['expr']) || statement['expr'].length !== 1)
    return undefined;
  const expr: unknown = statement['expr'][0];
  if (!isNode(expr) || expr['resource'] !== 'column') return undefined;
  const action = expr['action'];
  if (action !== 'add' && action !== 'modify' && action !== 'change') return undefined;
  const name = columnName(expr['column']);
  const definition = expr['definition'];
  if (!name || !isNode(definition)) return undefined;
  const type = columnTypeText(definition);
  if (!type) return undefined;
  const oldName = action === 'change' ? columnName(expr['old_column']) : undefined;
  if (action === 'change' && !oldName) return undefined;
  const suffix = expr['suffix'];
  let place: ColumnSpec['place'];
  if (isNode(suffix) && typeof suffix['keyword'] === 'string') {
    const keyword = suffix['keyword'].toUpperCase();
    if (keyword === 'FIRST') place = 'first';
    else if (keyword === 'AFTER') {
      const after = columnName(suffix['expr']);
      if (!after) return undefined;
      place = { after };
    } else return undefined;
  }
  const charset = charsetOf(expr) ?? charsetOf(definition);
  return {
    action,
    name,
    ...(oldName ? { oldName } : {}),
    type: type.text,
    textual: type.textual,
    ...(charset ? { charset } : {}),
    ...(place ? { place } : {}),
  };
}

/** An explicit CHARACTER SET (or a COLLATE, whose name starts with its charset's) on a column definition. */
function charsetOf(node: Node): string | undefined {
  const set = node['character_set'];
  if (isNode(set) && isNode(set['value']) && typeof set['value']['value'] === 'string')
    return set['value']['value'].toLowerCase();
  const collate = node['collate'];
  if (isNode(collate) && isNode(collate['collate']) && typeof collate['collate']['name'] === 'string')
    return charsetOfCollation(collate['collate']['name']);
  return undefined;
}

/** `utf8mb4_bin` → `utf8mb4`; `binary` stays `binary` (no charset: see {@link textCharset}). */
export function charsetOfCollation(collation: string): string {
  const c = collation.toLowerCase();
  return c.slice(0, c.indexOf('_') > 0 ? c.indexOf('_') : c.length);
}

/** The charset a text column stores, as CHARACTER_SET_NAME says it: none for the binary charset. */
export function textCharset(name: string): string | null {
  return name === 'binary' ? null : name;
}

const TEXTUAL = new Set(['char', 'varchar', 'tinytext', 'text', 'mediumtext', 'longtext', 'enum', 'set']);
const BINARY_FLAGGED = /^(?:char|varchar|tinytext|text|mediumtext|longtext)$/;

/**
 * COLUMN_TYPE text for a parsed data type, as information_schema writes it (what zongji and the type
 * mapping read): lower case, `decimal(p,s)`, `enum('a','b')`, `unsigned` and `zerofill` after it.
 */
function columnTypeText(definition: Node): { text: string; textual: boolean } | undefined {
  const raw = definition['dataType'];
  if (typeof raw !== 'string') return undefined;
  let base = raw.toLowerCase();
  const length = typeof definition['length'] === 'number' ? definition['length'] : undefined;
  const scale = typeof definition['scale'] === 'number' ? definition['scale'] : undefined;
  const suffix = Array.isArray(definition['suffix'])
    ? definition['suffix'].filter((s): s is string => typeof s === 'string').map((s) => s.toLowerCase())
    : [];
  let args = '';
  switch (base) {
    case 'integer':
      base = 'int';
      break;
    case 'boolean':
    case 'bool':
      return { text: 'tinyint(1)', textual: false };
    case 'numeric':
    case 'dec':
    case 'fixed':
      base = 'decimal';
      break;
    default:
      break;
  }
  if (base === 'enum' || base === 'set') {
    const list = definition['expr'];
    if (!isNode(list) || !Array.isArray(list['value'])) return undefined;
    const values: string[] = [];
    for (const v of list['value']) {
      if (!isNode(v) || typeof v['value'] !== 'string') return undefined;
      // The parser keeps the literal's text as written (a doubled quote stays doubled), as information_schema does.
      values.push(`'${v['value']}'`);
    }
    args = `(${values.join(',')})`;
  } else if (base === 'decimal') args = `(${length ?? 10},${scale ?? 0})`;
  else if (length !== undefined) args = scale !== undefined ? `(${length},${scale})` : `(${length})`;
  if (base === 'float' && length !== undefined && scale === undefined) {
    // FLOAT(p): a double from 25 digits of precision on, with no display width.
    return { text: length > 24 ? 'double' : 'float', textual: false };
  }
  const flags = suffix.filter((s) => s === 'unsigned' || s === 'zerofill');
  if (flags.includes('zerofill') && !flags.includes('unsigned')) flags.unshift('unsigned');
  const text = [`${base}${args}`, ...flags].join(' ');
  // `VARCHAR(10) BINARY` is a binary collation of the charset, still text.
  return { text, textual: TEXTUAL.has(base) || BINARY_FLAGGED.test(base) };
}

/** The binlog type codes (TABLE_MAP, after ENUM/SET are told apart) a column of each declared type is logged as. */
const LOGGED_AS: Readonly<Record<string, readonly number[]>> = (() => {
  const blob = [252, 249, 250, 251, 140];
  const table: Record<string, number[]> = {
    tinyint: [1],
    bool: [1],
    boolean: [1],
    smallint: [2],
    mediumint: [9],
    int: [3],
    integer: [3],
    bigint: [8],
    float: [4],
    double: [5],
    real: [5],
    decimal: [246, 0],
    numeric: [246, 0],
    date: [10, 14],
    time: [11, 19],
    datetime: [12, 18],
    timestamp: [7, 17],
    year: [13],
    bit: [16],
    char: [254],
    binary: [254],
    uuid: [254],
    inet4: [254],
    inet6: [254],
    varchar: [15, 253, 141],
    varbinary: [15, 253, 141],
    enum: [247, 254],
    set: [248, 254],
    // MariaDB's JSON is LONGTEXT.
    json: [245, ...blob],
  };
  for (const t of [
    'tinytext',
    'text',
    'mediumtext',
    'longtext',
    'tinyblob',
    'blob',
    'mediumblob',
    'longblob',
  ])
    table[t] = blob;
  for (const t of SPATIAL_TYPES) table[t] = [255];
  return table;
})();

/**
 * Whether rows a TABLE_MAP describes (its column count and type codes) can be decoded with `shape`: a shape
 * that was followed wrongly (DDL the history missed) shows up here instead of as values under wrong names.
 * A declared type not listed is not checked.
 */
export function shapeFitsTableMap(shape: SourceShape, typeCodes: readonly number[]): boolean {
  if (shape.columns.length !== typeCodes.length) return false;
  return shape.columns.every((c, i) => {
    const codes = LOGGED_AS[/^[a-z0-9]+/.exec(c.type)?.[0] ?? ''];
    return codes === undefined || codes.includes(typeCodes[i] as number);
  });
}
