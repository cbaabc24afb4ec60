/**
 * Reads `tributary.yaml` and reports every problem at once, each as `<path>: <what is wrong> (line N)`, so a
 * user fixes a file in one pass rather than one error per run.
 *
 * Values are never echoed for fields that may hold a password; a YAML syntax error is reported without the
 * usual source excerpt for the same reason (the offending line may be `password: hunter2`).
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import {
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  type Document as YamlDocument,
} from 'yaml';
import type * as z from 'zod';
import { isTributaryError, messageOf, TributaryError } from '../core/errors.js';
import {
  parseSecretReference,
  resolveSecretReference,
  type SecretStore,
  secretEnvVarName,
} from '../secrets/secret-store.js';
import {
  type ConfigFile,
  type ConnectionConfig,
  configFileSchema,
  type GatewayConfig,
  IDENTIFIER_PATTERN,
  type PipelineConfig,
  type PipelineObject,
  type TableConfiguration,
  type TributaryConfig,
} from './schema.js';

export type {
  ConnectionConfig,
  GatewayConfig,
  PipelineConfig,
  PipelineObject,
  ScdType,
  SchemaObject,
  TableConfiguration,
  TableObject,
  TributaryConfig,
} from './schema.js';

type PathSegment = string | number;
type Path = readonly PathSegment[];

interface Problem {
  path: Path;
  message: string;
}

const DEFAULT_PORTS = { mysql: 3306, postgresql: 5432 } as const;

export async function loadConfig(path: string): Promise<TributaryConfig> {
  const configPath = resolve(path);
  let text: string;
  try {
    text = await readFile(configPath, 'utf8');
  } catch (error) {
    const code = typeof error === 'object' && error !== null && 'code' in error ? error.code : undefined;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new TributaryError('CONFIG_NOT_FOUND', `configuration file not found: ${configPath}`, {
        hint: 'create tributary.yaml or pass --config <file>',
        cause: error,
      });
    }
    throw new TributaryError('CONFIG_INVALID', `${configPath}: cannot read the file: ${messageOf(error)}`, {
      cause: error,
    });
  }
  return parseConfig(text, configPath);
}

/** Parses and validates the text of a configuration file; `configPath` anchors relative paths. */
export function parseConfig(text: string, configPath: string): TributaryConfig {
  const absolutePath = resolve(configPath);
  const lineCounter = new LineCounter();
  // logLevel 'error': the library's warnings go straight to stderr and quote the text they are about, e.g.
  // "Keys with collection values will be stringified: "{ hunter2 }"" for `password: {{hunter2}}`.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true, logLevel: 'error' });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => {
      const { line, col } = lineCounter.linePos(e.pos[0]);
      const message = e.code === 'MULTIPLE_DOCS' ? 'the file must hold a single YAML document' : e.message;
      return `line ${line}, column ${col}: ${message}`;
    });
    throw new TributaryError('CONFIG_INVALID', `${absolutePath}: not valid YAML\n${indent(lines)}`);
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 1000 });
  } catch (error) {
    // Alias expansion limits ("billion laughs") surface here rather than as parse errors.
    throw new TributaryError('CONFIG_INVALID', `${absolutePath}: not valid YAML\n  ${messageOf(error)}`, {
      cause: error,
    });
  }
  const locate = (path: Path) => lineOf(doc, lineCounter, path);

  if (raw === null || raw === undefined) {
    throw invalid(absolutePath, [
      {
        path: [],
        message: 'the file is empty; expected a mapping with warehouse, connections, gateways and pipelines',
      },
    ]);
  }

  checkPlaintextPasswords(raw, absolutePath, locate);

  const problems: Problem[] = unquotedReferences(doc);
  // An unquoted reference is already explained; zod would add "expected a string, got a mapping" for it.
  const explained = new Set(problems.map((p) => formatPath(p.path)));
  const result = configFileSchema.safeParse(raw, { error: allowedKeysErrorMap });
  if (!result.success) {
    problems.push(
      ...result.error.issues
        .flatMap((issue) => describeIssue(issue, raw))
        .filter((p) => !explained.has(formatPath(p.path))),
    );
  }
  problems.push(...checkSemantics(raw));
  if (problems.length > 0 || !result.success) {
    throw invalid(absolutePath, problems, locate);
  }
  return build(result.data, absolutePath);
}

