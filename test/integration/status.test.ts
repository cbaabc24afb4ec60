/** `tributary status` reports where a pipeline stands, from the manifests, the Delta logs and the source. */
import { expect, it } from 'vitest';
import { pipelineFixture } from '../harness/pipeline-fixture.js';

interface Status {
  state: string;
  stagedPosition: string | null;
  sourcePosition: string | null;
  tables: Array<{
    destination: string;
    version: number | null;
    pendingSegments: number;
    appliedThrough: string | null;
  }>;
}

it('follows a pipeline from idle to up to date, behind after a source change, and up to date again', async () => {
  await using f = await pipelineFixture({
    prefix: 'status',
    setup: async (conn) => {
      await conn.query('CREATE TABLE t (id INT PRIMARY KEY)');
      await conn.query('INSERT INTO t VALUES (1)');
    },
  });
  const status = async () => {
    const r = await f.cli(['status', 'p', '--format', 'json']);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as Status[])[0] as Status;
  };

  expect((await status()).state).toBe('IDLE');

  await f.run();
  const first = await status();
  expect(first.state).toBe('UP_TO_DATE');
  expect(first.tables).toMatchObject([
    { destination: 'retail_analytics.bronze.t', version: 0, pendingSegments: 0 },
  ]);
  expect(first.tables[0]?.appliedThrough).not.toBeNull();

  await f.conn.query('INSERT INTO t VALUES (2)');
  const behind = await status();
  expect(behind.state).toBe('BEHIND');
  expect((behind.sourcePosition ?? '') > (behind.stagedPosition ?? '')).toBe(true);

  await f.run();
  const after = await status();
  expect(after.state).toBe('UP_TO_DATE');
  expect(after.tables[0]?.version).toBe(1);

  const text = await f.cli(['status']);
  expect(text.stdout).toContain('p  UP_TO_DATE');
  expect(text.stdout).toContain('retail_analytics.bronze.t');
});
