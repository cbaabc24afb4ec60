/**
 * `ALTER TABLE ... SET / UNSET TBLPROPERTIES`: a `metaData` commit with the new `configuration`.
 *
 * Keys outside `delta.` are free-form and stored as given (`comment` sets the table description, as in Spark).
 * `delta.` keys are checked, as Spark does: an unknown one is refused, and a value must have the right form
 * (booleans are stored lower-case). Properties that switch on a feature Tributary's writers do not implement
 * (column mapping, row tracking, ...) are refused, because a table that claims a feature its writers ignore
 * is silently wrong for every reader. Deletion vectors and the change data feed are implemented: turning
 * them on upgrades the protocol.
 */
import { TributaryError } from '../../core/errors.js';
import type { Action, Metadata } from '../actions.js';
import { commitWithRetry } from '../commit.js';
import { protocolFor } from '../table-features.js';
import { parseInterval } from '../table-properties.js';
import { parseByteSize } from './table-config.js';
import { checkWriteSupport } from './write-support.js';

type Kind = 'boolean' | 'interval' | 'bytes' | 'int' | 'string' | 'isolation' | 'autoCompact';

interface KnownProperty {
  readonly key: string;
  readonly kind: Kind;
  /** Values (lower-case) that are refused, with the reason; `*` refuses every value. */
  readonly refuse?: { readonly values: readonly string[]; readonly why: string };
}

const NOT_WRITTEN = 'Tributary does not write tables with this feature yet';

const KNOWN: readonly KnownProperty[] = [
  { key: 'delta.appendOnly', kind: 'boolean' },
  { key: 'delta.autoOptimize.optimizeWrite', kind: 'boolean' },
  { key: 'delta.autoOptimize.autoCompact', kind: 'autoCompact' },
  { key: 'delta.targetFileSize', kind: 'bytes' },
  { key: 'delta.tuneFileSizesForRewrites', kind: 'boolean' },
  { key: 'delta.deletedFileRetentionDuration', kind: 'interval' },
  { key: 'delta.logRetentionDuration', kind: 'interval' },
  { key: 'delta.enableExpiredLogCleanup', kind: 'boolean' },
  { key: 'delta.setTransactionRetentionDuration', kind: 'interval' },
  { key: 'delta.checkpointInterval', kind: 'int' },
  { key: 'delta.checkpoint.writeStatsAsJson', kind: 'boolean' },
  { key: 'delta.checkpoint.writeStatsAsStruct', kind: 'boolean' },
  { key: 'delta.dataSkippingNumIndexedCols', kind: 'int' },
  { key: 'delta.dataSkippingStatsColumns', kind: 'string' },
  { key: 'delta.isolationLevel', kind: 'isolation' },
  { key: 'delta.randomizeFilePrefixes', kind: 'boolean' },
  { key: 'delta.randomPrefixLength', kind: 'int' },
  // Honoured by the bronze merges, which write _change_data files for the rows they change (appends and
  // overwrites need none); the commit refuses it on a table with a column the feed reserves.
  { key: 'delta.enableChangeDataFeed', kind: 'boolean' },
  // Every writer here honours deletion vectors (bronze merge writes them; OPTIMIZE, VACUUM, RESTORE and CLONE
  // keep them), so switching them on upgrades the protocol to reader 3 / writer 7 with `deletionVectors`.
  { key: 'delta.enableDeletionVectors', kind: 'boolean' },
  { key: 'delta.enableRowTracking', kind: 'boolean', refuse: { values: ['true'], why: NOT_WRITTEN } },
  { key: 'delta.enableInCommitTimestamps', kind: 'boolean', refuse: { values: ['true'], why: NOT_WRITTEN } },
  // Honoured by the bronze merge, the one writer that changes column types (src/delta/type-widening.ts).
  { key: 'delta.enableTypeWidening', kind: 'boolean' },
  { key: 'delta.columnMapping.mode', kind: 'string', refuse: { values: ['name', 'id'], why: NOT_WRITTEN } },
  { key: 'delta.checkpointPolicy', kind: 'string', refuse: { values: ['v2'], why: NOT_WRITTEN } },
  {
    key: 'delta.minReaderVersion',
    kind: 'int',
    refuse: { values: ['*'], why: 'protocol upgrades are not supported yet' },
  },
  {
    key: 'delta.minWriterVersion',
    kind: 'int',
    refuse: { values: ['*'], why: 'protocol upgrades are not supported yet' },
  },
  {
    key: 'delta.compatibility.symlinkFormatManifest.enabled',
    kind: 'boolean',
    refuse: { values: ['true'], why: 'Tributary does not generate symlink manifests' },
  },
];

const BY_KEY = new Map(KNOWN.map((p) => [p.key.toLowerCase(), p]));

function invalid(key: string, value: string, expected: string): TributaryError {
  return new TributaryError(
    'SQL_ERROR',
    `Invalid value '${value}' for table property ${key}: expected ${expected}`,
  );
}

/**
 * Checks one property and returns it as stored (canonical key case, normalised value).
 * @throws `SQL_ERROR` for an unknown `delta.` key or a malformed value; `DELTA_PROTOCOL` for a refused feature.
 */