/** The password of a connection, from the environment or the secret store. */
export async function resolveConnectionPassword(
  conn: ConnectionConfig,
  store: SecretStore,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  try {
    return await resolveSecretReference(conn.password, store, env);
  } catch (error) {
    if (isTributaryError(error)) {
      throw new TributaryError(error.code, `connections.${conn.name}.password: ${error.message}`, {
        ...(error.hint === undefined ? {} : { hint: error.hint }),
        retry: error.retry,
        cause: error,
      });
    }
    throw error;
  }
}

function build(file: ConfigFile, configPath: string): TributaryConfig {
  const connections: Record<string, ConnectionConfig> = {};
  for (const [name, c] of Object.entries(file.connections ?? {})) {
    connections[name] = {
      name,
      type: c.type,
      host: c.host,
      port: c.port ?? DEFAULT_PORTS[c.type],
      ...(c.database === undefined ? {} : { database: c.database }),
      user: c.user,
      password: c.password,
      ...(c.ssl === undefined
        ? {}
        : {
            ssl: {
              mode: c.ssl.mode,
              ...(c.ssl.ca === undefined ? {} : { ca: resolvePath(c.ssl.ca, dirname(configPath)) }),
            },
          }),
      retention_policy: {
        max_downtime_hours: c.retention_policy?.max_downtime_hours ?? 12,
        max_pipeline_duration_hours: c.retention_policy?.max_pipeline_duration_hours ?? 1,
        buffer_hours: c.retention_policy?.buffer_hours ?? 11,
      },
    };
  }
  const gateways: Record<string, GatewayConfig> = {};
  for (const [name, g] of Object.entries(file.gateways ?? {})) {
    gateways[name] = {
      name,
      connection: g.connection,
      storage: g.storage,
      ...(g.server_id === undefined ? {} : { server_id: g.server_id }),
      ...(g.slot_name === undefined ? {} : { slot_name: g.slot_name }),
      ...(g.publication_name === undefined ? {} : { publication_name: g.publication_name }),
      staging_retention_days: g.staging_retention_days ?? 25,
      snapshot_parallel_tables: g.snapshot_parallel_tables ?? 2,
    };
  }
  const pipelines: Record<string, PipelineConfig> = {};
  for (const [name, p] of Object.entries(file.pipelines ?? {})) {
    const objects = p.objects.map((o): PipelineObject => {
      if (o.table !== undefined) {
        const t = o.table;
        return {
          table: {
            ...(t.source_catalog === undefined ? {} : { source_catalog: t.source_catalog }),
            source_schema: t.source_schema,
            source_table: t.source_table,
            destination_catalog: t.destination_catalog,
            destination_schema: t.destination_schema,
            destination_table: t.destination_table ?? t.source_table,
            table_configuration: tableConfiguration(t.table_configuration),
          },
        };
      }
      // The schema's refinement guarantees exactly one of the two.
      const s = o.schema as NonNullable<typeof o.schema>;
      return {
        schema: {
          ...(s.source_catalog === undefined ? {} : { source_catalog: s.source_catalog }),
          source_schema: s.source_schema,
          destination_catalog: s.destination_catalog,
          destination_schema: s.destination_schema,
          table_configuration: tableConfiguration(s.table_configuration),
        },
      };
    });
    pipelines[name] = {
      name,
      gateway: p.gateway,
      schema_evolution: p.schema_evolution ?? 'evolve',
      auto_full_refresh: p.auto_full_refresh ?? false,
      schedule: p.schedule ?? 'continuous',
      objects,
    };
  }
  return {
    configPath,
    warehouse: resolvePath(file.warehouse, dirname(configPath)),
    connections,
    gateways,
    pipelines,
  };
}

