/**
 * Optimistic concurrency: the conflict rules of `commitWithRetry` on races staged deterministically (the
 * winner is committed from inside `build`), then real concurrency — several OS processes appending and
 * rewriting (MERGE-like read-modify-write) one table with real Parquet files — checked for lost commits, lost
 * updates, gaps in the log and readability.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Action, AddFile, RawAction } from './actions.js';
import { commit, commitFileName, commitWithRetry, newTableActions, type TransactionPlan } from './commit.js';
import { checkConflict } from './conflict-checker.js';
import { sqlString, withConnection } from './duckdb.js';
import type { StructType } from './schema.js';
import { loadSnapshot, type Snapshot } from './snapshot.js';

const schema: StructType = {
  type: 'struct',
  fields: [
    { name: 'id', type: 'long', nullable: false, metadata: {} },
    { name: 'val', type: 'long', nullable: true, metadata: {} },
  ],
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'tributary-concurrency-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function add(p: string, extra: Partial<AddFile> = {}): AddFile {
  return { path: p, partitionValues: {}, size: 1, modificationTime: 0, dataChange: true, ...extra };
}
const remove = (p: string): Action => ({
  remove: { path: p, dataChange: true, deletionTimestamp: Date.now() },
});
const files = (s: Snapshot | null) => (s?.files ?? []).map((f) => f.path).sort();

/** A table at version 1 holding files a and b. */
async function table(name: string, configuration: Record<string, string> = {}): Promise<string> {
  const root = path.join(dir, name);
  await commit(root, -1, newTableActions(schema, { configuration }), { operation: 'CREATE TABLE' });
  await commit(root, 0, [{ add: add('a') }, { add: add('b') }], { operation: 'WRITE' });
  return root;
}

/** A `build` that commits `winner` (as another writer would) the first time it runs, then plans `plan(snapshot)`. */
function racing(
  root: string,
  winner: { actions: Action[]; isBlindAppend?: boolean },
  plan: (snapshot: Snapshot | null, call: number) => TransactionPlan,
) {
  const seen: Array<Snapshot | null> = [];
  const build = async (snapshot: Snapshot | null) => {
    seen.push(snapshot);
    if (seen.length === 1) {
      await commit(root, snapshot?.version ?? -1, winner.actions, {
        operation: 'WRITE',
        ...(winner.isBlindAppend === undefined ? {} : { isBlindAppend: winner.isBlindAppend }),
      });
    }
    return plan(snapshot, seen.length);
  };
  return { build, seen };
}

