/**
 * PostgreSQL source throughput and latency against the server's own tools, measured in the same run:
 *
 * - snapshot: PostgresSource.snapshot (keyset chunks, type conversion, change events) reading a table of
 *   BENCH_PG_ROWS rows with ten mixed columns, against `psql -c "COPY (SELECT * FROM t) TO STDOUT"` into
 *   /dev/null (the limit), and, as a diagnostic, the same keyset queries through `pg` with no conversion;
 * - decode: PostgresSource.stream decoding a backlog of BENCH_PG_CHANGES changes (multi-row transactions of
 *   inserts, updates and deletes, made by pgbench) from a copy of one slot, acknowledging every batch,
 *   against `pg_recvlogical` receiving the same pgoutput stream into /dev/null (the limit);
 * - live: the generator running flat out while the stream follows it (generated/s, decoded/s, drain time);
 * - latency: at a fixed load of BENCH_PG_RATE changes/s, the time from the source transaction (its last
 *   statement's clock_timestamp(), written in the rows; and the batch's commit time) to the batch arriving.
 *
 * Every figure is a median over BENCH_RUNS rounds; within a round the limit and Tributary run back to back
 * (in rotating order), so machine noise hits both alike. CPU seconds come from /proc: this process, the
 * commands it ran (psql, pg_recvlogical) and every process of the server.
 *
 * Usage: npm run bench -- postgres-source
 *   BENCH_PG_ROWS (1000000)  BENCH_RUNS (3)  BENCH_PG_CHANGES (200000)  BENCH_PG_RATE (1000)
 *   BENCH_PG_SECONDS (15, per latency run)  BENCH_PG_LIVE_SECONDS (10)  BENCH_PG_TX_SCALE (1: 10 changes a transaction)
 *   BENCH_PG_CHUNK_ROWS (50000, as TRIBUTARY_SNAPSHOT_CHUNK_ROWS' default)  BENCH_PG_PARTS (snapshot,stream)
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { Position } from '../src/core/position.js';
import type { TableSchema } from '../src/core/table.js';
import { openPgClient, type PgEndpoint, SESSION_OPTIONS } from '../src/sources/postgres/connect.js';
import { decodePgPosition, encodePgPosition, formatLsn, parseLsn } from '../src/sources/postgres/lsn.js';
import { PostgresSource } from '../src/sources/postgres/postgres-source.js';
import { startPostgres } from '../src/testing/postgres-server.js';
import { runDiscarding } from './measure.js';
import {
  anchoredClock,
  type Measured,
  measure,
  median,
  percentile,
  pgbenchScript,
  pgbenchTransactions,
  pgbenchVariables,
  pgProgram,
  postmasterPid,
  round,
  rowValues,
  runCapturing,
  sleep,
  streamTableDdl,
  TABLE_COLUMNS,
  timestamptzMs,
} from './postgres-bench-support.js';

const ROWS = Number(process.env['BENCH_PG_ROWS'] ?? 1_000_000);
const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);
const CHANGES = Number(process.env['BENCH_PG_CHANGES'] ?? 200_000);
const RATE = Number(process.env['BENCH_PG_RATE'] ?? 1000);
const LATENCY_SECONDS = Number(process.env['BENCH_PG_SECONDS'] ?? 15);
const LIVE_SECONDS = Number(process.env['BENCH_PG_LIVE_SECONDS'] ?? 10);
const SCALE = Math.min(19, Math.max(1, Number(process.env['BENCH_PG_TX_SCALE'] ?? 1)));
const CHUNK_ROWS = Number(process.env['BENCH_PG_CHUNK_ROWS'] ?? 50_000);
const CHANGES_PER_TX = 10 * SCALE;
/** Which parts to run: `snapshot`, `stream` or both (for profiling one of them). */
const PARTS = (process.env['BENCH_PG_PARTS'] ?? 'snapshot,stream').split(',');

const STREAM_PUBLICATION = 'bench_stream_pub';
const TEMPLATE_SLOT = 'bench_template';