function tableConfiguration(
  c:
    | {
        scd_type?: TableConfiguration['scd_type'] | undefined;
        primary_keys?: string[] | undefined;
        include_columns?: string[] | undefined;
        exclude_columns?: string[] | undefined;
        table_properties?: Record<string, string> | undefined;
        commit_timestamp_column?: string | undefined;
      }
    | undefined,
): TableConfiguration {
  return {
    scd_type: c?.scd_type ?? 'SCD_TYPE_1',
    ...(c?.primary_keys === undefined ? {} : { primary_keys: c.primary_keys }),
    ...(c?.include_columns === undefined ? {} : { include_columns: c.include_columns }),
    ...(c?.exclude_columns === undefined ? {} : { exclude_columns: c.exclude_columns }),
    ...(c?.table_properties === undefined ? {} : { table_properties: c.table_properties }),
    ...(c?.commit_timestamp_column === undefined
      ? {}
      : { commit_timestamp_column: c.commit_timestamp_column }),
  };
}

function resolvePath(p: string, base: string): string {
  if (p === '~') return homedir();
  if (p.startsWith('~/')) return join(homedir(), p.slice(2));
  return resolve(base, p);
}

// ---------------------------------------------------------------------------------------------------------
// Plaintext passwords

/**
 * A password that is not a reference is refused before anything else is reported: it is the one problem
 * that leaks, and its message must not contain the value. Numbers count too (`password: 123456`).
 * A value that starts like a reference but is malformed is reported as a normal problem instead.
 */
function checkPlaintextPasswords(
  raw: unknown,
  configPath: string,
  locate: (path: Path) => number | undefined,
) {
  const found: { name: string; connection: Record<string, unknown> }[] = [];
  const { connections } = mapping(raw);
  for (const [name, connection] of Object.entries(mapping(connections))) {
    if (!isRecord(connection)) continue;
    const { password } = connection;
    const plain =
      typeof password === 'number' ||
      typeof password === 'bigint' ||
      (typeof password === 'string' && !password.trimStart().startsWith('{{'));
    if (plain) found.push({ name, connection });
  }
  if (found.length === 0) return;

  const lines = found.map(({ name }) => {
    const path = ['connections', name, 'password'];
    return withLine(
      `${formatPath(path)}: must be a secret reference {{secrets/<scope>/<key>}}, not the password itself`,
      locate(path),
    );
  });
  const usedKeys = new Set<string>();
  const suggestions = found.map(({ name, connection }) => {
    const { type, user } = connection;
    const scope = sanitizeSecretName(`${typeof type === 'string' ? type : 'mysql'}_credentials`);
    let key =
      typeof user === 'string' && user !== ''
        ? sanitizeSecretName(user.endsWith('_user') ? `${user.slice(0, -5)}_password` : `${user}_password`)
        : sanitizeSecretName(`${name}_password`);
    if (usedKeys.has(`${scope}/${key}`)) key = sanitizeSecretName(`${name}_password`);
    usedKeys.add(`${scope}/${key}`);
    return { name, scope, key };
  });
  const scopes = [...new Set(suggestions.map((s) => s.scope))];
  const hint = [
    'move the password into the secret store:',
    ...scopes.map((scope) => `  tributary secrets create-scope --scope ${scope}`),
    ...suggestions.map(
      ({ scope, key }) =>
        `  tributary secrets put --scope ${scope} --key ${key}   (reads the value from stdin)`,
    ),
    ...suggestions.flatMap(({ name, scope, key }) => [
      `then under ${formatPath(['connections', name])} in ${configPath} write:`,
      `  password: "{{secrets/${scope}/${key}}}"`,
    ]),
    `(or set ${suggestions.map(({ scope, key }) => secretEnvVarName(scope, key)).join(', ')} in the environment instead of using the store)`,
  ].join('\n');
  throw new TributaryError(
    'CONFIG_PLAINTEXT_SECRET',
    `${configPath}: ${found.length === 1 ? 'a password is' : 'passwords are'} written in plain text\n${indent(lines)}`,
    { hint },
  );
}

/**
 * `password: {{secrets/s/k}}` without quotes is YAML for a mapping whose only key is another mapping, so the
 * schema alone would say "expected a string, got a mapping" and leave the user guessing. The value is not
 * echoed: between the braces there may be a password rather than a reference.
 */
