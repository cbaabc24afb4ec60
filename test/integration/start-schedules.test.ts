/**
 * `tributary start`: every pipeline on its schedule in one process, until SIGTERM.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH } from '../harness/cli.js';
import { type PipelineFixture, pipelineFixture } from '../harness/pipeline-fixture.js';

describe('tributary start', () => {
  let f: PipelineFixture;

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'start',
      setup: async (conn) => {
        await conn.query('CREATE TABLE a (id INT PRIMARY KEY)');
        await conn.query('CREATE TABLE b (id INT PRIMARY KEY)');
      },
      objects: (db) => `      - table:
          source_schema: ${db}
          source_table: a
          destination_catalog: retail_analytics
          destination_schema: bronze`,
      // A second pipeline on the same gateway, every two seconds by cron.
      pipelines: (db) => `  p_cron:
    gateway: gw
    schedule: { cron: "*/2 * * * * *" }
    objects:
      - table:
          source_schema: ${db}
          source_table: b
          destination_catalog: retail_analytics
          destination_schema: bronze_cron
`,
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('runs a continuous and a cron pipeline side by side, and stops cleanly on SIGTERM', async () => {
    const child = spawn(process.execPath, [CLI_PATH, 'start', '--interval', '0.5'], {
      cwd: f.dir,
      env: { ...process.env, ...f.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((done) => child.once('exit', done));
    try {
      await f.conn.query('INSERT INTO a VALUES (1), (2)');
      await f.conn.query('INSERT INTO b VALUES (7)');
      const caughtUp = async () => {
        const [a] = await f.sql('SELECT count(*) AS n FROM bronze.a').catch(() => [{ n: 0 }]);
        const [b] = await f
          .sql('SELECT count(*) AS n FROM retail_analytics.bronze_cron.b')
          .catch(() => [{ n: 0 }]);
        return a?.['n'] === 2 && b?.['n'] === 1;
      };
      for (let i = 0; i < 120 && !(await caughtUp()); i++) await new Promise((r) => setTimeout(r, 500));
      expect(await caughtUp()).toBe(true);
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    expect(stderr).toContain('p: continuous');
    expect(stderr).toContain('p_cron: cron */2 * * * * * (UTC)');
    // Two pipelines on one gateway took turns: neither hit the other's run lock.
    expect(stderr).not.toContain('already running');
  });
});
