/**
 * Table features on the writing side (Delta protocol "Table Features", DIGEST §8 and §15).
 *
 * - {@link protocolFor} picks the least protocol a table with given properties and schema needs. Without any
 *   feature that is reader 1 / writer 2, which every Delta engine reads and writes; legacy features stay on
 *   legacy versions (changeDataFeed → writer 4, columnMapping → reader 2 / writer 5) so older readers keep
 *   working; anything else moves to reader 3 / writer 7 with explicit feature lists.
 * - {@link checkWriteSupport} refuses tables whose protocol lists a writer feature this writer does not
 *   implement. A writer must honour every supported feature even when its property is off, so "listed" is
 *   what counts, not "enabled".
 * - {@link checkCommitFeatures} enforces, per commit, the log-level rules (appendOnly, deletion vectors and
 *   domain metadata only when supported, protocol/metadata changes that stay consistent, the change data
 *   feed's reserved column names) and, for data writers, that changeDataFeed tables get their cdc files.
 */
import { TributaryError } from '../core/errors.js';
import type { Action, Metadata, Protocol } from './actions.js';
import type { DataType, StructField, StructType } from './schema.js';
import { isEnabled } from './table-properties.js';

interface FeatureInfo {
  /** Needs reader support too (listed in readerFeatures at reader 3). */
  readonly reader: boolean;
  /** The legacy (reader, writer) versions that imply it, when it predates table features. */
  readonly legacy?: readonly [number, number];
}

/** Every feature the protocol defines that this module reasons about, in the order lists are written. */
const FEATURES: ReadonlyMap<string, FeatureInfo> = new Map<string, FeatureInfo>([
  ['appendOnly', { reader: false, legacy: [1, 2] }],
  ['invariants', { reader: false, legacy: [1, 2] }],
  ['checkConstraints', { reader: false, legacy: [1, 3] }],
  ['changeDataFeed', { reader: false, legacy: [1, 4] }],
  ['generatedColumns', { reader: false, legacy: [1, 4] }],
  ['columnMapping', { reader: true, legacy: [2, 5] }],
  ['identityColumns', { reader: false, legacy: [1, 6] }],
  ['deletionVectors', { reader: true }],
  ['timestampNtz', { reader: true }],
  ['v2Checkpoint', { reader: true }],
  ['vacuumProtocolCheck', { reader: true }],
  ['typeWidening', { reader: true }],
  ['inCommitTimestamp', { reader: false }],
  ['domainMetadata', { reader: false }],
  ['rowTracking', { reader: false }],
]);

/**
 * Writer features this writer implements, each with the condition under which it can honour it: `true` when
 * always, otherwise a function returning why not (or undefined when fine) for the table at hand. Features whose
 * obligations sit in column metadata we cannot evaluate (SQL expressions) are supported only while unused.
 */
const WRITER_SUPPORT: ReadonlyMap<string, true | ((metadata: Metadata) => string | undefined)> = new Map<
  string,
  true | ((metadata: Metadata) => string | undefined)
>([
  ['appendOnly', true],
  [
    'invariants',
    (m) => (fieldsWithMetadata(m, 'delta.invariants') ? 'a column has an invariant' : undefined),
  ],
  [
    'checkConstraints',
    (m) =>
      Object.keys(m.configuration).some((k) => k.startsWith('delta.constraints.'))
        ? 'the table has CHECK constraints'
        : undefined,
  ],
  ['changeDataFeed', true],
  [
    'generatedColumns',
    (m) => (fieldsWithMetadata(m, 'delta.generationExpression') ? 'a column is generated' : undefined),
  ],
  [
    'columnMapping',
    (m) => {
      const mode = m.configuration['delta.columnMapping.mode'] ?? 'none';
      return mode === 'none' ? undefined : `column mapping mode '${mode}'`;
    },
  ],
  [
    'identityColumns',
    (m) => (fieldsWithMetadata(m, 'delta.identity.') ? 'a column is an identity column' : undefined),
  ],
  ['deletionVectors', true],
  ['timestampNtz', true],
  ['v2Checkpoint', true],
  ['vacuumProtocolCheck', true],
  ['inCommitTimestamp', true],
  ['domainMetadata', true],
  // Type changes are applied only through type-widening.ts (the supported changes, recorded in
  // delta.typeChanges); every other writer keeps the schema, and reads older files widened through scan.ts.
  ['typeWidening', true],
]);