function unquotedReferences(doc: YamlDocument): Problem[] {
  const problems: Problem[] = [];
  const connections = doc.get('connections', true);
  if (!isMap(connections)) return problems;
  for (const { key, value } of connections.items) {
    if (!isScalar(key) || !isMap(value)) continue;
    const password = value.get('password', true);
    if (!isMap(password) || password.flow !== true || password.items.length !== 1) continue;
    const [only] = password.items;
    if (only !== undefined && isMap(only.key) && only.key.flow === true) {
      problems.push({
        path: ['connections', String(key.value), 'password'],
        message:
          'is written as {{...}} without quotes, which YAML reads as a mapping; quote the reference: password: "{{secrets/<scope>/<key>}}"',
      });
    }
  }
  return problems;
}

function sanitizeSecretName(s: string): string {
  return s.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 128);
}

// ---------------------------------------------------------------------------------------------------------
// Checks across fields, made on the raw document so they are reported together with structural problems

function checkSemantics(raw: unknown): Problem[] {
  const problems: Problem[] = [];
  const { connections: rawConnections, gateways: rawGateways, pipelines: rawPipelines } = mapping(raw);
  const connections = mapping(rawConnections);
  const gateways = mapping(rawGateways);
  const pipelines = mapping(rawPipelines);

  for (const [name, connection] of Object.entries(connections)) {
    const { password } = mapping(connection);
    // Plain text was refused already, so this is a reference with a typo; it is still not echoed.
    if (typeof password === 'string' && parseSecretReference(password) === undefined) {
      problems.push({
        path: ['connections', name, 'password'],
        message:
          'is not a valid secret reference; expected {{secrets/<scope>/<key>}} where scope and key are 1 to 128 letters, digits, "_", "." or "-"',
      });
    }
  }

  for (const [name, connection] of Object.entries(connections)) {
    const { type, database } = mapping(connection);
    if (type === 'postgresql' && database === undefined) {
      problems.push({
        path: ['connections', name, 'database'],
        message:
          'is required for a postgresql connection: the database whose tables are captured (a replication slot belongs to one database)',
      });
    }
    if (type === 'mysql' && database !== undefined) {
      problems.push({
        path: ['connections', name, 'database'],
        message:
          'is for postgresql connections only; a mysql connection reaches every database, named as source_schema in the pipeline objects',
      });
    }
  }

  const serverIds = new Map<number, string>();
  const slots = new Map<string, string>();
  for (const [name, gateway] of Object.entries(gateways)) {
    const {
      connection: ref,
      server_id: serverId,
      slot_name: slot,
      publication_name: publication,
    } = mapping(gateway);
    if (typeof ref === 'string' && !Object.hasOwn(connections, ref)) {
      problems.push({
        path: ['gateways', name, 'connection'],
        message: `connection ${JSON.stringify(ref)} is not defined (defined: ${names(connections)})`,
      });
    }
    const type = typeof ref === 'string' ? mapping(connections[ref])['type'] : undefined;
    if (type === 'postgresql' && serverId !== undefined) {
      problems.push({
        path: ['gateways', name, 'server_id'],
        message: 'is for mysql connections only (a binlog replica id); a postgresql gateway uses slot_name',
      });
    }
    for (const [key, value] of [
      ['slot_name', slot],
      ['publication_name', publication],
    ] as const) {
      if (type === 'mysql' && value !== undefined) {
        problems.push({
          path: ['gateways', name, key],
          message: `is for postgresql connections only; a mysql gateway reads the binlog (see server_id)`,
        });
      }
    }
    if (type === 'postgresql' && typeof ref === 'string') {
      const slotName = typeof slot === 'string' ? slot : defaultSlotName(name);
      const key = `${ref}/${slotName}`;
      const other = slots.get(key);
      if (other !== undefined) {
        problems.push({
          path: ['gateways', name, 'slot_name'],
          message: `replication slot ${slotName} is also used by gateways.${other}; each gateway needs its own slot`,
        });
      } else {
        slots.set(key, name);
      }
    }
    if (typeof serverId === 'number') {
      const other = serverIds.get(serverId);
      if (other !== undefined) {
        problems.push({
          path: ['gateways', name, 'server_id'],
          message: `server_id ${serverId} is also used by gateways.${other}; each binlog reader needs its own server id`,
        });
      } else {
        serverIds.set(serverId, name);
      }
    }
  }

  const destinations = new Map<string, string>();
  for (const [name, pipeline] of Object.entries(pipelines)) {
    const { gateway: ref, objects } = mapping(pipeline);
    if (typeof ref === 'string' && !Object.hasOwn(gateways, ref)) {
      problems.push({
        path: ['pipelines', name, 'gateway'],
        message: `gateway ${JSON.stringify(ref)} is not defined (defined: ${names(gateways)})`,
      });
    }
    if (!Array.isArray(objects)) continue;
    const connection =
      typeof ref === 'string' ? mapping(connections[String(mapping(gateways[ref])['connection'])]) : {};
    objects.forEach((object: unknown, index) => {
      const { table, schema } = mapping(object);
      const entry = isRecord(table) ? table : isRecord(schema) ? schema : undefined;
      const catalog = entry?.['source_catalog'];
      if (catalog !== undefined && connection['type'] === 'mysql') {
        problems.push({
          path: ['pipelines', name, 'objects', index, isRecord(table) ? 'table' : 'schema', 'source_catalog'],
          message: 'is for postgresql sources only; MySQL has no catalogs (the database is source_schema)',
        });
      }
      if (
        catalog !== undefined &&
        connection['type'] === 'postgresql' &&
        typeof connection['database'] === 'string' &&
        catalog !== connection['database']
      ) {
        problems.push({
          path: ['pipelines', name, 'objects', index, isRecord(table) ? 'table' : 'schema', 'source_catalog'],
          message: `${JSON.stringify(catalog)} is not the connection's database ${JSON.stringify(connection['database'])}; a gateway captures one database (add a connection and gateway per database)`,
        });
      }
      if (!isRecord(table)) return;
      const { destination_catalog, destination_schema, destination_table, source_table } = table;
      // Source names may be any MySQL name; the default destination must still be a valid identifier.
      if (
        destination_table === undefined &&
        typeof source_table === 'string' &&
        !IDENTIFIER_PATTERN.test(source_table)
      ) {
        problems.push({
          path: ['pipelines', name, 'objects', index, 'table', 'destination_table'],
          message: `is required because source_table ${JSON.stringify(source_table)} is not a valid destination name (letters, digits and "_", not starting with a digit)`,
        });
        return;
      }
      const parts = [destination_catalog, destination_schema, destination_table ?? source_table];
      if (!parts.every((p) => typeof p === 'string')) return;
      const destination = parts.join('.');
      const path: Path = ['pipelines', name, 'objects', index, 'table'];
      const other = destinations.get(destination);
      if (other !== undefined) {
        problems.push({ path, message: `destination table ${destination} is also written by ${other}` });
      } else {
        destinations.set(destination, formatPath(path));
      }
    });
  }
  return problems;
}

