/**
 * PostgreSQL column types → Delta Lake types, and PostgreSQL's text output → staged values. Documented in
 * docs/types/postgres.md; keep both in step.
 *
 * Every value arrives as the server's text output: the snapshot reads with the driver's type parsers off, and
 * pgoutput sends text. That text is already exact, so a converter only reshapes it where the staged form must
 * differ (booleans, bytea, BC dates, time zones) and never goes through a JS number or Date. Sessions pin the
 * settings that shape the text (connect.ts), but the converters also accept any zone offset, the `postgres`
 * interval style and escaped bytea, and normalise them, so a value stages the same whichever session printed
 * it. Where PostgreSQL can hold a value that Delta cannot (numeric NaN in a decimal column, an infinite
 * timestamp), the value is staged as NULL and reported once per column, as MySQL's zero dates are.
 *
 * Types without an exact Delta primitive become strings. Arrays and composite values become JSON text: the
 * bronze writer stages primitive types only, and JSON is what a lakehouse can take apart (`from_json`, `:`
 * paths) where PostgreSQL's own array literal is not.
 */
import { TributaryError } from '../../core/errors.js';
import type { SqlValue } from '../../core/table.js';

/** The query side of a pg connection: `pg.Client`, `pg.PoolClient` and `pg.Pool` all fit. */
export interface PgQueryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

/** How one column's values are staged. */
export interface PgColumnType {
  /** Delta Lake primitive type, as in {@link ColumnSchema.type}. */
  readonly deltaType: string;
  /**
   * PostgreSQL's text output of one non-NULL value → the staged value. Throws SOURCE_MISCONFIGURED when the
   * text is not in the form the session settings of connect.ts produce (a DateStyle other than ISO, say).
   */
  readonly convert: (text: string) => SqlValue;
}

/** One pg_type row, as {@link PgTypeCatalog.ensure} loads it (exported so tests can register observed rows). */
export interface PgTypeRow {
  readonly oid: number;
  readonly name: string;
  readonly namespace: string;
  /** pg_type.typtype: b(ase), c(omposite), d(omain), e(num), p(seudo), r(ange), m(ultirange). */
  readonly typtype: string;
  readonly category: string;
  readonly elem: number;
  readonly len: number;
  readonly baseType: number;
  readonly baseTypmod: number;
  readonly relid: number;
  readonly delimiter: string;
  /** The subtype of a range; the range type of a multirange. 0 otherwise. */
  readonly rangeOf: number;
}

/** One attribute of a composite type (pg_attribute of its typrelid). */
export interface PgFieldRow {
  readonly relid: number;
  readonly name: string;
  readonly typeOid: number;
  readonly typmod: number;
}

type TypeInfo =
  | { readonly kind: 'builtin'; readonly name: string }
  | { readonly kind: 'array'; readonly element: number; readonly name: string }
  | { readonly kind: 'domain'; readonly base: number; readonly typmod: number; readonly name: string }
  | { readonly kind: 'enum'; readonly name: string }
  | { readonly kind: 'composite'; readonly relid: number; readonly name: string }
  | { readonly kind: 'range'; readonly subtype: number; readonly name: string }
  | { readonly kind: 'multirange'; readonly range: number; readonly name: string }
  | { readonly kind: 'other'; readonly name: string };

/** Fixed OIDs of the pg_catalog types mapped by name: [oid, name, array type oid]. They never change. */
const BUILTIN_TYPES: readonly (readonly [number, string, number])[] = [
  [16, 'bool', 1000],
  [17, 'bytea', 1001],
  [18, 'char', 1002],
  [19, 'name', 1003],
  [20, 'int8', 1016],
  [21, 'int2', 1005],
  [22, 'int2vector', 1006],
  [23, 'int4', 1007],
  [24, 'regproc', 1008],
  [25, 'text', 1009],
  [26, 'oid', 1028],
  [27, 'tid', 1010],
  [28, 'xid', 1011],
  [29, 'cid', 1012],
  [30, 'oidvector', 1013],
  [114, 'json', 199],
  [142, 'xml', 143],
  [600, 'point', 1017],
  [601, 'lseg', 1018],
  [602, 'path', 1019],
  [603, 'box', 1020],
  [604, 'polygon', 1027],
  [628, 'line', 629],
  [650, 'cidr', 651],
  [700, 'float4', 1021],
  [701, 'float8', 1022],
  [718, 'circle', 719],
  [774, 'macaddr8', 775],
  [790, 'money', 791],
  [829, 'macaddr', 1040],
  [869, 'inet', 1041],
  [1042, 'bpchar', 1014],
  [1043, 'varchar', 1015],
  [1082, 'date', 1182],
  [1083, 'time', 1183],
  [1114, 'timestamp', 1115],
  [1184, 'timestamptz', 1185],
  [1186, 'interval', 1187],
  [1266, 'timetz', 1270],
  [1560, 'bit', 1561],
  [1562, 'varbit', 1563],
  [1700, 'numeric', 1231],
  [1790, 'refcursor', 2201],
  [2202, 'regprocedure', 2207],
  [2203, 'regoper', 2208],
  [2204, 'regoperator', 2209],
  [2205, 'regclass', 2210],
  [2206, 'regtype', 2211],
  [2950, 'uuid', 2951],
  [2970, 'txid_snapshot', 2949],
  [3220, 'pg_lsn', 3221],
  [3614, 'tsvector', 3643],
  [3615, 'tsquery', 3645],
  [3734, 'regconfig', 3735],
  [3769, 'regdictionary', 3770],
  [3802, 'jsonb', 3807],
  [4072, 'jsonpath', 4073],
  [4089, 'regnamespace', 4090],
  [4096, 'regrole', 4097],
  [4191, 'regcollation', 4192],
  [5038, 'pg_snapshot', 5039],
  [5069, 'xid8', 271],
];