/** The writer features this writer implements (some only while unused; see {@link checkWriteSupport}). */
export const SUPPORTED_WRITER_FEATURES: readonly string[] = [...WRITER_SUPPORT.keys()];

function fieldsWithMetadata(metadata: Metadata, keyPrefix: string): boolean {
  let struct: StructType;
  try {
    struct = JSON.parse(metadata.schemaString) as StructType;
  } catch {
    return false;
  }
  return someField(struct, (f) => Object.keys(f.metadata ?? {}).some((k) => k.startsWith(keyPrefix)));
}

function someField(struct: StructType, test: (field: StructField) => boolean): boolean {
  const visit = (type: DataType): boolean => {
    if (typeof type === 'string') return false;
    if (type.type === 'struct') return (type.fields ?? []).some((f) => test(f) || visit(f.type));
    if (type.type === 'array') return visit(type.elementType);
    return visit(type.keyType) || visit(type.valueType);
  };
  return visit(struct);
}

function someType(struct: StructType, test: (type: string) => boolean): boolean {
  const visit = (type: DataType): boolean => {
    if (typeof type === 'string') return test(type);
    if (type.type === 'struct') return (type.fields ?? []).some((f) => visit(f.type));
    if (type.type === 'array') return visit(type.elementType);
    return visit(type.keyType) || visit(type.valueType);
  };
  return visit(struct);
}

/**
 * The features a table with these properties and this schema needs, in canonical order:
 * `delta.enableDeletionVectors` → deletionVectors; a `timestamp_ntz` column → timestampNtz;
 * `delta.checkpointPolicy=v2` → v2Checkpoint; `delta.enableInCommitTimestamps` → inCommitTimestamp;
 * `delta.enableChangeDataFeed` → changeDataFeed; `delta.appendOnly` → appendOnly; column mapping mode
 * name/id → columnMapping; `delta.constraints.*` → checkConstraints; column metadata `delta.invariants`,
 * `delta.generationExpression`, `delta.identity.*` → invariants, generatedColumns, identityColumns;
 * `delta.enableRowTracking` → rowTracking + domainMetadata; `delta.enableTypeWidening` → typeWidening.
 */
export function requiredFeatures(
  configuration: Readonly<Record<string, string>>,
  schema: StructType,
): string[] {
  const needed = new Set<string>();
  const on = (key: string) => isEnabled(configuration, key);
  if (on('delta.appendOnly')) needed.add('appendOnly');
  if (someField(schema, (f) => 'delta.invariants' in (f.metadata ?? {}))) needed.add('invariants');
  if (Object.keys(configuration).some((k) => k.startsWith('delta.constraints.')))
    needed.add('checkConstraints');
  if (on('delta.enableChangeDataFeed')) needed.add('changeDataFeed');
  if (someField(schema, (f) => 'delta.generationExpression' in (f.metadata ?? {})))
    needed.add('generatedColumns');
  const mode = configuration['delta.columnMapping.mode'] ?? 'none';
  if (mode !== 'none') needed.add('columnMapping');
  if (someField(schema, (f) => Object.keys(f.metadata ?? {}).some((k) => k.startsWith('delta.identity.')))) {
    needed.add('identityColumns');
  }
  if (on('delta.enableDeletionVectors')) needed.add('deletionVectors');
  if (someType(schema, (t) => t === 'timestamp_ntz')) needed.add('timestampNtz');
  if ((configuration['delta.checkpointPolicy'] ?? 'classic').toLowerCase() === 'v2')
    needed.add('v2Checkpoint');
  if (on('delta.enableTypeWidening')) needed.add('typeWidening');
  if (on('delta.enableInCommitTimestamps')) needed.add('inCommitTimestamp');
  if (on('delta.enableRowTracking')) needed.add('rowTracking').add('domainMetadata');
  return [...FEATURES.keys()].filter((f) => needed.has(f));
}

/** Writer features a protocol supports: its explicit list at writer 7, else those its legacy version implies. */
export function writerFeaturesOf(protocol: Protocol): Set<string> {
  if (protocol.minWriterVersion >= 7) return new Set(protocol.writerFeatures ?? []);
  const implied = new Set<string>();
  for (const [name, info] of FEATURES) {
    if (info.legacy && info.legacy[1] <= protocol.minWriterVersion) implied.add(name);
  }
  return implied;
}

