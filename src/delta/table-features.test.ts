/**
 * Protocol selection for new tables (`protocolFor`), the data writer's feature check (`checkWriteSupport`)
 * and the per-commit feature rules `commit` enforces.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AddFile, Metadata, Protocol } from './actions.js';
import { commit, DEFAULT_PROTOCOL, newTableActions, newTableMetadata } from './commit.js';
import type { StructType } from './schema.js';
import { loadSnapshot } from './snapshot.js';
import { checkWriteSupport, protocolFor, requiredFeatures, writerFeaturesOf } from './table-features.js';

const schema: StructType = {
  type: 'struct',
  fields: [
    { name: 'id', type: 'long', nullable: false, metadata: {} },
    { name: 'name', type: 'string', nullable: true, metadata: {} },
  ],
};
const ntzSchema: StructType = {
  type: 'struct',
  fields: [
    {
      name: 'events',
      type: { type: 'array', elementType: 'timestamp_ntz', containsNull: true },
      nullable: true,
      metadata: {},
    },
  ],
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tributary-features-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function add(p: string, extra: Partial<AddFile> = {}): AddFile {
  return { path: p, partitionValues: {}, size: 1, modificationTime: 0, dataChange: true, ...extra };
}

describe('protocolFor', () => {
  const cases: Array<[string, Record<string, string>, StructType, Protocol]> = [
    ['no features: readable by every engine', {}, schema, { minReaderVersion: 1, minWriterVersion: 2 }],
    [
      'deletion vectors: a reader+writer table feature',
      { 'delta.enableDeletionVectors': 'true' },
      schema,
      {
        minReaderVersion: 3,
        minWriterVersion: 7,
        readerFeatures: ['deletionVectors'],
        writerFeatures: ['deletionVectors'],
      },
    ],
    [
      'change data feed alone stays legacy writer 4',
      { 'delta.enableChangeDataFeed': 'true' },
      schema,
      { minReaderVersion: 1, minWriterVersion: 4 },
    ],
    [
      'change data feed with deletion vectors becomes a listed writer feature',
      { 'delta.enableChangeDataFeed': 'true', 'delta.enableDeletionVectors': 'true' },
      schema,
      {
        minReaderVersion: 3,
        minWriterVersion: 7,
        readerFeatures: ['deletionVectors'],
        writerFeatures: ['changeDataFeed', 'deletionVectors'],
      },
    ],
    [
      'a nested timestamp_ntz column',
      {},
      ntzSchema,
      {
        minReaderVersion: 3,
        minWriterVersion: 7,
        readerFeatures: ['timestampNtz'],
        writerFeatures: ['timestampNtz'],
      },
    ],
    [
      'in-commit timestamps are writer-only',
      { 'delta.enableInCommitTimestamps': 'true' },
      schema,
      { minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['inCommitTimestamp'] },
    ],
    [
      'v2 checkpoint policy',
      { 'delta.checkpointPolicy': 'v2' },
      schema,
      {
        minReaderVersion: 3,
        minWriterVersion: 7,
        readerFeatures: ['v2Checkpoint'],
        writerFeatures: ['v2Checkpoint'],
      },
    ],
    [
      'appendOnly is legacy writer 2',
      { 'delta.appendOnly': 'true' },
      schema,
      { minReaderVersion: 1, minWriterVersion: 2 },
    ],
    [
      'column mapping alone stays legacy (2, 5)',
      { 'delta.columnMapping.mode': 'name' },
      schema,
      { minReaderVersion: 2, minWriterVersion: 5 },
    ],
    [
      'appendOnly listed once writer 7 is needed anyway',
      { 'delta.appendOnly': 'true', 'delta.enableInCommitTimestamps': 'true' },
      schema,
      { minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['appendOnly', 'inCommitTimestamp'] },
    ],
  ];
  for (const [name, configuration, s, expected] of cases) {
    it(name, () => {
      expect(protocolFor(configuration, s)).toEqual(expected);
    });
  }

  it('upgrades a legacy table listing the features its old version implied, as Spark does', () => {
    expect(
      protocolFor({ 'delta.enableDeletionVectors': 'true' }, schema, { current: DEFAULT_PROTOCOL }),
    ).toEqual({
      minReaderVersion: 3,
      minWriterVersion: 7,
      readerFeatures: ['deletionVectors'],
      writerFeatures: ['appendOnly', 'invariants', 'deletionVectors'],
    });
    expect(
      protocolFor({ 'delta.enableDeletionVectors': 'true' }, schema, {
        current: { minReaderVersion: 2, minWriterVersion: 5 },
      }),
    ).toMatchObject({ minReaderVersion: 3, readerFeatures: ['columnMapping', 'deletionVectors'] });
  });

  it('never downgrades and keeps features it does not know', () => {
    const current: Protocol = {
      minReaderVersion: 3,
      minWriterVersion: 7,
      readerFeatures: ['deletionVectors'],
      writerFeatures: ['deletionVectors', 'someFutureFeature'],
    };
    expect(protocolFor({}, schema, { current })).toEqual(current);
    expect(protocolFor({}, schema, { current: { minReaderVersion: 1, minWriterVersion: 4 } })).toEqual({
      minReaderVersion: 1,
      minWriterVersion: 4,
    });
  });

  it('lists what generated, identity, invariant and constraint columns need', () => {
    const rich: StructType = {
      type: 'struct',
      fields: [
        { name: 'a', type: 'long', nullable: true, metadata: { 'delta.generationExpression': 'b + 1' } },
        { name: 'b', type: 'long', nullable: true, metadata: { 'delta.identity.start': 1 } },
        {
          name: 'c',
          type: 'long',
          nullable: true,
          metadata: { 'delta.invariants': '{"expression":{"expression":"c > 0"}}' },
        },
      ],
    };
    expect(requiredFeatures({ 'delta.constraints.positive': 'a > 0' }, rich)).toEqual([
      'invariants',
      'checkConstraints',
      'generatedColumns',
      'identityColumns',
    ]);
    expect(protocolFor({}, rich)).toEqual({ minReaderVersion: 1, minWriterVersion: 6 });
  });

  it('newTableActions creates a table with the chosen protocol', async () => {
    const root = path.join(dir, 'dv-table');
    const actions = newTableActions(schema, { configuration: { 'delta.enableDeletionVectors': 'true' } });
    await commit(root, -1, actions, { operation: 'CREATE TABLE' });
    expect((await loadSnapshot(root)).protocol).toEqual(actions[0].protocol);
  });
});

describe('checkWriteSupport', () => {
  const metadata = (configuration: Record<string, string> = {}, s: StructType = schema): Metadata =>
    newTableMetadata(s, { configuration });
  const refuses = (protocol: Protocol, m: Metadata, feature: string) =>
    expect(() => checkWriteSupport(protocol, m, '/t')).toThrow(
      expect.objectContaining({ code: 'DELTA_PROTOCOL', message: expect.stringContaining(`'${feature}'`) }),
    );

  it('accepts the features Tributary implements', () => {
    for (const protocol of [
      DEFAULT_PROTOCOL,
      { minReaderVersion: 1, minWriterVersion: 4 },
      protocolFor(
        { 'delta.enableDeletionVectors': 'true', 'delta.enableInCommitTimestamps': 'true' },
        ntzSchema,
      ),
      {
        minReaderVersion: 3,
        minWriterVersion: 7,
        readerFeatures: ['v2Checkpoint', 'vacuumProtocolCheck'],
        writerFeatures: ['v2Checkpoint', 'vacuumProtocolCheck', 'domainMetadata'],
      },
    ]) {
      expect(() => checkWriteSupport(protocol, metadata(), '/t')).not.toThrow();
    }
  });

  it('names the writer feature it cannot write', () => {
    const listing = (f: string): Protocol => ({
      minReaderVersion: 1,
      minWriterVersion: 7,
      writerFeatures: ['appendOnly', f],
    });
    for (const f of [
      'rowTracking',
      'clustering',
      'icebergCompatV2',
      'typeWidening-preview',
      'variantType',
      'madeUpFeature',
    ]) {
      refuses(listing(f), metadata(), f);
    }
    expect(() => checkWriteSupport({ minReaderVersion: 1, minWriterVersion: 8 }, metadata(), '/t')).toThrow(
      expect.objectContaining({
        code: 'DELTA_PROTOCOL',
        message: expect.stringContaining('writer version 8'),
      }),
    );
  });

  it('refuses supported-while-unused features once they are used, unless the caller honours them', () => {
    refuses(
      { minReaderVersion: 2, minWriterVersion: 5 },
      metadata({ 'delta.columnMapping.mode': 'name' }),
      'columnMapping',
    );
    refuses(
      { minReaderVersion: 1, minWriterVersion: 3 },
      metadata({ 'delta.constraints.x': 'id > 0' }),
      'checkConstraints',
    );
    const withInvariant: StructType = {
      type: 'struct',
      fields: [{ name: 'id', type: 'long', nullable: true, metadata: { 'delta.invariants': '{}' } }],
    };
    refuses(DEFAULT_PROTOCOL, metadata({}, withInvariant), 'invariants');
    expect(() =>
      checkWriteSupport(
        { minReaderVersion: 2, minWriterVersion: 5 },
        metadata({ 'delta.columnMapping.mode': 'id' }),
        '/t',
        {
          honouredFeatures: ['columnMapping'],
        },
      ),
    ).not.toThrow();
    // Column mapping listed but mode none: nothing to honour.
    expect(() =>
      checkWriteSupport({ minReaderVersion: 2, minWriterVersion: 5 }, metadata(), '/t'),
    ).not.toThrow();
  });

  it('derives legacy features from writer versions', () => {
    expect([...writerFeaturesOf({ minReaderVersion: 2, minWriterVersion: 5 })]).toEqual([
      'appendOnly',
      'invariants',
      'checkConstraints',
      'changeDataFeed',
      'generatedColumns',
      'columnMapping',
    ]);
  });
});

describe('commit enforces table features', () => {
  async function table(
    name: string,
    configuration: Record<string, string>,
    protocol?: Protocol,
  ): Promise<string> {
    const root = path.join(dir, name);
    const [p, metaData] = newTableActions(schema, { configuration });
    await commit(root, -1, [protocol ? { protocol } : p, metaData, { add: add('a.parquet') }], {
      operation: 'CREATE TABLE',
    });
    return root;
  }
  const remove = (p: string, dataChange: boolean) => ({
    remove: { path: p, dataChange, deletionTimestamp: 1 },
  });

  it('appendOnly: refuses data removes, allows compaction removes and appends', async () => {
    const root = await table('append-only', { 'delta.appendOnly': 'true' });
    await expect(commit(root, 0, [remove('a.parquet', true)], { operation: 'DELETE' })).rejects.toMatchObject(
      {
        code: 'DELTA_PROTOCOL',
        message: expect.stringContaining('append-only'),
      },
    );
    await commit(root, 0, [{ add: add('b.parquet') }], { operation: 'WRITE' });
    await commit(root, 1, [remove('a.parquet', false), { add: add('c.parquet', { dataChange: false }) }], {
      operation: 'OPTIMIZE',
    });
  });

  it('changeDataFeed: data writers must write cdc files for rewrites', async () => {
    const root = await table('cdf', { 'delta.enableChangeDataFeed': 'true' });
    const rewrite = [remove('a.parquet', true), { add: add('b.parquet') }];
    await expect(
      commit(root, 0, rewrite, { operation: 'MERGE' }, { checkWriteSupport: true }),
    ).rejects.toMatchObject({ code: 'DELTA_PROTOCOL', message: expect.stringContaining('cdc') });
    // Whole-file deletes and inserts need none; with cdc actions the rewrite is fine.
    await commit(root, 0, [{ add: add('c.parquet') }], { operation: 'WRITE' }, { checkWriteSupport: true });
    const withCdc = [
      ...rewrite,
      { cdc: { path: '_change_data/x.parquet', partitionValues: {}, size: 1, dataChange: false } },
    ];
    await commit(root, 1, withCdc, { operation: 'MERGE' }, { checkWriteSupport: true });
    // An overwrite's removes and adds state its change exactly: the writer says so, and needs no cdc.
    await commit(
      root,
      2,
      [remove('b.parquet', true), { add: add('d.parquet') }],
      { operation: 'WRITE' },
      { checkWriteSupport: { wholeFileChanges: true } },
    );
  });

  it('changeDataFeed: refuses the feed on a table with a column it reserves, case-insensitively', async () => {
    const root = await table('cdf-reserved', {});
    const snapshot = await loadSnapshot(root);
    for (const column of ['_commit_timestamp', '_Change_Type', '_commit_version']) {
      const schema = JSON.parse(snapshot.metadata.schemaString) as { fields: unknown[] };
      const metaData = {
        ...snapshot.metadata,
        schemaString: JSON.stringify({
          ...schema,
          fields: [...schema.fields, { name: column, type: 'long', nullable: true, metadata: {} }],
        }),
        configuration: { 'delta.enableChangeDataFeed': 'true' },
      };
      await expect(
        commit(root, 0, [{ protocol: { minReaderVersion: 1, minWriterVersion: 4 } }, { metaData }], {
          operation: 'SET TBLPROPERTIES',
        }),
      ).rejects.toMatchObject({ code: 'DELTA_PROTOCOL', message: expect.stringContaining(column) });
    }
  });

  it('refuses a data write to a table with an unimplemented writer feature, naming it', async () => {
    const root = await table(
      'row-tracking',
      {},
      { minReaderVersion: 1, minWriterVersion: 7, writerFeatures: ['rowTracking', 'domainMetadata'] },
    );
    await expect(
      commit(root, 0, [{ add: add('b.parquet') }], { operation: 'WRITE' }, { checkWriteSupport: true }),
    ).rejects.toMatchObject({ code: 'DELTA_PROTOCOL', message: expect.stringContaining("'rowTracking'") });
    // Without the data writer's check (maintenance operations gate features themselves) the commit goes through.
    await commit(root, 0, [], { operation: 'SET TBLPROPERTIES' });
  });

  it('refuses property changes whose features the protocol lacks, and DVs without the feature', async () => {
    const root = await table('plain', {});
    const snapshot = await loadSnapshot(root);
    const enableDv = { ...snapshot.metadata, configuration: { 'delta.enableDeletionVectors': 'true' } };
    await expect(
      commit(root, 0, [{ metaData: enableDv }], { operation: 'SET TBLPROPERTIES' }),
    ).rejects.toMatchObject({
      code: 'INTERNAL',
      message: expect.stringContaining("'deletionVectors'"),
    });
    const dv = {
      storageType: 'u',
      pathOrInlineDv: 'ab^-aqEH.-t@S}K{vb[*k^',
      offset: 1,
      sizeInBytes: 36,
      cardinality: 2,
    };
    await expect(
      commit(root, 0, [remove('a.parquet', true), { add: add('a.parquet', { deletionVector: dv }) }], {
        operation: 'DELETE',
      }),
    ).rejects.toMatchObject({ code: 'DELTA_PROTOCOL', message: expect.stringContaining('deletionVectors') });
    const protocol = protocolFor(enableDv.configuration, snapshot.schema, { current: snapshot.protocol });
    await commit(root, 0, [{ protocol }, { metaData: enableDv }], { operation: 'SET TBLPROPERTIES' });
    expect((await loadSnapshot(root)).protocol.writerFeatures).toContain('deletionVectors');
  });
});