/** Built-in ranges and multiranges: [range oid, name, subtype oid, array oid, multirange oid, its array]. */
const BUILTIN_RANGES: readonly (readonly [number, string, number, number, number, number])[] = [
  [3904, 'int4range', 23, 3905, 4451, 6150],
  [3906, 'numrange', 1700, 3907, 4532, 6151],
  [3908, 'tsrange', 1114, 3909, 4533, 6152],
  [3910, 'tstzrange', 1184, 3911, 4534, 6153],
  [3912, 'daterange', 1082, 3913, 4535, 6155],
  [3926, 'int8range', 20, 3927, 4536, 6157],
];

/** Arrays of these element types are delimited by `;`, not `,` (pg_type.typdelim). */
const SEMICOLON_DELIMITED = new Set(['box']);

/**
 * The type knowledge needed to map a column by its type OID and typmod. Built-in types are known without a
 * query; user types (enums, domains, composites, ranges, extension types such as citext) are loaded by
 * {@link ensure}, which follows element, base, field and subtype references until everything is known.
 */
export class PgTypeCatalog {
  readonly #types = new Map<number, TypeInfo>();
  readonly #delimiters = new Map<number, string>();
  readonly #fields = new Map<number, readonly PgFieldRow[]>();
  readonly #onLoss: (message: string) => void;
  #serverVersion: number | undefined;

  /** `onLoss` hears about values Delta cannot hold, once per column and kind (see {@link mapColumn}). */
  constructor(options: { readonly onLoss?: (message: string) => void } = {}) {
    this.#onLoss = options.onLoss ?? (() => {});
    for (const [oid, name, array] of BUILTIN_TYPES) {
      this.#types.set(oid, { kind: 'builtin', name });
      this.#types.set(array, { kind: 'array', element: oid, name: `_${name}` });
      if (SEMICOLON_DELIMITED.has(name)) this.#delimiters.set(oid, ';');
    }
    for (const [oid, name, subtype, array, multi, multiArray] of BUILTIN_RANGES) {
      this.#types.set(oid, { kind: 'range', subtype, name });
      this.#types.set(array, { kind: 'array', element: oid, name: `_${name}` });
      const multiName = name.replace('range', 'multirange');
      this.#types.set(multi, { kind: 'multirange', range: oid, name: multiName });
      this.#types.set(multiArray, { kind: 'array', element: multi, name: `_${multiName}` });
    }
  }

  has(oid: number): boolean {
    return this.#types.has(oid);
  }