/** Reader features a protocol supports: its explicit list at reader 3, else those its legacy version implies. */
export function readerFeaturesOf(protocol: Protocol): Set<string> {
  if (protocol.minReaderVersion >= 3) return new Set(protocol.readerFeatures ?? []);
  return protocol.minReaderVersion >= 2 ? new Set(['columnMapping']) : new Set();
}

/** Whether `feature` is supported (listed or implied) by `protocol`, i.e. writers must honour it. */
export function isFeatureSupported(protocol: Protocol, feature: string): boolean {
  return writerFeaturesOf(protocol).has(feature) || readerFeaturesOf(protocol).has(feature);
}

/**
 * The protocol for a table with these properties and this schema: the least one that supports every
 * {@link requiredFeatures} entry, merged with `options.current` (a protocol is never downgraded; pass the
 * table's protocol when changing properties of an existing table).
 *
 * - Nothing special: `{minReaderVersion: 1, minWriterVersion: 2}` (the same as `DEFAULT_PROTOCOL`).
 * - Only legacy features: legacy versions, e.g. changeDataFeed → (1, 4), columnMapping → (2, 5).
 * - Any newer feature: writer 7 with `writerFeatures` listing every feature in use (and, when upgrading a
 *   legacy table, the features its old version implied, as Spark does); reader 3 with `readerFeatures`
 *   (the reader-writer features among them) when a reader feature is needed beyond legacy column mapping,
 *   otherwise the reader version stays 1 or 2 and `readerFeatures` is absent.
 *
 * Examples: `{'delta.enableDeletionVectors': 'true'}` → `{3, 7, readerFeatures: ['deletionVectors'],
 * writerFeatures: ['deletionVectors']}`; `{'delta.enableInCommitTimestamps': 'true'}` →
 * `{1, 7, writerFeatures: ['inCommitTimestamp']}`.
 */
export function protocolFor(
  configuration: Readonly<Record<string, string>>,
  schema: StructType,
  options: { current?: Protocol } = {},
): Protocol {
  const current = options.current;
  const needed = requiredFeatures(configuration, schema);
  const tableFeatures =
    (current?.minWriterVersion ?? 0) >= 7 || needed.some((f) => FEATURES.get(f)?.legacy === undefined);
  if (!tableFeatures) {
    let reader = Math.max(1, current?.minReaderVersion ?? 1);
    let writer = Math.max(2, current?.minWriterVersion ?? 2);
    for (const f of needed) {
      const legacy = FEATURES.get(f)?.legacy as readonly [number, number];
      reader = Math.max(reader, legacy[0]);
      writer = Math.max(writer, legacy[1]);
    }
    return { minReaderVersion: reader, minWriterVersion: writer };
  }

  // Keep what the table already lists (in its order, unknown names included), then add what is new.
  const writer: string[] = current ? [...writerFeaturesOf(current)] : [];
  const reader: string[] = current ? [...readerFeaturesOf(current)] : [];
  for (const f of needed) {
    if (!writer.includes(f)) writer.push(f);
    if (FEATURES.get(f)?.reader && !reader.includes(f)) reader.push(f);
  }
  const legacyReader = current && current.minReaderVersion < 3 ? current.minReaderVersion : 1;
  const needsReader3 = (current?.minReaderVersion ?? 1) >= 3 || reader.some((f) => f !== 'columnMapping');
  if (needsReader3) {
    return { minReaderVersion: 3, minWriterVersion: 7, readerFeatures: reader, writerFeatures: writer };
  }
  return {
    minReaderVersion: Math.max(legacyReader, reader.includes('columnMapping') ? 2 : 1),
    minWriterVersion: 7,
    writerFeatures: writer,
  };
}

function protocolError(tableRoot: string, message: string, hint: string): TributaryError {
  return new TributaryError('DELTA_PROTOCOL', `Delta table ${tableRoot}: ${message}`, { hint });
}

function tooNew(protocol: Protocol, tableRoot: string): TributaryError | undefined {
  if (protocol.minWriterVersion <= 7) return undefined;
  return protocolError(
    tableRoot,
    `requires writer version ${protocol.minWriterVersion}; Tributary writes writer versions up to 7`,
    'The table was created by a newer Delta engine; write to it with that engine.',
  );
}