describe('commitWithRetry conflict rules', () => {
  it('moves a blind append past a concurrent blind append without rebuilding it', async () => {
    const root = await table('blind');
    const { build } = racing(root, { actions: [{ add: add('theirs') }] }, () => ({
      actions: [{ add: add('ours') }],
      request: { operation: 'WRITE' },
    }));
    expect(await commitWithRetry(root, build)).toEqual({ version: 3, attempts: 2, builds: 1 });
    expect(files(await loadSnapshot(root))).toEqual(['a', 'b', 'ours', 'theirs']);
    const info = JSON.parse(
      (await readFile(path.join(root, '_delta_log', commitFileName(3)), 'utf8')).split('\n')[0] as string,
    );
    expect(info.commitInfo).toMatchObject({
      readVersion: 1,
      isolationLevel: 'WriteSerializable',
      isBlindAppend: true,
    });
  });

  it('fails at once when the winner committed a txn for the same application', async () => {
    const root = await table('txn');
    const { build, seen } = racing(root, { actions: [{ txn: { appId: 'pipeline-1', version: 7 } }] }, () => ({
      actions: [{ add: add('ours') }, { txn: { appId: 'pipeline-1', version: 7 } }],
      request: { operation: 'WRITE' },
    }));
    await expect(commitWithRetry(root, build)).rejects.toMatchObject({
      code: 'DELTA_CONFLICT',
      retry: 'transient',
      message: expect.stringContaining("transaction for application 'pipeline-1'"),
    });
    expect(seen).toHaveLength(1);
    // Another application's txn is no conflict.
    const other = racing(root, { actions: [{ txn: { appId: 'pipeline-2', version: 1 } }] }, () => ({
      actions: [{ txn: { appId: 'pipeline-1', version: 8 } }],
      request: { operation: 'WRITE' },
    }));
    expect((await commitWithRetry(root, other.build)).builds).toBe(1);
  });

  it('fails when the winner changed the metadata or the protocol', async () => {
    const root = await table('metadata');
    const snapshot = await loadSnapshot(root);
    const metaData = { ...snapshot.metadata, description: 'changed' };
    const { build } = racing(root, { actions: [{ metaData }] }, () => ({
      actions: [{ add: add('ours') }],
      request: { operation: 'WRITE' },
    }));
    await expect(commitWithRetry(root, build)).rejects.toMatchObject({
      code: 'DELTA_CONFLICT',
      message: expect.stringContaining('changed the table metadata'),
    });
  });

  it('rebuilds when the winner removed a file this commit also removes (delete-delete)', async () => {
    const root = await table('delete-delete');
    const { build, seen } = racing(
      root,
      { actions: [remove('a'), { add: add('a-compacted', { dataChange: false }) }] },
      (s) => ({
        // A MERGE rewriting whichever of a/a-compacted holds its row.
        actions: s?.files.some((f) => f.path === 'a')
          ? [remove('a'), { add: add('a-merged') }]
          : [remove('a-compacted'), { add: add('a-merged-2') }],
        request: { operation: 'MERGE', isBlindAppend: false },
      }),
    );
    const result = await commitWithRetry(root, build);
    expect(result).toMatchObject({ version: 3, builds: 2 });
    expect(seen[1]?.version).toBe(2);
    expect(files(await loadSnapshot(root))).toEqual(['a-merged-2', 'b']);
  });

  it('rebuilds when a file it read was removed, and moves on when an unread one was', async () => {
    const root = await table('delete-read');
    const plan = (): TransactionPlan => ({
      actions: [{ add: add(`derived-${Math.random()}`) }],
      request: { operation: 'WRITE', isBlindAppend: false },
      readSet: { files: ['b'] },
    });
    const unread = racing(root, { actions: [remove('a')] }, plan);
    expect((await commitWithRetry(root, unread.build)).builds).toBe(1);
    const read = racing(root, { actions: [remove('b')] }, plan);
    expect((await commitWithRetry(root, read.build)).builds).toBe(2);
  });

  it('counts concurrent appends the read predicate matches, ignoring blind ones under WriteSerializable', async () => {
    const root = await table('appends');
    const eu = (p: string) => add(p, { partitionValues: { region: 'eu' } });
    const us = (p: string) => add(p, { partitionValues: { region: 'us' } });
    const plan = (isolationLevel?: 'Serializable') => (): TransactionPlan => ({
      actions: [{ add: eu(`merge-${Math.random()}`) }],
      request: { operation: 'MERGE', isBlindAppend: false },
      readSet: { predicate: (f) => f.partitionValues['region'] === 'eu' },
      ...(isolationLevel ? { isolationLevel } : {}),
    });
    const builds = async (winner: AddFile, isBlindAppend: boolean, isolation?: 'Serializable') =>
      (
        await commitWithRetry(
          root,
          racing(root, { actions: [{ add: winner }], isBlindAppend }, plan(isolation)).build,
        )
      ).builds;
    expect(await builds(us('w1'), false)).toBe(1);
    expect(await builds(eu('w2'), false)).toBe(2);
    expect(await builds(eu('w3'), true)).toBe(1);
    expect(await builds(eu('w4'), true, 'Serializable')).toBe(2);
  });

  it('gives up with DELTA_CONFLICT after maxAttempts', async () => {
    const root = await table('starved');
    let n = 0;
    const build = async (s: Snapshot | null): Promise<TransactionPlan> => {
      await commit(root, s?.version ?? -1, [{ add: add(`theirs-${n++}`) }], {
        operation: 'WRITE',
        isBlindAppend: false,
      });
      return {
        actions: [{ add: add(`ours-${n}`) }],
        request: { operation: 'MERGE' },
        readSet: { wholeTable: true },
      };
    };
    await expect(commitWithRetry(root, build, { maxAttempts: 3 })).rejects.toMatchObject({
      code: 'DELTA_CONFLICT',
      message: expect.stringContaining('gave up after 3 attempts'),
    });
    expect(n).toBe(3);
  });

  it('rebuilds a table creation that lost the race on the table the winner created', async () => {
    const root = path.join(dir, 'create-race');
    const { build, seen } = racing(
      root,
      { actions: [...newTableActions(schema), { add: add('theirs') }] },
      (s) => ({
        actions: s ? [{ add: add('ours') }] : [...newTableActions(schema), { add: add('ours') }],
        request: { operation: s ? 'WRITE' : 'CREATE TABLE' },
      }),
    );
    expect(await commitWithRetry(root, build)).toMatchObject({ version: 1, builds: 2 });
    expect(seen.map((s) => s?.version ?? null)).toEqual([null, 0]);
    expect(files(await loadSnapshot(root))).toEqual(['ours', 'theirs']);
  });

  it('refuses tables a data writer cannot write before building', async () => {
    const root = path.join(dir, 'row-tracking');
    const [, metaData] = newTableActions(schema);
    await commit(
      root,
      -1,
      [
        {
          protocol: {
            minReaderVersion: 1,
            minWriterVersion: 7,
            writerFeatures: ['rowTracking', 'domainMetadata'],
          },
        },
        metaData,
      ],
      {
        operation: 'CREATE TABLE',
      },
    );
    let built = false;
    const build = async (): Promise<TransactionPlan> => {
      built = true;
      return { actions: [], request: { operation: 'WRITE' } };
    };
    await expect(commitWithRetry(root, build)).rejects.toMatchObject({
      code: 'DELTA_PROTOCOL',
      message: expect.stringContaining("'rowTracking'"),
    });
    expect(built).toBe(false);
  });
});