export function normaliseTableProperty(key: string, value: string): [string, string] {
  if (!key.toLowerCase().startsWith('delta.')) return [key, value];
  const known = BY_KEY.get(key.toLowerCase());
  if (!known) {
    throw new TributaryError('SQL_ERROR', `Unknown table property ${key}`, {
      hint: `Known delta.* properties: ${KNOWN.filter((p) => !p.refuse)
        .map((p) => p.key)
        .join(', ')}. Properties outside delta.* are stored as given.`,
    });
  }
  const v = value.trim();
  let stored = v;
  switch (known.kind) {
    case 'boolean':
      if (!/^(true|false)$/i.test(v)) throw invalid(known.key, value, 'true or false');
      stored = v.toLowerCase();
      break;
    case 'autoCompact':
      if (!/^(true|false|auto|legacy)$/i.test(v))
        throw invalid(known.key, value, 'true, false, auto or legacy');
      stored = v.toLowerCase();
      break;
    case 'interval':
      if (parseInterval(v) === undefined)
        throw invalid(known.key, value, 'an interval such as "interval 7 days"');
      break;
    case 'bytes':
      if (parseByteSize(v) === undefined)
        throw invalid(known.key, value, 'a byte size such as "128mb" or "134217728"');
      break;
    case 'int':
      if (!/^-?\d+$/.test(v)) throw invalid(known.key, value, 'an integer');
      if (known.key === 'delta.checkpointInterval' && Number(v) <= 0)
        throw invalid(known.key, value, 'a positive integer');
      if (known.key === 'delta.dataSkippingNumIndexedCols' && Number(v) < -1)
        throw invalid(known.key, value, '-1 or more');
      break;
    case 'isolation':
      if (!/^(Serializable|WriteSerializable)$/.test(v))
        throw invalid(known.key, value, 'Serializable or WriteSerializable');
      break;
    case 'string':
      break;
  }
  if (
    known.refuse &&
    (known.refuse.values.includes('*') || known.refuse.values.includes(stored.toLowerCase()))
  ) {
    throw new TributaryError(
      'DELTA_PROTOCOL',
      `Table property ${known.key} = '${value}' is not supported: ${known.refuse.why}`,
    );
  }
  return [known.key, stored];
}

export interface PropertiesResult {
  readonly tableRoot: string;
  /** The new version, or null when nothing changed (no commit then). */
  readonly version: number | null;
}

/** Thrown out of `build` when the change leaves the metadata as it is (no commit then). */
class Unchanged extends Error {}

async function updateMetadata(
  tableRoot: string,
  operation: 'SET TBLPROPERTIES' | 'UNSET TBLPROPERTIES',
  operationParameters: Record<string, unknown>,
  change: (metadata: Metadata) => Metadata,
): Promise<PropertiesResult> {
  let root = tableRoot;
  try {
    const result = await commitWithRetry(
      tableRoot,
      async (snapshot) => {
        if (!snapshot) throw new TributaryError('DELTA_TABLE_NOT_FOUND', `No Delta table at ${tableRoot}`);
        root = snapshot.tableRoot;
        checkWriteSupport(snapshot, operation);
        const next = change(snapshot.metadata);
        if (JSON.stringify(next) === JSON.stringify(snapshot.metadata)) throw new Unchanged();
        // A property may need a table feature (delta.appendOnly on a writer-7 table): upgrade, never downgrade.
        const protocol = protocolFor(next.configuration, snapshot.schema, { current: snapshot.protocol });
        const actions: Action[] = [{ metaData: next }];
        if (JSON.stringify(protocol) !== JSON.stringify(snapshot.protocol)) actions.unshift({ protocol });
        return { actions, request: { operation, operationParameters, isBlindAppend: false } };
      },
      { checkWriteSupport: false },
    );
    return { tableRoot: root, version: result.version };
  } catch (error) {
    if (error instanceof Unchanged) return { tableRoot: root, version: null };
    throw error;
  }
}

/** Sets table properties (see the module comment for what is checked). */
export async function setTableProperties(
  tableRoot: string,
  properties: Readonly<Record<string, string>>,
): Promise<PropertiesResult> {
  const normalised = Object.fromEntries(
    Object.entries(properties).map(([k, v]) => normaliseTableProperty(k, v)),
  );
  return updateMetadata(tableRoot, 'SET TBLPROPERTIES', { properties: normalised }, (metadata) => {
    const next: Metadata = { ...metadata, configuration: { ...metadata.configuration } };
    for (const [key, value] of Object.entries(normalised)) {
      if (key.toLowerCase() === 'comment') next.description = value;
      else next.configuration[key] = value;
    }
    return next;
  });
}

/**
 * Removes table properties. A key that is not set is an error unless `ifExists` (`UNSET TBLPROPERTIES IF
 * EXISTS`), as in Spark.
 */
export async function unsetTableProperties(
  tableRoot: string,
  keys: readonly string[],
  options: { ifExists?: boolean } = {},
): Promise<PropertiesResult> {
  return updateMetadata(
    tableRoot,
    'UNSET TBLPROPERTIES',
    { properties: keys, ifExists: options.ifExists ?? false },
    (metadata) => {
      const next: Metadata = { ...metadata, configuration: { ...metadata.configuration } };
      for (const key of keys) {
        if (key.toLowerCase() === 'comment') {
          delete next.description;
          continue;
        }
        const actual = Object.keys(next.configuration).find((k) => k.toLowerCase() === key.toLowerCase());
        if (actual === undefined) {
          if (options.ifExists) continue;
          throw new TributaryError(
            'SQL_ERROR',
            `Cannot unset table property ${key}: it is not set on ${tableRoot}`,
            {
              hint: 'Use UNSET TBLPROPERTIES IF EXISTS to ignore properties that are not set.',
            },
          );
        }
        delete next.configuration[actual];
      }
      return next;
    },
  );
}
