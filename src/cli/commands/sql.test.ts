import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commit, DEFAULT_PROTOCOL, newTableMetadata } from '../../delta/commit.js';
import { registerSqlCommand } from './sql.js';

let dir: string;
let config: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'tributary-cli-sql-'));
  config = join(dir, 'tributary.yaml');
  await writeFile(config, `warehouse: ${join(dir, 'lakehouse')}\n`);
  const schema = {
    type: 'struct' as const,
    fields: [{ name: 'id', type: 'long', nullable: true, metadata: {} }],
  };
  await commit(
    join(dir, 'lakehouse', 'lake', 'bronze', 't'),
    -1,
    [{ protocol: DEFAULT_PROTOCOL }, { metaData: newTableMetadata(schema) }],
    { operation: 'CREATE TABLE' },
  );
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function run(args: string[], stdin = ''): Promise<string> {
  let stdout = '';
  const out = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      stdout += chunk.toString('utf8');
      callback();
    },
  });
  const program = new Command('tributary')
    .exitOverride()
    .configureOutput({ writeOut: () => {}, writeErr: () => {} });
  registerSqlCommand(program, {
    stdin: Readable.from([stdin]),
    stdout: out,
    stderr: out,
    configPath: () => config,
  });
  await program.parseAsync(args, { from: 'user' });
  return stdout;
}

describe('tributary sql', () => {
  it('runs a script and prints the last result; the only catalog is the default', async () => {
    const out = await run([
      'sql',
      "ALTER TABLE bronze.t SET TBLPROPERTIES ('owner' = 'me'); DESCRIBE HISTORY bronze.t",
      '--format',
      'json',
    ]);
    expect(JSON.parse(out).map((r: { operation: string }) => r.operation)).toEqual([
      'SET TBLPROPERTIES',
      'CREATE TABLE',
    ]);
  });

  it('reads the statements from stdin with "-" and prints csv', async () => {
    const out = await run(
      ['sql', '-', '--format', 'csv', '--catalog', 'lake'],
      'SHOW TBLPROPERTIES bronze.t;\n',
    );
    expect(out.split('\r\n')[0]).toBe('key,value');
    expect(out).toContain('owner,me');
  });
});