describe('checkConflict', () => {
  const winner = (actions: RawAction[]) => ({ version: 5, actions });
  it('does not treat compaction removes as changed reads, but as delete-delete', () => {
    const compaction: RawAction[] = [
      { commitInfo: { isBlindAppend: false } },
      { remove: { path: 'a', dataChange: false } },
      { add: { path: 'c', dataChange: false } },
    ];
    expect(checkConflict('/t', { actions: [], readSet: { wholeTable: true } }, winner(compaction))).toEqual({
      kind: 'none',
    });
    expect(
      checkConflict('/t', { actions: [remove('a')], readSet: { files: ['a'] } }, winner(compaction)),
    ).toMatchObject({
      kind: 'rebuild',
      reason: expect.stringContaining('also removed a'),
    });
  });
  it('compares paths in their canonical form', () => {
    const w = winner([{ remove: { path: 'x%20y/f.parquet', dataChange: true } }]);
    expect(
      checkConflict('/t', { actions: [], readSet: { files: ['file:///t/x%20y/f.parquet'] } }, w).kind,
    ).toBe('rebuild');
  });
  it('treats a commit that changes metadata as having read everything', () => {
    const w = winner([{ commitInfo: { isBlindAppend: true } }, { add: { path: 'n', dataChange: true } }]);
    const metaData = {
      id: 'x',
      format: { provider: 'parquet', options: {} },
      schemaString: '{}',
      partitionColumns: [],
      configuration: {},
    };
    expect(checkConflict('/t', { actions: [{ metaData }] }, w).kind).toBe('rebuild');
    expect(checkConflict('/t', { actions: [] }, w).kind).toBe('none');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Real concurrency: OS processes running the compiled Delta writer.

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REPO = path.dirname(SRC);

/** Transpiles src/core and src/delta to plain ESM in `dest` (Node 20 cannot run .ts) and links node_modules. */
async function compileWriter(dest: string): Promise<void> {
  for (const folder of ['core', 'delta']) {
    const names = (await readdir(path.join(SRC, folder), { recursive: true, encoding: 'utf8' })).filter(
      (n) => n.endsWith('.ts') && !n.endsWith('.test.ts') && !n.endsWith('.d.ts'),
    );
    for (const name of names) {
      const source = await readFile(path.join(SRC, folder, name), 'utf8');
      const { outputText } = ts.transpileModule(source, {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      });
      const out = path.join(dest, 'src', folder, name.replace(/\.ts$/, '.js'));
      await mkdir(path.dirname(out), { recursive: true });
      await writeFile(out, outputText);
    }
  }
  await writeFile(path.join(dest, 'package.json'), '{"type":"module"}');
  await symlink(path.join(REPO, 'node_modules'), path.join(dest, 'node_modules'), 'dir');
  await writeFile(path.join(dest, 'worker.js'), WORKER);
}

/**
 * One writer process: `ops` operations, alternating a blind append of 3 new rows (val 0) and a MERGE-like
 * rewrite that adds 1 to `val` of every row whose id % 3 matches, rewriting the files that hold them. Prints
 * what it committed as JSON.
 */
const WORKER = `
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { commitWithRetry, newDataFileName } from './src/delta/commit.js';
import { sqlString, withConnection } from './src/delta/duckdb.js';

const [root, writerArg, opsArg] = process.argv.slice(2);
const writer = Number(writerArg);

async function writeRows(rows) {
  const rel = newDataFileName();
  const abs = path.join(root, rel);
  const values = rows.map(([id, val]) => '(' + id + ', ' + val + ')').join(', ');
  await withConnection((c) =>
    c.run('COPY (SELECT id::BIGINT AS id, val::BIGINT AS val FROM (VALUES ' + values + ') t(id, val)) TO ' + sqlString(abs) + ' (FORMAT parquet)'),
  );
  return { path: rel, partitionValues: {}, size: (await stat(abs)).size, modificationTime: Date.now(), dataChange: true };
}

const results = [];
for (let i = 0; i < Number(opsArg); i++) {
  try {
    if (i % 2 === 0) {
      const ids = [0, 1, 2].map((k) => writer * 10000 + i * 10 + k);
      const add = await writeRows(ids.map((id) => [id, 0]));
      const r = await commitWithRetry(root, async () => ({ actions: [{ add }], request: { operation: 'WRITE' } }), { maxAttempts: 200 });
      results.push({ kind: 'append', ok: true, ...r, ids });
    } else {
      let incremented = [];
      const r = await commitWithRetry(root, async (snapshot) => {
        const byPath = new Map(snapshot.files.map((f) => [snapshot.dataFilePath(f), f]));
        incremented = [];
        if (byPath.size === 0) return { actions: [], request: { operation: 'MERGE', isBlindAppend: false }, readSet: { wholeTable: true } };
        const list = [...byPath.keys()].map(sqlString).join(', ');
        const rows = await withConnection(async (c) =>
          (await c.runAndReadAll('SELECT id, val, filename FROM read_parquet([' + list + '], filename = true)')).getRowsJS(),
        );
        const mod = (writer + i) % 3;
        const hit = (id) => id % 3 === mod;
        const touched = new Set(rows.filter((r) => hit(Number(r[0]))).map((r) => String(r[2])));
        const rewritten = rows
          .filter((r) => touched.has(String(r[2])))
          .map((r) => [Number(r[0]), Number(r[1]) + (hit(Number(r[0])) ? 1 : 0)]);
        incremented = rewritten.filter(([id]) => hit(id)).map(([id]) => id);
        const actions = [...touched].map((p) => {
          const f = byPath.get(p);
          return { remove: { path: f.path, deletionTimestamp: Date.now(), dataChange: true, extendedFileMetadata: true, partitionValues: {}, size: f.size } };
        });
        if (rewritten.length > 0) actions.push({ add: await writeRows(rewritten) });
        return {
          actions,
          request: { operation: 'MERGE', isBlindAppend: false },
          readSet: { wholeTable: true, files: snapshot.files.map((f) => f.path) },
        };
      }, { maxAttempts: 200 });
      results.push({ kind: 'merge', ok: true, ...r, incremented });
    }
  } catch (error) {
    results.push({ kind: i % 2 === 0 ? 'append' : 'merge', ok: false, code: error.code ?? null, message: String(error.message) });
  }
}
process.stdout.write(JSON.stringify(results));
`;

interface WorkerResult {
  kind: 'append' | 'merge';
  ok: boolean;
  version?: number;
  attempts?: number;
  builds?: number;
  ids?: number[];
  incremented?: number[];
  code?: string | null;
  message?: string;
}

describe('real concurrent writers', () => {
  it('N processes appending and rewriting one table lose nothing', { timeout: 120_000 }, async () => {
    const build = path.join(dir, 'compiled');
    await compileWriter(build);
    const root = path.join(dir, 'shared-table');
    // A short checkpoint interval makes the racing writers checkpoint (and race on checkpoints) too.
    await commit(root, -1, newTableActions(schema, { configuration: { 'delta.checkpointInterval': '5' } }), {
      operation: 'CREATE TABLE',
    });
    const WRITERS = 4;
    const OPS = 8;
    const run = promisify(execFile);
    const outputs = await Promise.all(
      Array.from({ length: WRITERS }, (_, w) =>
        run(process.execPath, [path.join(build, 'worker.js'), root, String(w), String(OPS)], {
          cwd: build,
          maxBuffer: 16 * 1024 * 1024,
        }),
      ),
    );
    const results = outputs.flatMap((o) => JSON.parse(o.stdout) as WorkerResult[]);
    const failed = results.filter((r) => !r.ok);
    expect(failed).toEqual([]);
    expect(results).toHaveLength(WRITERS * OPS);

    // No lost commit: every reported version is distinct and together they fill 1..n without gaps.
    const versions = results.map((r) => r.version as number).sort((a, b) => a - b);
    expect(versions).toEqual(Array.from({ length: results.length }, (_, i) => i + 1));
    const log = await readdir(path.join(root, '_delta_log'));
    expect(log.filter((n) => n.endsWith('.json')).sort()).toEqual(
      versions
        .concat([0])
        .sort((a, b) => a - b)
        .map(commitFileName),
    );
    // Blind appends are never rebuilt, whatever raced them.
    expect(results.filter((r) => r.kind === 'append').every((r) => r.builds === 1)).toBe(true);

    // No lost row and no lost update: every appended id once, its val = the merges that reported incrementing it.
    const snapshot = await loadSnapshot(root);
    expect(snapshot.version).toBe(results.length);
    const expected = new Map<number, number>();
    for (const r of results) for (const id of r.ids ?? []) expected.set(id, 0);
    for (const r of results)
      for (const id of r.incremented ?? []) expected.set(id, (expected.get(id) ?? 0) + 1);
    const list = snapshot.files.map((f) => sqlString(snapshot.dataFilePath(f))).join(', ');
    const rows = await withConnection(async (c) =>
      (await c.runAndReadAll(`SELECT id, val FROM read_parquet([${list}]) ORDER BY id`)).getRowsJS(),
    );
    expect(rows.map((r) => [Number(r[0]), Number(r[1])])).toEqual(
      [...expected.entries()].sort((a, b) => a[0] - b[0]),
    );
    expect([...expected.values()].some((v) => v > 0)).toBe(true);

    // The checkpoints the writers raced to write agree with a pure JSON replay of the same log.
    expect(log.some((n) => n.endsWith('.checkpoint.parquet'))).toBe(true);
    const jsonOnly = path.join(dir, 'json-only');
    await mkdir(path.join(jsonOnly, '_delta_log'), { recursive: true });
    for (const n of log.filter((x) => x.endsWith('.json'))) {
      await copyFile(path.join(root, '_delta_log', n), path.join(jsonOnly, '_delta_log', n));
    }
    const replayed = await loadSnapshot(jsonOnly);
    expect(replayed.version).toBe(snapshot.version);
    expect(files(replayed)).toEqual(files(snapshot));
  });
});
