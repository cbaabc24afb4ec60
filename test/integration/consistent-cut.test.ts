/**
 * Tables that agree with each other: `tributary sql` reads every pipeline table at the pipeline's consistent
 * cut, so no query sees an order whose customer is not there yet, even between the commits of one round.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_PATH } from '../harness/cli.js';
import { type PipelineFixture, pipelineFixture } from '../harness/pipeline-fixture.js';

const ORPHANS = `SELECT COUNT(*) AS n FROM retail_analytics.bronze.orders o
LEFT JOIN retail_analytics.bronze.customers c ON o.customer_id = c.customer_id
WHERE c.customer_id IS NULL`;

describe('consistent cut across tables', () => {
  let f: PipelineFixture;
  let nextId = 1;

  /** A customer and its first order, in one source transaction. */
  const newCustomerWithOrder = async () => {
    const id = nextId++;
    await f.conn.query('START TRANSACTION');
    await f.conn.query('INSERT INTO customers VALUES (?, ?)', [id, `customer ${id}`]);
    await f.conn.query('INSERT INTO orders VALUES (?, ?, ?)', [id * 10, id, 9.99]);
    await f.conn.query('COMMIT');
  };
  const orphans = async (latest = false) => {
    const r = await f.cli(['sql', ORPHANS, '--format', 'json', ...(latest ? ['--latest'] : [])]);
    expect(r.code, r.stderr).toBe(0);
    return Number((JSON.parse(r.stdout) as Array<{ n: number }>)[0]?.n);
  };

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'cut',
      setup: async (conn) => {
        await conn.query('CREATE TABLE customers (customer_id INT PRIMARY KEY, name VARCHAR(50))');
        await conn.query(
          'CREATE TABLE orders (order_id INT PRIMARY KEY, customer_id INT NOT NULL, total DECIMAL(10,2), FOREIGN KEY (customer_id) REFERENCES customers (customer_id))',
        );
      },
      // Orders first: within a round they are committed before their customers.
      objects: (db) =>
        ['orders', 'customers']
          .map(
            (t) => `      - table:
          source_schema: ${db}
          source_table: ${t}
          destination_catalog: retail_analytics
          destination_schema: bronze`,
          )
          .join('\n'),
    });
    for (let i = 0; i < 3; i++) await newCustomerWithOrder();
    await f.run();
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('hides a round that stopped between its tables’ commits; --latest shows what it hides', async () => {
    await newCustomerWithOrder();
    // Killed right after the first table's commit of the round: orders has the new order, customers not yet.
    const r = await f.cli(['run', 'p', '--once'], { env: { TRIBUTARY_FAULT: 'after-delta-commit:1' } });
    expect(r.signal).toBe('SIGKILL');
    expect(await orphans(true)).toBe(1);
    expect(await orphans()).toBe(0);
    const [count] = await f.sql('SELECT count(*) AS n FROM bronze.orders');
    expect(count?.['n']).toBe(3);
    // The next round completes both tables and moves the cut.
    await f.run();
    expect(await orphans()).toBe(0);
    expect(await f.sql('SELECT count(*) AS n FROM bronze.orders')).toEqual([{ n: 4 }]);
  });

  it('never shows an orphaned order to queries running while a continuous pipeline applies', async () => {
    const pipeline = spawn(process.execPath, [CLI_PATH, 'run', 'p', '--interval', '0.2'], {
      cwd: f.dir,
      env: { ...process.env, ...f.env },
      stdio: 'ignore',
    });
    try {
      let writing = true;
      const writer = (async () => {
        for (let i = 0; i < 40; i++) {
          await newCustomerWithOrder();
          await new Promise((done) => setTimeout(done, 200));
        }
        writing = false;
      })();
      const readings: number[] = [];
      while (writing) readings.push(await orphans());
      await writer;
      // Then until the pipeline has caught up with the last write.
      let seenOrders = 0;
      for (let i = 0; i < 100 && seenOrders < nextId - 1; i++) {
        readings.push(await orphans());
        const [n] = await f.sql('SELECT count(*) AS n FROM bronze.orders');
        seenOrders = Number(n?.['n']);
      }
      expect(readings.length).toBeGreaterThan(8);
      expect(readings.filter((n) => n !== 0)).toEqual([]);
      expect(seenOrders).toBe(nextId - 1);
    } finally {
      pipeline.kill('SIGTERM');
      await new Promise((done) => pipeline.once('exit', done));
    }
  });
});