/** The slot a PostgreSQL gateway uses unless `slot_name` says otherwise. Slot names are lower case. */
export function defaultSlotName(gateway: string): string {
  return `tributary_${gateway.toLowerCase()}`.slice(0, 63);
}

function names(record: Record<string, unknown>): string {
  const keys = Object.keys(record);
  return keys.length === 0 ? 'none' : keys.join(', ');
}

// ---------------------------------------------------------------------------------------------------------
// Turning zod issues into messages

/**
 * zod reports unknown keys without the keys that were allowed; the schema instance is only at hand while
 * the issue is raised, so the allowed keys travel in the message to {@link describeIssue}.
 */
const allowedKeysErrorMap: z.core.$ZodErrorMap = (issue) => {
  if (issue.code !== 'unrecognized_keys') return undefined;
  const def = (issue.inst as { _zod?: { def?: { shape?: Record<string, unknown> } } } | undefined)?._zod?.def;
  return JSON.stringify(Object.keys(def?.shape ?? {}));
};

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): Problem[] {
  const path = issue.path.filter((s): s is PathSegment => typeof s !== 'symbol');
  switch (issue.code) {
    case 'unrecognized_keys': {
      let allowed: string[] = [];
      try {
        allowed = JSON.parse(issue.message) as string[];
      } catch {
        // Keep going without suggestions.
      }
      return issue.keys.map((key) => ({ path: [...path, key], message: unknownKeyMessage(key, allowed) }));
    }
    case 'invalid_type': {
      const input = valueAt(raw, path);
      if (input === undefined) return [{ path, message: 'is required' }];
      // Custom messages from the schema say what was expected; zod's own mention the JavaScript type.
      const expected = issue.message.startsWith('Invalid input')
        ? describeExpected(issue.expected)
        : issue.message;
      return [{ path, message: `${expected}, got ${describeValue(input)}` }];
    }
    case 'invalid_key':
      return [{ path, message: issue.issues[0]?.message ?? 'is not a valid name' }];
    default:
      return [{ path, message: issue.message }];
  }
}