  /** Loads every type in `oids` not known yet, and everything they refer to. */
  async ensure(db: PgQueryable, oids: Iterable<number>): Promise<void> {
    let pending = [...new Set(oids)].filter((oid) => !this.#types.has(oid));
    for (let round = 0; pending.length > 0; round++) {
      if (round > 32) {
        throw new TributaryError('INTERNAL', `Type references nest deeper than 32 levels: ${pending}`);
      }
      this.#serverVersion ??= Number(
        rowsOf(await db.query("SELECT current_setting('server_version_num') AS v"))[0]?.['v'],
      );
      const types = rowsOf(await db.query(typeQuery(this.#serverVersion), [pending.map(String)])).map(
        typeRowOf,
      );
      const composites = types.filter((t) => t.typtype === 'c').map((t) => t.relid);
      const fields =
        composites.length === 0
          ? []
          : rowsOf(await db.query(FIELD_QUERY, [composites.map(String)])).map(fieldRowOf);
      this.register(types, fields);
      const missing = pending.filter((oid) => !this.#types.has(oid));
      if (missing.length > 0) {
        throw new TributaryError(
          'SOURCE_UNSUPPORTED_TYPE',
          `The source has no type with OID ${missing.join(', ')} (dropped while being read?).`,
          { retry: 'transient', hint: 'Retry; if it persists, report it with the table definition.' },
        );
      }
      pending = [...new Set(types.flatMap((t) => this.#references(t)).concat(fields.map((f) => f.typeOid)))]
        .filter((oid) => oid !== 0 && !this.#types.has(oid))
        .sort((a, b) => a - b);
    }
  }

  /** Adds loaded rows; {@link ensure} calls it, and tests call it with rows observed on a real server. */
  register(types: readonly PgTypeRow[], fields: readonly PgFieldRow[] = []): void {
    const byRelid = new Map<number, PgFieldRow[]>();
    for (const f of fields) byRelid.set(f.relid, [...(byRelid.get(f.relid) ?? []), f]);
    for (const [relid, list] of byRelid) this.#fields.set(relid, list);
    for (const t of types) {
      if (t.delimiter !== ',') this.#delimiters.set(t.oid, t.delimiter);
      this.#types.set(t.oid, infoOf(t));
    }
  }

  #references(t: PgTypeRow): number[] {
    const info = infoOf(t);
    switch (info.kind) {
      case 'array':
        return [info.element];
      case 'domain':
        return [info.base];
      case 'range':
        return [info.subtype];
      case 'multirange':
        return [info.range];
      default:
        return [];
    }
  }

  /**
   * How values of a column of type `typeOid` (with `typmod`, -1 when none) are staged. `where` names the
   * column in messages, e.g. `public.orders.total`. Values Delta cannot hold become NULL, and `onLoss` is
   * told the first time each kind of loss happens in this column.
   */
  mapColumn(typeOid: number, typmod: number, where: string): PgColumnType {
    const handler = this.#handler(typeOid, typmod, where, 0);
    const reported = new Set<string>();
    const onLoss = this.#onLoss;
    const value = handler.value;
    return {
      deltaType: handler.delta,
      convert(text: string): SqlValue {
        const v = value(text);
        if (!(v instanceof Lost)) return v;
        if (!reported.has(v.kind)) {
          reported.add(v.kind);
          onLoss(
            `${where}: ${v.kind} cannot be stored in a Delta ${handler.delta} column, so it is staged as NULL (value: ${text.slice(0, 64)}); later ones in this column are too, without another warning.`,
          );
        }
        return null;
      },
    };
  }

  #info(oid: number, where: string): TypeInfo {
    const info = this.#types.get(oid);
    if (info) return info;
    throw new TributaryError(
      'INTERNAL',
      `${where}: type OID ${oid} was not loaded; call PgTypeCatalog.ensure() with the column types first.`,
    );
  }

  #handler(oid: number, typmod: number, where: string, depth: number): Handler {
    if (depth > 32)
      throw new TributaryError('INTERNAL', `${where}: type ${oid} nests deeper than 32 levels.`);
    const info = this.#info(oid, where);
    switch (info.kind) {
      case 'builtin':
        return builtinHandler(info.name, typmod);
      case 'domain':
        // A domain column's own typmod is -1; the constraint (numeric(10,2), varchar(20)) is the domain's.
        return this.#handler(info.base, typmod === -1 ? info.typmod : typmod, where, depth + 1);
      case 'enum':
      case 'other':
        return TEXT;
      case 'array': {
        const element = this.#handler(info.element, typmod, where, depth + 1);
        const delimiter = this.#delimiters.get(info.element) ?? ',';
        const json = (text: string) => arrayJson(parseArray(text, delimiter), element);
        return { delta: 'string', value: json, json, text: json };
      }
      case 'composite': {
        const fields = (this.#fields.get(info.relid) ?? []).map((f) => ({
          key: JSON.stringify(f.name),
          handler: this.#handler(f.typeOid, f.typmod, `${where}.${f.name}`, depth + 1),
        }));
        const json = (text: string) => {
          const values = parseComposite(text);
          if (values.length !== fields.length) {
            throw misformatted(`${info.name} value with ${fields.length} fields`, text);
          }
          return `{${fields.map((f, i) => `${f.key}:${jsonOf(values[i] ?? null, f.handler)}`).join(',')}}`;
        };
        return { delta: 'string', value: json, json, text: json };
      }
      case 'range': {
        const bound = this.#handler(info.subtype, -1, where, depth + 1).text;
        const text = (t: string) => canonicalRange(t, bound);
        return { delta: 'string', value: text, json: (t) => JSON.stringify(text(t)), text };
      }
      case 'multirange': {
        const range = this.#info(info.range, where);
        if (range.kind !== 'range') {
          throw new TributaryError('INTERNAL', `${where}: multirange ${info.name} is not over a range type.`);
        }
        const bound = this.#handler(range.subtype, -1, where, depth + 1).text;
        const text = (t: string) => canonicalMultirange(t, bound);
        return { delta: 'string', value: text, json: (t) => JSON.stringify(text(t)), text };
      }
    }
  }
}

function infoOf(t: PgTypeRow): TypeInfo {
  if (t.namespace === 'pg_catalog') {
    if (BUILTIN_TYPES.some(([, name]) => name === t.name)) return { kind: 'builtin', name: t.name };
  }
  switch (t.typtype) {
    case 'd':
      return { kind: 'domain', base: t.baseType, typmod: t.baseTypmod, name: t.name };
    case 'e':
      return { kind: 'enum', name: t.name };
    case 'c':
      return { kind: 'composite', relid: t.relid, name: t.name };
    case 'r':
      return { kind: 'range', subtype: t.rangeOf, name: t.name };
    case 'm':
      return { kind: 'multirange', range: t.rangeOf, name: t.name };
    default:
      // A true array: variable length with an element type. Fixed-length types with typelem (point, name)
      // are subscriptable but print as themselves.
      if (t.category === 'A' && t.elem !== 0 && t.len === -1) {
        return { kind: 'array', element: t.elem, name: t.name };
      }
      return { kind: 'other', name: t.name };
  }
}

function typeQuery(serverVersion: number): string {
  // pg_range.rngmultitypid exists from PostgreSQL 14, with multiranges.
  const multirange =
    serverVersion >= 140000 ? '(SELECT m.rngtypid FROM pg_range m WHERE m.rngmultitypid = t.oid)' : 'NULL';
  return `SELECT t.oid::int8 AS oid, t.typname AS name, n.nspname AS namespace, t.typtype, t.typcategory AS category,
                 t.typelem::int8 AS elem, t.typlen::int4 AS len, t.typbasetype::int8 AS base_type,
                 t.typtypmod AS base_typmod, t.typrelid::int8 AS relid, t.typdelim AS delimiter,
                 COALESCE((SELECT r.rngsubtype FROM pg_range r WHERE r.rngtypid = t.oid), ${multirange}, 0)::int8
                   AS range_of
            FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
           WHERE t.oid = ANY($1::oid[])`;
}

const FIELD_QUERY = `SELECT a.attrelid::int8 AS relid, a.attname AS name, a.atttypid::int8 AS type_oid, a.atttypmod AS typmod
                       FROM pg_attribute a
                      WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped
                      ORDER BY a.attrelid, a.attnum`;

/** Rows of a query result as records (whether or not the driver's type parsers are on). */
export function rowsOf(result: { rows: unknown[] }): Record<string, unknown>[] {
  return result.rows as Record<string, unknown>[];
}

function typeRowOf(r: Record<string, unknown>): PgTypeRow {
  return {
    oid: Number(r['oid']),
    name: String(r['name']),
    namespace: String(r['namespace']),
    typtype: String(r['typtype']),
    category: String(r['category']),
    elem: Number(r['elem']),
    len: Number(r['len']),
    baseType: Number(r['base_type']),
    baseTypmod: Number(r['base_typmod']),
    relid: Number(r['relid']),
    delimiter: String(r['delimiter']),
    rangeOf: Number(r['range_of']),
  };
}

function fieldRowOf(r: Record<string, unknown>): PgFieldRow {
  return {
    relid: Number(r['relid']),
    name: String(r['name']),
    typeOid: Number(r['type_oid']),
    typmod: Number(r['typmod']),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Handlers: one per type, with the three forms a value can take.

/** A value Delta cannot hold; the column converter stages NULL and reports `kind` once. */
class Lost {
  constructor(readonly kind: string) {}
}

interface Handler {
  readonly delta: string;
  /** The staged value of a column of this type. */
  readonly value: (text: string) => SqlValue | Lost;
  /** The JSON token of this value inside an array or composite. */
  readonly json: (text: string) => string;
  /** The canonical text: what a string column or a range bound holds. */
  readonly text: (text: string) => string;
}

const identity = (text: string) => text;
const quoted = (text: string) => JSON.stringify(text);

const TEXT: Handler = { delta: 'string', value: identity, json: quoted, text: identity };

function exact(delta: string): Handler {
  return { delta, value: identity, json: identity, text: identity };
}

const NON_FINITE = /^(-?Infinity|NaN)$/;

/** Floats: Delta float/double hold NaN and ±Infinity, JSON does not. */
function float(delta: string): Handler {
  return { delta, value: identity, json: (t) => (NON_FINITE.test(t) ? quoted(t) : t), text: identity };
}

function boolValue(text: string): boolean {
  if (text === 't') return true;
  if (text === 'f') return false;
  throw misformatted('boolean', text);
}

const BOOL: Handler = {
  delta: 'boolean',
  value: boolValue,
  json: (t) => String(boolValue(t)),
  text: identity,
};

const BYTEA: Handler = {
  delta: 'binary',
  value: byteaValue,
  json: (t) => quoted(byteaText(t)),
  text: byteaText,
};

const DATE: Handler = { delta: 'date', value: dateValue, json: quoted, text: identity };
const TIMESTAMP: Handler = { delta: 'timestamp', value: timestampValue, json: quoted, text: identity };
const TIMESTAMPTZ: Handler = {
  delta: 'timestamp',
  value: timestamptzValue,
  json: (t) => quoted(timestamptzText(t)),
  text: timestamptzText,
};
const INTERVAL: Handler = {
  delta: 'string',
  value: intervalIso,
  json: (t) => quoted(intervalIso(t)),
  text: intervalIso,
};

function builtinHandler(name: string, typmod: number): Handler {
  switch (name) {
    case 'bool':
      return BOOL;
    case 'int2':
      return exact('short');
    case 'int4':
      return exact('integer');
    case 'int8':
      return exact('long');
    // Unsigned 32-bit counters: they need the next wider signed type, as MySQL's INT UNSIGNED does.
    case 'oid':
    case 'xid':
    case 'cid':
      return exact('long');
    case 'xid8':
      return exact('decimal(20,0)');
    case 'float4':
      return float('float');
    case 'float8':
      return float('double');
    case 'numeric':
      return numericHandler(typmod);
    case 'bytea':
      return BYTEA;
    case 'date':
      return DATE;
    case 'timestamp':
      return TIMESTAMP;
    case 'timestamptz':
      return TIMESTAMPTZ;
    case 'interval':
      return INTERVAL;
    case 'json':
    case 'jsonb':
      // Passed through as text: parsing would round integers beyond 2^53.
      return { delta: 'string', value: identity, json: identity, text: identity };
    default:
      // Text types, money, time/timetz, uuid, network, bit strings, geometry, full text search, reg* and
      // the rest: their text form is the exact value and Delta has no closer type.
      return TEXT;
  }
}

/**
 * numeric(p,s) → decimal(p,s) when it fits Delta's 38 digits. PostgreSQL 15 allows a negative scale
 * (numeric(3,-2) holds 12300) and a scale above the precision (numeric(2,5) holds 0.00099); both are exact in
 * a decimal with enough digits. Unconstrained numeric has no bound on digits and may be ±Infinity, so it
 * stays text.
 */
export function numericDeltaType(typmod: number): string {
  if (typmod < 4) return 'string';
  const bits = typmod - 4;
  const precision = (bits >> 16) & 0xffff;
  const scale = ((bits & 0x7ff) ^ 1024) - 1024;
  const digits = scale < 0 ? precision - scale : Math.max(precision, scale);
  if (digits > 38) return 'string';
  return `decimal(${digits},${Math.max(scale, 0)})`;
}

function numericHandler(typmod: number): Handler {
  const delta = numericDeltaType(typmod);
  const json = (t: string) => (NON_FINITE.test(t) ? quoted(t) : t);
  if (delta === 'string') return { delta, value: identity, json, text: identity };
  return {
    delta,
    value: (t) => (NON_FINITE.test(t) ? new Lost(`numeric ${t}`) : t),
    json,
    text: identity,
  };
}

function misformatted(what: string, text: string): TributaryError {
  return new TributaryError(
    'SOURCE_MISCONFIGURED',
    `Unexpected text for a PostgreSQL ${what}: "${text.slice(0, 80)}".`,
    {
      hint: 'Tributary reads values with DateStyle=ISO, IntervalStyle=iso_8601 (or postgres), TimeZone=UTC and bytea_output=hex (or escape), set as startup options; check that nothing in between (a pooler such as PgBouncer) drops them. If they are in effect, report the value.',
    },
  );
}

// ---------------------------------------------------------------------------------------------------------
// bytea

/** bytea in either output format: hex (`\x0102`, the default) or escape (`\001\\a`). */
export function byteaValue(text: string): Uint8Array {
  if (text.startsWith('\\x')) {
    // Buffer.from stops at the first pair that is not two hex digits, so a short result means bad text (one
    // check instead of a regular expression over the text: bytea is the costliest type to stage).
    const bytes = (text.length - 2) / 2;
    const buffer = Number.isInteger(bytes) ? Buffer.from(text.slice(2), 'hex') : undefined;
    if (buffer?.length !== bytes) throw misformatted('bytea', text);
    return buffer;
  }
  const bytes: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch !== 0x5c) {
      if (ch > 0xff) throw misformatted('bytea', text);
      bytes.push(ch);
    } else if (text[i + 1] === '\\') {
      bytes.push(0x5c);
      i++;
    } else {
      const octal = text.slice(i + 1, i + 4);
      if (!/^[0-3][0-7]{2}$/.test(octal)) throw misformatted('bytea', text);
      bytes.push(Number.parseInt(octal, 8));
      i += 3;
    }
  }
  return Buffer.from(bytes);
}

function byteaText(text: string): string {
  return text.startsWith('\\x') ? text.toLowerCase() : `\\x${Buffer.from(byteaValue(text)).toString('hex')}`;
}

// ---------------------------------------------------------------------------------------------------------
// Dates and timestamps. PostgreSQL and DuckDB both use the proleptic Gregorian calendar, so a BC date is the
// same day in both; only the spelling differs (`0044-03-15 BC` versus `0044-03-15 (BC)`; DuckDB reads the
// former as AD).

/**
 * JavaScript's Date ends in 275760, and the Delta statistics writer formats bounds through it; DuckDB's own
 * timestamps end in 294247. Later values (PostgreSQL allows 294276 for timestamps, 5874897 for dates) are lost.
 */
const LAST_YEAR = 275759;

const DATE_TEXT = /^(\d{4,})-(\d{2})-(\d{2})( BC)?$/;
const TIMESTAMP_TEXT =
  /^(\d{4,})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(?:([+-])(\d{2})(?::(\d{2}))?(?::(\d{2}))?)?( BC)?$/;

function dateValue(text: string): string | Lost {
  if (text === 'infinity' || text === '-infinity') return new Lost(`date ${text}`);
  const m = DATE_TEXT.exec(text);
  if (!m) throw misformatted('date', text);
  if (Number(m[1]) > LAST_YEAR && !m[4]) return new Lost(`a date after the year ${LAST_YEAR}`);
  return m[4] ? `${m[1]}-${m[2]}-${m[3]} (BC)` : text;
}

/**
 * The common timestamp text, staged as printed: a four-digit AD year and no zone. Tested first because the
 * general pattern's captures cost more than the rest of the conversion (snapshot benchmark).
 */
const PLAIN_TIMESTAMP = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?$/;
/** The same printed by a UTC session for a timestamptz. */
const UTC_AD_TIMESTAMPTZ = /^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d{1,6})?\+00$/;

function timestampValue(text: string): string | Lost {
  if (PLAIN_TIMESTAMP.test(text)) return text;
  if (text === 'infinity' || text === '-infinity') return new Lost(`timestamp ${text}`);
  const m = TIMESTAMP_TEXT.exec(text);
  if (!m || m[8] !== undefined) throw misformatted('timestamp', text);
  if (Number(m[1]) > LAST_YEAR && !m[12]) return new Lost(`a timestamp after the year ${LAST_YEAR}`);
  return m[12] ? `${m[1]}-${m[2]}-${m[3]} (BC) ${m[4]}:${m[5]}:${m[6]}${m[7] ?? ''}` : text;
}

interface Instant {
  /** Astronomical year: 0 is 1 BC. */
  readonly year: number;
  readonly month: number;
  readonly day: number;
  /** Seconds since midnight, UTC. */
  readonly seconds: number;
  /** `.123456` or empty, as the server printed it. */
  readonly fraction: string;
}

function parseTimestamptz(text: string): Instant {
  const m = TIMESTAMP_TEXT.exec(text);
  if (!m || m[8] === undefined) throw misformatted('timestamp with time zone', text);
  const n = (i: number) => Number(m[i] ?? 0);
  const year = m[12] ? 1 - n(1) : n(1);
  const offset = (m[8] === '-' ? -1 : 1) * (n(9) * 3600 + n(10) * 60 + n(11));
  const local = daysFromCivil(year, n(2), n(3)) * 86_400 + n(4) * 3600 + n(5) * 60 + n(6);
  const utc = local - offset;
  const days = Math.floor(utc / 86_400);
  const [y, mo, d] = civilFromDays(days);
  return { year: y, month: mo, day: d, seconds: utc - days * 86_400, fraction: m[7] ?? '' };
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

function formatInstant(i: Instant, bc: 'pg' | 'duckdb'): string {
  const year = i.year <= 0 ? 1 - i.year : i.year;
  const date = `${pad(year, 4)}-${pad(i.month, 2)}-${pad(i.day, 2)}`;
  const s = i.seconds;
  const time = `${pad(Math.floor(s / 3600), 2)}:${pad(Math.floor(s / 60) % 60, 2)}:${pad(s % 60, 2)}${i.fraction}`;
  if (i.year > 0) return `${date} ${time}+00`;
  return bc === 'pg' ? `${date} ${time}+00 BC` : `${date} (BC) ${time}+00`;
}

/** The text PostgreSQL prints for this instant in a UTC session. */
export function timestamptzText(text: string): string {
  if (text === 'infinity' || text === '-infinity') return text;
  if (isUtcAd(text)) return text;
  return formatInstant(parseTimestamptz(text), 'pg');
}

/** The common case, printed by a UTC session: a four-digit AD year and offset +00. Nothing to change. */
function isUtcAd(text: string): boolean {
  return UTC_AD_TIMESTAMPTZ.test(text);
}

function timestamptzValue(text: string): string | Lost {
  if (text === 'infinity' || text === '-infinity') return new Lost(`timestamp with time zone ${text}`);
  if (isUtcAd(text)) return text;
  const instant = parseTimestamptz(text);
  if (instant.year > LAST_YEAR) return new Lost(`a timestamp after the year ${LAST_YEAR}`);
  return formatInstant(instant, 'duckdb');
}

/** Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

function civilFromDays(days: number): [number, number, number] {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor(
    (doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365,
  );
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (month <= 2 ? 1 : 0), month, day];
}

// ---------------------------------------------------------------------------------------------------------
// interval

const POSTGRES_INTERVAL =
  /^(?:([+-]?\d+) years? ?)?(?:([+-]?\d+) mons? ?)?(?:([+-]?\d+) days? ?)?(?:([+-])?(\d+):(\d{2}):(\d{2})(?:\.(\d+))?)?$/;

/**
 * An interval as ISO 8601, exactly as PostgreSQL prints it with IntervalStyle=iso_8601 (`P1Y2M-3DT4H5M6.5S`).
 * Text in the default `postgres` style (`1 year 2 mons -3 days +04:05:06.5`) is rewritten to that form.
 */
export function intervalIso(text: string): string {
  if (text.startsWith('P') || text === 'infinity' || text === '-infinity') return text;
  const m = POSTGRES_INTERVAL.exec(text);
  if (!m || text === '') throw misformatted('interval', text);
  const part = (value: string | undefined, unit: string) => {
    const n = BigInt(value ?? 0);
    return n === 0n ? '' : `${n}${unit}`;
  };
  const sign = m[4] === '-' ? '-' : '';
  const hours = BigInt(m[5] ?? 0);
  const minutes = BigInt(m[6] ?? 0);
  const seconds = BigInt(m[7] ?? 0);
  const fraction = (m[8] ?? '').replace(/0+$/, '');
  const hasTime = hours !== 0n || minutes !== 0n || seconds !== 0n || fraction !== '';
  const date = `${part(m[1], 'Y')}${part(m[2], 'M')}${part(m[3], 'D')}`;
  if (date === '' && !hasTime) return 'PT0S';
  let time = '';
  if (hasTime) {
    time = `T${part(hours === 0n ? undefined : `${sign}${hours}`, 'H')}${part(minutes === 0n ? undefined : `${sign}${minutes}`, 'M')}`;
    if (seconds !== 0n || fraction !== '')
      time += `${sign}${seconds}${fraction === '' ? '' : `.${fraction}`}S`;
  }
  return `P${date}${time}`;
}

// ---------------------------------------------------------------------------------------------------------
// Arrays, composites and ranges: PostgreSQL's literal syntax, parsed to their element texts.

/** An array literal's elements: text, NULL, or a nested dimension. */
export type ArrayNode = string | null | ArrayNode[];

/**
 * Parses array_out's text (`{1,NULL,"a b",{2,3}}`, possibly prefixed by bounds `[0:2]=`). Explicit lower
 * bounds are dropped: JSON arrays have none.
 */
export function parseArray(text: string, delimiter = ','): ArrayNode[] {
  let i = 0;
  if (text.startsWith('[')) {
    i = text.indexOf('=') + 1;
    if (i === 0) throw misformatted('array', text);
  }
  const parseLevel = (): ArrayNode[] => {
    if (text[i] !== '{') throw misformatted('array', text);
    i++;
    const items: ArrayNode[] = [];
    if (text[i] === '}') {
      i++;
      return items;
    }
    for (;;) {
      if (text[i] === '{') {
        items.push(parseLevel());
      } else if (text[i] === '"') {
        i++;
        let value = '';
        while (i < text.length && text[i] !== '"') {
          if (text[i] === '\\') i++;
          value += text[i] ?? '';
          i++;
        }
        if (text[i] !== '"') throw misformatted('array', text);
        i++;
        items.push(value);
      } else {
        let value = '';
        let escaped = false;
        while (i < text.length && text[i] !== delimiter && text[i] !== '}') {
          if (text[i] === '\\') {
            i++;
            escaped = true;
          }
          value += text[i] ?? '';
          i++;
        }
        items.push(!escaped && value.toUpperCase() === 'NULL' ? null : value);
      }
      if (text[i] === delimiter) {
        i++;
      } else if (text[i] === '}') {
        i++;
        return items;
      } else {
        throw misformatted('array', text);
      }
    }
  };
  const result = parseLevel();
  if (i !== text.length) throw misformatted('array', text);
  return result;
}

function arrayJson(items: readonly ArrayNode[], element: Handler): string {
  return `[${items.map((item) => (Array.isArray(item) ? arrayJson(item, element) : jsonOf(item, element))).join(',')}]`;
}

function jsonOf(text: string | null, handler: Handler): string {
  return text === null ? 'null' : handler.json(text);
}

/**
 * Reads one quoted-or-bare item of a record or range literal starting at `i`, up to one of `stops`. Returns
 * null for an empty, unquoted item (a NULL field, an infinite bound).
 */
function readItem(text: string, start: number, stops: string): { value: string | null; end: number } {
  let i = start;
  let value = '';
  let quotedOrEscaped = false;
  while (i < text.length && !stops.includes(text[i] ?? '')) {
    const ch = text[i];
    if (ch === '"') {
      quotedOrEscaped = true;
      i++;
      for (;;) {
        if (i >= text.length) throw misformatted('record or range', text);
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            value += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        if (text[i] === '\\') i++;
        value += text[i] ?? '';
        i++;
      }
    } else if (ch === '\\') {
      quotedOrEscaped = true;
      value += text[i + 1] ?? '';
      i += 2;
    } else {
      value += ch;
      i++;
    }
  }
  return { value: value === '' && !quotedOrEscaped ? null : value, end: i };
}

/** Parses record_out's text (`(1,,"a b")`): field texts, null for NULL fields. */
export function parseComposite(text: string): (string | null)[] {
  if (!text.startsWith('(') || !text.endsWith(')')) throw misformatted('record', text);
  const fields: (string | null)[] = [];
  let i = 1;
  for (;;) {
    const item = readItem(text, i, ',)');
    fields.push(item.value);
    if (text[item.end] === ')') {
      if (item.end !== text.length - 1) throw misformatted('record', text);
      return fields;
    }
    i = item.end + 1;
  }
}

/** Quotes a range bound as range_out does. */
function rangeBound(value: string): string {
  if (value !== '' && !/["\\()[\],\s]/.test(value)) return value;
  return `"${value.replaceAll('\\', '\\\\').replaceAll('"', '""')}"`;
}

/** Reads one range literal at `start`; returns its canonical text and where it ends. */
function readRange(
  text: string,
  start: number,
  bound: (text: string) => string,
): { text: string; end: number } {
  if (text.startsWith('empty', start)) return { text: 'empty', end: start + 5 };
  const open = text[start];
  if (open !== '[' && open !== '(') throw misformatted('range', text);
  const lower = readItem(text, start + 1, ',');
  if (text[lower.end] !== ',') throw misformatted('range', text);
  const upper = readItem(text, lower.end + 1, '])');
  const close = text[upper.end];
  if (close === undefined) throw misformatted('range', text);
  const b = (v: string | null) => (v === null ? '' : rangeBound(bound(v)));
  return { text: `${open}${b(lower.value)},${b(upper.value)}${close}`, end: upper.end + 1 };
}

function canonicalRange(text: string, bound: (text: string) => string): string {
  const range = readRange(text, 0, bound);
  if (range.end !== text.length) throw misformatted('range', text);
  return range.text;
}

function canonicalMultirange(text: string, bound: (text: string) => string): string {
  if (text[0] !== '{') throw misformatted('multirange', text);
  if (text === '{}') return text;
  const ranges: string[] = [];
  let i = 1;
  for (;;) {
    const range = readRange(text, i, bound);
    ranges.push(range.text);
    if (text[range.end] === '}' && range.end === text.length - 1) return `{${ranges.join(',')}}`;
    if (text[range.end] !== ',') throw misformatted('multirange', text);
    i = range.end + 1;
  }
}