export interface WriteSupportOptions {
  /**
   * Features the caller honours itself on top of {@link SUPPORTED_WRITER_FEATURES}, e.g. `columnMapping` for
   * a writer that writes physical column names. Their in-use conditions are then not checked either.
   */
  honouredFeatures?: Iterable<string>;
  /**
   * The commit's `remove`s delete every row of their files and its `add`s hold only new rows (an overwrite),
   * so its add/remove actions state the row changes exactly and a change-data-feed table needs no cdc files
   * for it, as Spark writes none for an overwrite.
   */
  wholeFileChanges?: boolean;
}

/** Columns a change feed read adds after the table's own; a table column of one of these names blocks the feed. */
export const RESERVED_CHANGE_FEED_COLUMNS = ['_change_type', '_commit_version', '_commit_timestamp'] as const;

/** Whether commits to the table must record their row changes: the property is on and the protocol has it. */
export function changeDataFeedEnabled(metadata: Metadata, protocol: Protocol): boolean {
  return (
    isEnabled(metadata.configuration, 'delta.enableChangeDataFeed') &&
    isFeatureSupported(protocol, 'changeDataFeed')
  );
}

/**
 * Refuses metadata that enables the change data feed on a table with a column the feed reserves (compared
 * case-insensitively, as Spark resolves names): the feed's rows would carry two columns of that name. Spark
 * refuses the same tables.
 *
 * @throws `DELTA_PROTOCOL` naming the columns, with `hint` (default: rename the columns or leave the feed off).
 */
export function checkChangeFeedColumns(
  metadata: Metadata,
  schema: StructType,
  tableRoot: string,
  hint?: string,
): void {
  if (!isEnabled(metadata.configuration, 'delta.enableChangeDataFeed')) return;
  const reserved = new Set<string>(RESERVED_CHANGE_FEED_COLUMNS);
  const clash = schema.fields.map((f) => f.name).filter((name) => reserved.has(name.toLowerCase()));
  if (clash.length === 0) return;
  throw new TributaryError(
    'DELTA_PROTOCOL',
    `Cannot enable the change data feed on Delta table ${tableRoot}: it has column(s) ${clash.join(', ')}, and the feed reserves ${RESERVED_CHANGE_FEED_COLUMNS.join(', ')} for the columns it adds to every change row.`,
    {
      hint:
        hint ??
        `Rename or drop the column(s) ${clash.join(', ')} first, or leave delta.enableChangeDataFeed off.`,
    },
  );
}

/**
 * The data writer's check: throws `DELTA_PROTOCOL`, naming the feature, when rows cannot be written to a table
 * with this protocol and metadata: writer version above 7, a listed (or legacy-implied) writer feature this
 * writer does not implement (rowTracking, typeWidening-preview, variantType, clustering, icebergCompat*,
 * catalogManaged, collations, unknown names, ...), or a supported-while-unused feature that is in use
 * (invariants, CHECK constraints, generated or identity columns, column mapping name/id), unless the caller
 * lists it in `options.honouredFeatures`.
 */
export function checkWriteSupport(
  protocol: Protocol,
  metadata: Metadata,
  tableRoot: string,
  options: WriteSupportOptions = {},
): void {
  const error = tooNew(protocol, tableRoot);
  if (error) throw error;
  const honoured = new Set(options.honouredFeatures ?? []);
  for (const feature of writerFeaturesOf(protocol)) {
    if (honoured.has(feature)) continue;
    const support = WRITER_SUPPORT.get(feature);
    if (support === undefined) {
      throw protocolError(
        tableRoot,
        `has writer feature '${feature}', which Tributary cannot write yet`,
        'Write to this table with an engine that supports the feature, or drop the feature from the table.',
      );
    }
    const why = support === true ? undefined : support(metadata);
    if (why !== undefined) {
      throw protocolError(
        tableRoot,
        `uses writer feature '${feature}' (${why}), which Tributary cannot enforce yet`,
        'Write to this table with an engine that supports the feature.',
      );
    }
  }
}

export interface CommitFeatureOptions {
  /** The metadata before the commit (undefined when creating the table). */
  previous?: Metadata;
  /** Also run the data writer's checks ({@link checkWriteSupport} and the change data feed rule). */
  dataWriter?: false | WriteSupportOptions;
}

function parseSchemaOf(metadata: Metadata): StructType {
  try {
    return JSON.parse(metadata.schemaString) as StructType;
  } catch {
    throw new TributaryError('INTERNAL', 'Invalid Delta commit: metaData.schemaString is not JSON');
  }
}