interface Context {
  readonly endpoint: PgEndpoint;
  readonly admin: pg.Client;
  readonly postmaster: number | undefined;
  /** -h -p -U of the client programs. */
  readonly connArgs: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  readonly work: string;
  readonly signal: AbortSignal;
  /** Every slot this run made, for cleaning up their spool directories. */
  readonly slots: string[];
}

export async function benchPostgresSource(): Promise<Record<string, unknown>> {
  const server = await startPostgres({ settings: { autovacuum: 'off', shared_buffers: '512MB' } });
  const work = await mkdtemp(join(tmpdir(), 'tributary-bench-pg-'));
  const admin = new pg.Client({
    host: server.host,
    port: server.port,
    user: server.user,
    password: server.password,
    database: 'postgres',
  });
  const slots: string[] = [];
  try {
    await admin.connect();
    const context: Context = {
      endpoint: {
        name: 'bench',
        host: server.host,
        port: server.port,
        database: 'postgres',
        user: server.user,
        password: server.password,
      },
      admin,
      postmaster: postmasterPid(server.baseDir),
      connArgs: ['-h', server.host, '-p', String(server.port), '-U', server.user],
      env: { PGPASSWORD: server.password },
      work,
      signal: new AbortController().signal,
      slots,
    };
    const version = (await admin.query<{ v: string }>("SELECT current_setting('server_version') AS v"))
      .rows[0]?.v;
    await admin.query('CREATE SCHEMA bench');

    const snapshot = PARTS.includes('snapshot') ? await benchSnapshot(context) : 'not run';
    const streaming = PARTS.includes('stream') ? await benchStreaming(context) : 'not run';

    const result = {
      server: `PostgreSQL ${version}`,
      runs: RUNS,
      snapshot,
      streaming,
      peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    };
    await writeFile(
      join(process.cwd(), 'bench', 'results', 'postgres-source.json'),
      `${formatJson(result)}\n`,
    );
    return result;
  } finally {
    await admin.end().catch(() => undefined);
    await server.stop();
    await rm(work, { recursive: true, force: true });
    for (const slot of slots) {
      await rm(join(tmpdir(), 'tributary-pg-spool', `postgres.${slot}`), { recursive: true, force: true });
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Snapshot

async function benchSnapshot(c: Context): Promise<Record<string, unknown>> {
  log(`snapshot: loading ${ROWS} rows`);
  await c.admin.query(`CREATE TABLE bench.t (${TABLE_COLUMNS})`);
  await c.admin.query(
    `INSERT INTO bench.t SELECT ${rowValues("timestamptz '2024-01-01 00:00:00+00' + g * interval '1.000001 second'")}
       FROM generate_series(1, ${ROWS}) g`,
  );
  // Hint bits and visibility map set now, so no read pays for them; then nothing dirty is left to write.
  await c.admin.query('VACUUM (FREEZE, ANALYZE) bench.t');
  await c.admin.query('CHECKPOINT');
  const size = await c.admin.query<{ heap: string; total: string }>(
    "SELECT pg_relation_size('bench.t')::text AS heap, pg_total_relation_size('bench.t')::text AS total",
  );

  const slot = 'bench_snapshot';
  c.slots.push(slot);
  await using source = new PostgresSource(c.endpoint, {
    slot,
    publication: 'bench_snapshot_pub',
    publishAllTables: false,
  });
  const tables = await source.listTables(
    { tables: [{ schema: 'bench', table: 't' }], schemas: [] },
    c.signal,
  );

  const psql = pgProgram('psql');
  const copyArgs = [
    ...c.connArgs,
    '-d',
    'postgres',
    '-X',
    '-q',
    '-c',
    'COPY (SELECT * FROM bench.t) TO STDOUT',
  ];
  const copy = () => runDiscarding(psql, copyArgs, { ...c.env, PGOPTIONS: SESSION_OPTIONS });
  const ours = async () => {
    let read = 0;
    for await (const batch of source.snapshot(tables, { chunkRows: CHUNK_ROWS, signal: c.signal }))
      read += batch.events.length;
    if (read !== ROWS) throw new Error(`snapshot read ${read} rows, expected ${ROWS}`);
  };
  const driver = () => readKeysetRaw(c, tables[0] as TableSchema);

  // Warm-up, not counted: the first snapshot also creates the slot and imports its exported snapshot; the
  // counted ones find the slot and take a fresh snapshot (as after a restart), reading the same rows.
  log('snapshot: warm-up');
  await ours();
  await copy();
  await driver();

  const runs: Record<'limit' | 'tributary' | 'driver', Measured[]> = { limit: [], tributary: [], driver: [] };
  const order = [
    ['limit', copy],
    ['tributary', ours],
    ['driver', driver],
  ] as const;
  for (let n = 0; n < RUNS; n++) {
    for (let k = 0; k < order.length; k++) {
      const [name, body] = order[(n + k) % order.length] as (typeof order)[number];
      runs[name].push(await measure(c.postmaster, body));
    }
    log(
      `snapshot round ${n + 1}/${RUNS}: COPY ${ms(runs.limit)} ms, Tributary ${ms(runs.tributary)} ms, pg keyset ${ms(runs.driver)} ms`,
    );
  }
  await source[Symbol.asyncDispose]();
  await dropSlot(c.admin, slot);

  const limitMs = median(runs.limit.map((r) => r.ms));
  const oursMs = median(runs.tributary.map((r) => r.ms));
  const driverMs = median(runs.driver.map((r) => r.ms));
  const summary = {
    rows: ROWS,
    columns:
      'int8 key, int4, numeric(12,2), text, varchar(64) (10% NULL), timestamptz, timestamp, bool, jsonb, bytea(16)',
    tableMiB: { heap: mib(size.rows[0]?.heap), withIndex: mib(size.rows[0]?.total) },
    chunkRows: CHUNK_ROWS,
    limitTool: 'psql -c "COPY (SELECT * FROM bench.t) TO STDOUT" > /dev/null',
    limitRowsPerSec: rate(ROWS, limitMs),
    tributaryRowsPerSec: rate(ROWS, oursMs),
    ratio: round(limitMs / oursMs),
    target: 0.8,
    roundRatios: runs.limit.map((l, i) => round(l.ms / (runs.tributary[i]?.ms ?? Number.NaN))),
    diagnostic: {
      what: 'the same keyset queries through pg (text values), without conversion or change events',
      driverRowsPerSec: rate(ROWS, driverMs),
      tributaryOverDriver: round(oursMs / driverMs),
    },
    perCore: {
      note: 'rows per CPU-second: client process + every server process; cores = CPU-seconds / wall seconds',
      limit: perCore(ROWS, runs.limit, 'childCpuS'),
      tributary: perCore(ROWS, runs.tributary, 'nodeCpuS'),
      driver: perCore(ROWS, runs.driver, 'nodeCpuS'),
    },
    runsMs: {
      limit: runs.limit.map((r) => Math.round(r.ms)),
      tributary: runs.tributary.map((r) => Math.round(r.ms)),
      driver: runs.driver.map((r) => Math.round(r.ms)),
    },
  };
  log(
    `snapshot: COPY ${summary.limitRowsPerSec} rows/s, Tributary ${summary.tributaryRowsPerSec} rows/s, ratio ${summary.ratio} (target ≥ 0.8)`,
  );
  return summary;
}

/** The reader's keyset queries through pg with its text types, counting rows: the driver's share of the cost. */
async function readKeysetRaw(c: Context, table: TableSchema): Promise<void> {
  const columns = table.columns.map((col) => `"${col.name}"`).join(', ');
  const first = `SELECT ${columns} FROM ONLY "bench"."t" ORDER BY "id" LIMIT ${CHUNK_ROWS}`;
  const next = `SELECT ${columns} FROM ONLY "bench"."t" WHERE ("id") > ($1::bigint) ORDER BY "id" LIMIT ${CHUNK_ROWS}`;
  const client = await openPgClient(c.endpoint);
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    let read = 0;
    let last: string | undefined;
    for (;;) {
      const result = last === undefined ? await client.query(first) : await client.query(next, [last]);
      read += result.rows.length;
      if (result.rows.length < CHUNK_ROWS) break;
      last = (result.rows.at(-1) as Record<string, string>)['id'];
    }
    await client.query('COMMIT');
    if (read !== ROWS) throw new Error(`keyset read ${read} rows, expected ${ROWS}`);
  } finally {
    await client.end();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Streaming

async function benchStreaming(c: Context): Promise<Record<string, unknown>> {
  log('streaming: preparing');
  await c.admin.query(streamTableDdl(SCALE));
  await c.admin.query('VACUUM (ANALYZE) bench.s');
  await c.admin.query(`CREATE PUBLICATION ${STREAM_PUBLICATION} FOR TABLE bench.s`);
  const script = join(c.work, 'transaction.sql');
  await writeFile(script, pgbenchScript(SCALE));
  const pgbench = pgProgram('pgbench');
  const pgbenchArgs = (extra: readonly string[]) => [
    ...c.connArgs,
    '-n',
    '-M',
    'prepared',
    '-f',
    script,
    ...pgbenchVariables(SCALE),
    ...extra,
    'postgres',
  ];
  const tables = await withSource(c, TEMPLATE_SLOT, (source) =>
    source.listTables({ tables: [{ schema: 'bench', table: 's' }], schemas: [] }, c.signal),
  );

  // A warm-up of the generator, unrecorded, so the backlog is made by a warm server.
  await runCapturing(pgbench, pgbenchArgs(['-c', '2', '-j', '2', '-t', '500']), c.env);

  // ---- Backlog: made once, decoded from copies of the slot that was created before it.
  const start = await createSlot(c, TEMPLATE_SLOT);
  const transactions = Math.max(2, Math.round(CHANGES / CHANGES_PER_TX / 2) * 2);
  const changes = transactions * CHANGES_PER_TX;
  log(`streaming: generating a backlog of ${changes} changes (${transactions} transactions)`);
  const generated = await measure(c.postmaster, async () => {
    const report = await runCapturing(
      pgbench,
      pgbenchArgs(['-c', '2', '-j', '2', '-t', String(transactions / 2)]),
      c.env,
    );
    const processed = pgbenchTransactions(report);
    if (processed !== transactions)
      throw new Error(`pgbench made ${processed} transactions, not ${transactions}`);
  });

  // The first decode (unrecorded) finds where the backlog ends, which the counted runs stop at.
  let copies = 0;
  const copy = async () => {
    const name = `bench_copy_${copies++}`;
    c.slots.push(name);
    await c.admin.query('SELECT pg_copy_logical_replication_slot($1, $2)', [TEMPLATE_SLOT, name]);
    return name;
  };
  const decode = async (slot: string, until: Position | undefined) =>
    withSource(c, slot, async (source) => {
      let decoded = 0;
      let end: Position | undefined;
      // Without `until` the stream would wait for ever if a change were missing: give up after a quiet spell.
      const quiet = new AbortController();
      let timer = setTimeout(() => quiet.abort(), 30_000);
      try {
        const options = { tables, signal: until ? c.signal : quiet.signal, ...(until ? { until } : {}) };
        for await (const batch of source.stream(start, options)) {
          decoded += batch.events.length;
          if (batch.complete && batch.events.length > 0) end = batch.position;
          source.acknowledge(batch.position);
          if (until === undefined && decoded >= changes) break;
          clearTimeout(timer);
          timer = setTimeout(() => quiet.abort(), 30_000);
        }
      } catch (error) {
        if (!quiet.signal.aborted) throw error;
      } finally {
        clearTimeout(timer);
      }
      return { decoded, end };
    });
  log('streaming: warm-up decode');
  const warm = await decode(await copy(), undefined);
  if (warm.decoded !== changes || warm.end === undefined) {
    throw new Error(`decoded ${warm.decoded} changes of the backlog, expected ${changes}`);
  }
  const until = warm.end;
  await dropSlot(c.admin, `bench_copy_${copies - 1}`);

  const recvArgs = (slot: string) => [
    '-d',
    `host=${c.endpoint.host} port=${c.endpoint.port} user=${c.endpoint.user} dbname=postgres`,
    '--slot',
    slot,
    '--start',
    '--endpos',
    formatLsn(decodePgPosition(until)),
    '--no-loop',
    '-F',
    '0',
    '-f',
    '/dev/null',
    '-o',
    'proto_version=2',
    '-o',
    `publication_names=${STREAM_PUBLICATION}`,
    '-o',
    'streaming=on',
    '-o',
    'messages=true',
  ];
  const pgRecvlogical = pgProgram('pg_recvlogical');
  const backlogRuns: Record<'limit' | 'tributary', Measured[]> = { limit: [], tributary: [] };
  for (let n = 0; n < RUNS; n++) {
    const sides = n % 2 === 0 ? (['limit', 'tributary'] as const) : (['tributary', 'limit'] as const);
    for (const side of sides) {
      const slot = await copy();
      if (side === 'limit') {
        backlogRuns.limit.push(
          await measure(c.postmaster, () => runDiscarding(pgRecvlogical, recvArgs(slot), c.env)),
        );
      } else {
        backlogRuns.tributary.push(
          await measure(c.postmaster, async () => {
            const { decoded } = await decode(slot, until);
            if (decoded !== changes) throw new Error(`decoded ${decoded} changes, expected ${changes}`);
          }),
        );
      }
      await dropSlot(c.admin, slot);
    }
    log(
      `decode round ${n + 1}/${RUNS}: pg_recvlogical ${ms(backlogRuns.limit)} ms, Tributary ${ms(backlogRuns.tributary)} ms`,
    );
  }
  await dropSlot(c.admin, TEMPLATE_SLOT);
  const limitMs = median(backlogRuns.limit.map((r) => r.ms));
  const oursMs = median(backlogRuns.tributary.map((r) => r.ms));
  const walBytes = decodePgPosition(until) - decodePgPosition(start);
  log(
    `decode: pg_recvlogical ${rate(changes, limitMs)} changes/s, Tributary ${rate(changes, oursMs)} changes/s, ratio ${round(limitMs / oursMs)}`,
  );

  // ---- Live, flat out: the generator as fast as it goes while the stream follows.
  const live: LiveRun[] = [];
  for (let n = 0; n < RUNS; n++) {
    const run = await liveRun(
      c,
      tables,
      pgbench,
      pgbenchArgs(['-c', '2', '-j', '2', '-T', String(LIVE_SECONDS)]),
    );
    live.push(run);
    log(
      `live round ${n + 1}/${RUNS}: generated ${rate(run.changes, run.generateMs)}/s, decoded ${rate(run.changes, run.decodeMs)}/s, last change ${Math.round(run.drainMs)} ms after pgbench exited`,
    );
  }

  // ---- Latency at a fixed load.
  const txRate = RATE / CHANGES_PER_TX;
  const fixed: LiveRun[] = [];
  for (let n = 0; n < RUNS; n++) {
    const run = await liveRun(
      c,
      tables,
      pgbench,
      pgbenchArgs(['-c', '1', '-R', String(txRate), '-T', String(LATENCY_SECONDS)]),
    );
    fixed.push(run);
    log(
      `latency round ${n + 1}/${RUNS}: ${rate(run.changes, run.generateMs)} changes/s, from the row's clock_timestamp() p50 ${round(percentile(run.rowLatencyMs, 50))} ms, p99 ${round(percentile(run.rowLatencyMs, 99))} ms, max ${round(Math.max(...run.rowLatencyMs))} ms`,
    );
  }

  const latency = (pick: (r: LiveRun) => readonly number[]) => ({
    p50Ms: round(median(fixed.map((r) => percentile(pick(r), 50)))),
    p99Ms: round(median(fixed.map((r) => percentile(pick(r), 99)))),
    maxMs: round(median(fixed.map((r) => Math.max(...pick(r))))),
    worstMaxMs: round(Math.max(...fixed.map((r) => Math.max(...pick(r))))),
  });
  return {
    transaction: `${5 * SCALE} inserts, ${3 * SCALE} updates, ${2 * SCALE} deletes (${CHANGES_PER_TX} changes), by pgbench -M prepared`,
    backlog: {
      changes,
      transactions,
      walMiB: round(Number(walBytes) / 1048576, 1),
      generatedPerSec: rate(changes, generated.ms),
      limitTool: 'pg_recvlogical --start --endpos (pgoutput v2, same options) -f /dev/null',
      limitChangesPerSec: rate(changes, limitMs),
      tributaryChangesPerSec: rate(changes, oursMs),
      ratio: round(limitMs / oursMs),
      roundRatios: backlogRuns.limit.map((l, i) =>
        round(l.ms / (backlogRuns.tributary[i]?.ms ?? Number.NaN)),
      ),
      perCore: {
        note: 'changes per CPU-second: client process + every server process (the walsender decodes)',
        limit: perCore(changes, backlogRuns.limit, 'childCpuS'),
        tributary: perCore(changes, backlogRuns.tributary, 'nodeCpuS'),
      },
      runsMs: {
        limit: backlogRuns.limit.map((r) => Math.round(r.ms)),
        tributary: backlogRuns.tributary.map((r) => Math.round(r.ms)),
      },
    },
    live: {
      generator: `pgbench -c 2 -j 2 -T ${LIVE_SECONDS}, unthrottled`,
      changes: median(live.map((r) => r.changes)),
      generatedPerSec: median(live.map((r) => rate(r.changes, r.generateMs))),
      decodedPerSec: median(live.map((r) => rate(r.changes, r.decodeMs))),
      // How long after pgbench exited the last change arrived; 0 when it had arrived before.
      lagAtGeneratorExitMs: Math.max(0, Math.round(median(live.map((r) => r.drainMs)))),
      nodeCores: round(median(live.map((r) => r.measured.nodeCpuS / (r.measured.ms / 1000)))),
    },
    latency: {
      load: `pgbench -c 1 -R ${txRate} -T ${LATENCY_SECONDS} (${RATE} changes/s)`,
      achievedChangesPerSec: median(fixed.map((r) => rate(r.changes, r.generateMs))),
      batches: median(fixed.map((r) => r.rowLatencyMs.length)),
      fromRowClockTimestamp: latency((r) => r.rowLatencyMs),
      fromBatchCommitTime: { ...latency((r) => r.commitLatencyMs), note: 'commitTime is whole milliseconds' },
      nodeCores: round(median(fixed.map((r) => r.measured.nodeCpuS / (r.measured.ms / 1000))), 3),
    },
  };
}

interface LiveRun {
  readonly changes: number;
  /** The generator's wall time. */
  readonly generateMs: number;
  /** From the generator's start to the last change received. */
  readonly decodeMs: number;
  /** From the generator's end to the last change received. */
  readonly drainMs: number;
  /** Per batch: arrival − the latest clock_timestamp() its rows carry (the last statement before COMMIT). */
  readonly rowLatencyMs: number[];
  /** Per batch: arrival − the batch's commitTime. */
  readonly commitLatencyMs: number[];
  readonly measured: Measured;
}

/** Streams from a new slot while pgbench runs with `args`; returns when every change it made has arrived. */
async function liveRun(
  c: Context,
  tables: readonly TableSchema[],
  pgbench: string,
  args: readonly string[],
): Promise<LiveRun> {
  const slot = `bench_live_${c.slots.length}`;
  c.slots.push(slot);
  const from = await createSlot(c, slot);
  const controller = new AbortController();
  const clock = anchoredClock();
  const rowLatencyMs: number[] = [];
  const commitLatencyMs: number[] = [];
  let received = 0;
  let lastAt = 0;
  let generateStart = 0;
  let generateEnd = 0;
  let expected = Number.POSITIVE_INFINITY;
  const measured = await measure(c.postmaster, () =>
    withSource(c, slot, async (source) => {
      const consumer = (async () => {
        try {
          for await (const batch of source.stream(from, { tables, signal: controller.signal })) {
            const now = clock();
            source.acknowledge(batch.position);
            if (batch.events.length === 0) continue;
            received += batch.events.length;
            lastAt = now;
            let stamp = Number.NEGATIVE_INFINITY;
            for (const event of batch.events) {
              if (event.kind !== 'insert' && event.kind !== 'update') continue;
              const e = event.after['e'];
              if (typeof e === 'string') stamp = Math.max(stamp, timestamptzMs(e));
            }
            if (Number.isFinite(stamp)) rowLatencyMs.push(now - stamp);
            commitLatencyMs.push(now - batch.commitTime.getTime());
          }
        } catch (error) {
          if (!controller.signal.aborted) throw error;
        }
      })();
      const failed = consumer.then(() => {
        throw new Error('the stream ended early');
      });
      await Promise.race([waitActive(c.admin, slot), failed]);
      generateStart = clock();
      const report = await Promise.race([runCapturing(pgbench, args, c.env), failed]);
      generateEnd = clock();
      expected = pgbenchTransactions(report) * CHANGES_PER_TX;
      const deadline = Date.now() + 120_000;
      while (received < expected) {
        if (Date.now() > deadline) throw new Error(`received ${received} of ${expected} changes in time`);
        await Promise.race([sleep(2), failed]);
      }
      controller.abort();
      await consumer;
      failed.catch(() => undefined);
    }),
  );
  await dropSlot(c.admin, slot);
  if (received !== expected) throw new Error(`received ${received} changes, expected ${expected}`);
  return {
    changes: expected,
    generateMs: generateEnd - generateStart,
    decodeMs: lastAt - generateStart,
    drainMs: lastAt - generateEnd,
    rowLatencyMs,
    commitLatencyMs,
    measured,
  };
}

// ---------------------------------------------------------------------------------------------------------
// Slots and sources

async function withSource<T>(
  c: Context,
  slot: string,
  body: (source: PostgresSource) => Promise<T>,
): Promise<T> {
  await using source = new PostgresSource(c.endpoint, {
    slot,
    publication: STREAM_PUBLICATION,
    publishAllTables: false,
  });
  return await body(source);
}

/** Creates a pgoutput slot now; its position is where streaming from it starts. */
async function createSlot(c: Context, slot: string): Promise<Position> {
  if (!c.slots.includes(slot)) c.slots.push(slot);
  const { rows } = await c.admin.query<{ lsn: string }>(
    "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
    [slot],
  );
  return encodePgPosition(parseLsn(rows[0]?.lsn ?? ''));
}

/** Drops a slot once its walsender has let go of it. */
async function dropSlot(admin: pg.Client, slot: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { rows } = await admin.query<{ active: boolean }>(
      'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    if (rows.length === 0) return;
    if (!rows[0]?.active) {
      await admin.query('SELECT pg_drop_replication_slot($1)', [slot]);
      return;
    }
    if (Date.now() > deadline) throw new Error(`slot ${slot} stayed active`);
    await sleep(20);
  }
}

/** Waits until a walsender streams from `slot`. */
async function waitActive(admin: pg.Client, slot: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const { rows } = await admin.query<{ active: boolean }>(
      'SELECT active FROM pg_replication_slots WHERE slot_name = $1',
      [slot],
    );
    if (rows[0]?.active) return;
    if (Date.now() > deadline) throw new Error(`slot ${slot} did not become active`);
    await sleep(10);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Reporting

function rate(count: number, milliseconds: number): number {
  return Math.round((count / milliseconds) * 1000);
}

function ms(runs: readonly Measured[]): number {
  return Math.round(runs.at(-1)?.ms ?? Number.NaN);
}

function mib(bytes: string | undefined): number {
  return round(Number(bytes) / 1048576, 1);
}

/** Medians over the runs of: items per CPU-second (client + server), and the cores each side kept busy. */
function perCore(items: number, runs: readonly Measured[], client: 'nodeCpuS' | 'childCpuS') {
  return {
    perCpuSecond: Math.round(median(runs.map((r) => items / (r[client] + r.serverCpuS)))),
    perClientCpuSecond: Math.round(median(runs.map((r) => items / r[client]))),
    clientCores: round(median(runs.map((r) => r[client] / (r.ms / 1000)))),
    serverCores: round(median(runs.map((r) => r.serverCpuS / (r.ms / 1000)))),
  };
}

/** JSON.stringify with arrays of numbers on one line, as biome formats JSON. */
function formatJson(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(
    /\[\s+([-\d.,\s]*?)\s+\]/g,
    (_, items: string) => `[${items.split(/,\s+/).join(', ')}]`,
  );
}

function log(message: string): void {
  process.stderr.write(`[postgres-source] ${message}\n`);
}