function unknownKeyMessage(key: string, allowed: string[]): string {
  const suggestion = closest(key, allowed);
  if (suggestion !== undefined) return `unknown key (did you mean "${suggestion}"?)`;
  return allowed.length > 0 ? `unknown key (allowed: ${allowed.join(', ')})` : 'unknown key';
}

function describeExpected(expected: string): string {
  switch (expected) {
    case 'object':
      return 'expected a mapping';
    case 'array':
      return 'expected a list';
    case 'int':
      return 'expected an integer';
    default:
      return `expected a ${expected}`;
  }
}

/** Describes a value by kind only, so that no value (it might be a secret) reaches a message. */
function describeValue(value: unknown): string {
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'number' && !Number.isInteger(value)) return 'a fractional number';
  if (typeof value === 'number' || typeof value === 'bigint') return 'a number';
  if (typeof value === 'boolean') return 'true/false';
  return `a ${typeof value}`;
}

/** The nearest allowed key within a small edit distance, for "did you mean". */
function closest(key: string, allowed: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(key.length / 3)) + 1;
  for (const candidate of allowed) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

// ---------------------------------------------------------------------------------------------------------
// Paths, lines and the error itself

function invalid(configPath: string, problems: Problem[], locate?: (path: Path) => number | undefined) {
  const located = problems.map((p, order) => ({ ...p, order, line: locate?.(p.path) }));
  // Document order reads better than schema order; problems without a line keep their relative order last.
  located.sort(
    (a, b) => (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER) || a.order - b.order,
  );
  const lines = located.map((p) => withLine(`${formatPath(p.path)}: ${p.message}`, p.line));
  const count = problems.length === 1 ? '1 problem' : `${problems.length} problems`;
  return new TributaryError(
    'CONFIG_INVALID',
    `${configPath}: invalid configuration (${count})\n${indent(lines)}`,
  );
}

/** `pipelines.p.objects[1].table.source_table`; keys that are not plain names are quoted in brackets. */
export function formatPath(path: Path): string {
  if (path.length === 0) return '(top level)';
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

function withLine(text: string, line: number | undefined): string {
  return line === undefined ? text : `${text} (line ${line})`;
}

function indent(lines: string[]): string {
  return lines.map((l) => `  ${l}`).join('\n');
}

/**
 * The line of the deepest node on `path` that exists in the document: the key's line for a mapping entry
 * (so a missing or mistyped value points at its key), the item's line for a list entry.
 */
function lineOf(doc: YamlDocument, lineCounter: LineCounter, path: Path): number | undefined {
  let node: unknown = doc.contents;
  let offset: number | undefined = (doc.contents as Node | null)?.range?.[0];
  for (const segment of path) {
    if (isMap(node)) {
      const pair = node.items.find(
        (p) => (isScalar(p.key) ? String(p.key.value) : p.key) === String(segment),
      );
      if (pair === undefined) break;
      offset = (pair.key as Node | null)?.range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof segment === 'number') {
      const item = node.items[segment];
      if (item === undefined) break;
      offset = (item as Node | null)?.range?.[0] ?? offset;
      node = item;
    } else {
      break;
    }
  }
  return offset === undefined ? undefined : lineCounter.linePos(offset).line;
}

function valueAt(raw: unknown, path: Path): unknown {
  let value = raw;
  for (const segment of path) {
    if (Array.isArray(value) && typeof segment === 'number') value = value[segment];
    else if (isRecord(value) && typeof segment === 'string' && Object.hasOwn(value, segment))
      value = value[segment];
    else return undefined;
  }
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * The raw document is untyped; anything that is not a mapping reads as an empty one. Fields are read by
 * destructuring, which satisfies both tsc (no dotted index-signature access) and Biome (no literal keys).
 */
function mapping(value: unknown): Record<string, unknown> {
  return isRecord(value) ? value : {};
}