/**
 * Per-commit enforcement against the protocol and metadata the table will have after the commit
 * (`protocol`/`metadata` already include the commit's own changes). Always:
 *
 * - writer version at most 7;
 * - a features-relevant change (new properties or schema) must come with a protocol that supports every
 *   feature it newly needs, otherwise other engines would silently ignore e.g. `delta.appendOnly`
 *   (`INTERNAL`: derive the protocol with {@link protocolFor}); needs that predate the commit are not blamed
 *   on it;
 * - appendOnly: with `delta.appendOnly=true`, no `remove` with `dataChange: true`;
 * - deletion vectors and domain metadata may only appear when their feature is supported.
 *
 * - a metadata change that enables the change data feed on a table with a reserved column name
 *   ({@link checkChangeFeedColumns}).
 *
 * With `options.dataWriter` also {@link checkWriteSupport}, and changeDataFeed: with
 * `delta.enableChangeDataFeed=true`, a commit that both adds and removes data files (an update/merge rewrite,
 * a deletion vector update) must carry `cdc` actions, unless the writer declares `wholeFileChanges`
 * (insert-only commits and whole-file deletes need none). It is opt-in because maintenance operations
 * (RESTORE, CLONE, OPTIMIZE, property changes) honour features per operation themselves and legitimately
 * commit such rewrites without cdc files.
 */
export function checkCommitFeatures(
  protocol: Protocol,
  metadata: Metadata,
  actions: readonly Action[],
  tableRoot: string,
  options: CommitFeatureOptions = {},
): void {
  const error = tooNew(protocol, tableRoot);
  if (error) throw error;
  if (options.dataWriter) checkWriteSupport(protocol, metadata, tableRoot, options.dataWriter);
  if (actions.some((a) => 'metaData' in a))
    checkChangeFeedColumns(metadata, parseSchemaOf(metadata), tableRoot);
  if (actions.some((a) => 'protocol' in a || 'metaData' in a)) {
    const before = new Set(
      options.previous
        ? requiredFeatures(options.previous.configuration, parseSchemaOf(options.previous))
        : [],
    );
    for (const feature of requiredFeatures(metadata.configuration, parseSchemaOf(metadata))) {
      if (before.has(feature) || isFeatureSupported(protocol, feature)) continue;
      throw new TributaryError(
        'INTERNAL',
        `Invalid Delta commit to ${tableRoot}: the table properties/schema need feature '${feature}' but the protocol ${JSON.stringify(protocol)} does not support it`,
        { hint: 'Derive the protocol with protocolFor(configuration, schema, { current }).' },
      );
    }
  }
  const supported = (f: string) => isFeatureSupported(protocol, f);
  const appendOnly = supported('appendOnly') && isEnabled(metadata.configuration, 'delta.appendOnly');
  let dataAdds = false;
  let dataRemoves = false;
  let cdc = false;
  for (const action of actions) {
    if ('add' in action) {
      dataAdds ||= action.add.dataChange;
      if (action.add.deletionVector && !supported('deletionVectors')) {
        throw protocolError(
          tableRoot,
          `cannot add ${action.add.path} with a deletion vector: the protocol does not support deletionVectors`,
          'Enable deletion vectors (delta.enableDeletionVectors and protocolFor) first.',
        );
      }
    } else if ('remove' in action) {
      dataRemoves ||= action.remove.dataChange;
      if (action.remove.dataChange && appendOnly) {
        throw protocolError(
          tableRoot,
          `is append-only (delta.appendOnly=true): cannot remove ${action.remove.path}`,
          'Only appends are allowed on this table; unset delta.appendOnly to update or delete.',
        );
      }
    } else if ('cdc' in action) {
      cdc = true;
    } else if ('domainMetadata' in action && !supported('domainMetadata')) {
      throw protocolError(
        tableRoot,
        `cannot write domain metadata '${action.domainMetadata.domain}': the protocol does not support domainMetadata`,
        'Add the domainMetadata writer feature to the protocol first.',
      );
    }
  }
  if (
    options.dataWriter &&
    options.dataWriter.wholeFileChanges !== true &&
    dataAdds &&
    dataRemoves &&
    !cdc &&
    supported('changeDataFeed') &&
    isEnabled(metadata.configuration, 'delta.enableChangeDataFeed')
  ) {
    throw protocolError(
      tableRoot,
      'has the change data feed enabled, and this commit rewrites data files without cdc actions',
      'Write _change_data files (cdc actions) for updates and merges on this table, or disable delta.enableChangeDataFeed.',
    );
  }
}
