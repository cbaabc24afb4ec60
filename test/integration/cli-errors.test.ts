/**
 * Every bad input a user can give the `tributary` CLI ends in a message that names the problem and the fix,
 * and a non-zero exit, and never echoes a password. These run the real executable against the shared MariaDB.
 *
 * Each test gets its own working directory (the config and the warehouse live there) and its own
 * TRIBUTARY_HOME inside it, so no test sees another's secrets or tables.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, inject, test } from 'vitest';
import { type CliRun, pipelineConfig, runCli } from '../harness/cli.js';
import { adminConnection, type FreshDatabase, freshDatabase } from '../harness/mysql.js';

/** The variable that overrides `{{secrets/test/password}}`, the reference `pipelineConfig` writes. */
const SECRET_ENV = 'TRIBUTARY_SECRET_TEST__PASSWORD';

interface Workspace {
  /** The working directory of every run (its real path, as the child process sees it). */
  readonly dir: string;
  /** TRIBUTARY_HOME for every run. */
  readonly home: string;
  write(file: string, text: string): Promise<string>;
  run(args: readonly string[], options?: { env?: NodeJS.ProcessEnv; input?: string }): Promise<CliRun>;
}

const workspaces: string[] = [];

async function workspace(): Promise<Workspace> {
  const dir = await realpath(await mkdtemp(join(tmpdir(), 'tributary-cli-errors-')));
  workspaces.push(dir);
  const home = join(dir, 'home');
  return {
    dir,
    home,
    async write(file, text) {
      const path = join(dir, file);
      await writeFile(path, text);
      return path;
    },
    run(args, options = {}) {
      return runCli(args, {
        cwd: dir,
        // An override inherited from the environment of the test run would hide a missing secret.
        env: { TRIBUTARY_HOME: home, [SECRET_ENV]: undefined, ...options.env },
        ...(options.input === undefined ? {} : { input: options.input }),
        // A hang fails the test within the time budget (a killed run has signal SIGKILL) instead of stalling it.
        killAfterMs: 60_000,
      });
    },
  };
}

afterEach(async () => {
  await Promise.all(workspaces.splice(0).map((dir) => rm(dir, { recursive: true, force: true })));
});

/** The failure printed by main.ts: `tributary: error[CODE]: ...`, and a hint line when there is a fix. */
function expectFailure(run: CliRun, code: string, exitCode = 1): void {
  expect(run.stderr, `stdout: ${run.stdout}`).toContain(`tributary: error[${code}]: `);
  expect(run.code).toBe(exitCode);
  expect(run.signal).toBeNull();
}

function expectHint(run: CliRun, ...parts: string[]): void {
  const hint = run.stderr.slice(run.stderr.indexOf('\n  hint: '));
  expect(hint, run.stderr).toMatch(/^\n {2}hint: /);
  for (const part of parts) expect(hint).toContain(part);
}

function expectSuccess(run: CliRun): void {
  expect(run.stderr).not.toContain('error[');
  expect(run.code, run.stderr).toBe(0);
}

function expectNotPrinted(run: CliRun, ...secrets: string[]): void {
  for (const secret of secrets) {
    expect(run.stdout).not.toContain(secret);
    expect(run.stderr).not.toContain(secret);
  }
}

function tableObject(schema: string, table: string, extra = ''): string {
  return `      - table:
          source_schema: ${schema}
          source_table: ${table}
          destination_catalog: lake
          destination_schema: bronze
${extra}`;
}

describe('configuration errors', () => {
  test('a missing configuration file is named, with a hint about --config', async () => {
    const ws = await workspace();
    const run = await ws.run(['run', 'p', '--once']);
    expectFailure(run, 'CONFIG_NOT_FOUND');
    expect(run.stderr).toContain(`configuration file not found: ${join(ws.dir, 'tributary.yaml')}`);
    expectHint(run, '--config');
    expect(run.stdout).toBe('');
  });

  test('a YAML syntax error names the line and does not echo it', async () => {
    const ws = await workspace();
    await ws.write(
      'tributary.yaml',
      `warehouse: ./lakehouse
connections:
  src:
    type: mysql
    host: 127.0.0.1
    user: cdc
    password: "hunter2-in-broken-yaml" trailing
`,
    );
    const run = await ws.run(['run', 'p', '--once']);
    expectFailure(run, 'CONFIG_INVALID');
    expect(run.stderr).toContain(`${join(ws.dir, 'tributary.yaml')}: not valid YAML`);
    expect(run.stderr).toMatch(/line 7, column \d+: /);
    expectNotPrinted(run, 'hunter2-in-broken-yaml');
  });

  test('misspelt and unknown keys are reported by path and line, all in one pass', async () => {
    const ws = await workspace();
    await ws.write(
      'tributary.yaml',
      `warehouse: ./lakehouse
connections:
  src:
    type: mysql
    host: 127.0.0.1
    user: cdc
    password: "{{secrets/test/password}}"
    colour: blue
gateways:
  gw:
    connection: src
    storage: lake.landing.staging
pipelines:
  p:
    gateway: gw
    objects:
      - table:
          source_schema: shop
          source_tabel: customers
          destination_catalog: lake
          destination_schema: bronze
`,
    );
    const run = await ws.run(['run', 'p', '--once']);
    expectFailure(run, 'CONFIG_INVALID');
    expect(run.stderr).toContain(`${join(ws.dir, 'tributary.yaml')}: invalid configuration (3 problems)`);
    expect(run.stderr).toContain(
      'connections.src.colour: unknown key (allowed: type, host, database, port, user, password, ssl, retention_policy) (line 8)',
    );
    expect(run.stderr).toContain(
      'pipelines.p.objects[0].table.source_tabel: unknown key (did you mean "source_table"?) (line 19)',
    );
    expect(run.stderr).toContain('pipelines.p.objects[0].table.source_table: is required (line 17)');
  });

  test('a gateway that references an undefined connection names both', async () => {
    const ws = await workspace();
    await ws.write(
      'tributary.yaml',
      pipelineConfig({
        host: '127.0.0.1',
        port: 3306,
        user: 'cdc',
        objects: tableObject('shop', 'customers'),
      }).replace('connection: src', 'connection: source'),
    );
    const run = await ws.run(['run', 'p', '--once']);
    expectFailure(run, 'CONFIG_INVALID');
    expect(run.stderr).toContain(
      'gateways.gw.connection: connection "source" is not defined (defined: src) (line 11)',
    );
  });

  test('--config is honoured before or after the command', async () => {
    const ws = await workspace();
    // A tributary.yaml that would fail differently proves that it is not the file being read.
    await ws.write('tributary.yaml', 'not: [valid\n');
    const other = await ws.write('other.yaml', 'warehouse: ./lakehouse\n');
    for (const args of [
      ['--config', 'other.yaml', 'run', 'p', '--once'],
      ['run', 'p', '--once', '--config', 'other.yaml'],
      ['-c', other, 'run', 'p', '--once'],
    ]) {
      const run = await ws.run(args);
      expectFailure(run, 'PIPELINE_NOT_FOUND');
      expect(run.stderr).toContain(`No pipeline named "p" in ${other}.`);
    }
    const missing = await ws.run(['--config', 'nowhere/missing.yaml', 'sql', 'SELECT 1']);
    expectFailure(missing, 'CONFIG_NOT_FOUND');
    expect(missing.stderr).toContain(join(ws.dir, 'nowhere', 'missing.yaml'));
  });

  test('an unknown pipeline name lists the pipelines that are defined', async () => {
    const ws = await workspace();
    const config = pipelineConfig({
      host: '127.0.0.1',
      port: 3306,
      user: 'cdc',
      objects: tableObject('shop', 'customers'),
    });
    await ws.write(
      'tributary.yaml',
      `${config}  orders:\n    gateway: gw\n    objects:\n${tableObject('shop', 'orders')}`,
    );
    const run = await ws.run(['run', 'nope', '--once']);
    expectFailure(run, 'PIPELINE_NOT_FOUND');
    expect(run.stderr).toContain(`No pipeline named "nope" in ${join(ws.dir, 'tributary.yaml')}.`);
    expectHint(run, 'Pipelines defined there: p, orders.');
  });
});

describe('plaintext passwords', () => {
  test.each([
    ['a quoted string', '"Pl41n-Text-Passw0rd"', 'Pl41n-Text-Passw0rd'],
    ['an unquoted string', 'Pl41n-Text-Passw0rd', 'Pl41n-Text-Passw0rd'],
    ['a number', '86753091234', '86753091234'],
  ])('are refused when written as %s, without echoing them', async (_kind, yamlValue, secret) => {
    const ws = await workspace();
    await ws.write(
      'tributary.yaml',
      pipelineConfig({
        host: '127.0.0.1',
        port: 3306,
        user: 'cdc_user',
        objects: tableObject('shop', 'customers'),
      }).replace('password: "{{secrets/test/password}}"', `password: ${yamlValue}`),
    );
    for (const args of [
      ['run', 'p', '--once'],
      ['sql', 'SELECT 1'],
    ]) {
      const run = await ws.run(args);
      expectFailure(run, 'CONFIG_PLAINTEXT_SECRET');
      expect(run.stderr).toContain(
        'connections.src.password: must be a secret reference {{secrets/<scope>/<key>}}, not the password itself (line 8)',
      );
      expectHint(
        run,
        'tributary secrets create-scope --scope mysql_credentials',
        'tributary secrets put --scope mysql_credentials --key cdc_password',
        'password: "{{secrets/mysql_credentials/cdc_password}}"',
        'TRIBUTARY_SECRET_MYSQL_CREDENTIALS__CDC_PASSWORD',
      );
      expectNotPrinted(run, secret);
    }
  });

  test.each([
    ['a reference', '{{secrets/test/password}}', 'secrets/test/password'],
    ['a password', '{{Hunter2-In-Braces}}', 'Hunter2-In-Braces'],
  ])('an unquoted {{...}} around %s is explained without echoing it', async (_kind, yamlValue, inside) => {
    const ws = await workspace();
    await ws.write(
      'tributary.yaml',
      pipelineConfig({
        host: '127.0.0.1',
        port: 3306,
        user: 'cdc',
        objects: tableObject('shop', 'customers'),
      }).replace('password: "{{secrets/test/password}}"', `password: ${yamlValue}`),
    );
    const run = await ws.run(['run', 'p', '--once']);
    expectFailure(run, 'CONFIG_INVALID');
    expect(run.stderr).toContain('invalid configuration (1 problem)');
    expect(run.stderr).toContain(
      'connections.src.password: is written as {{...}} without quotes, which YAML reads as a mapping; quote the reference: password: "{{secrets/<scope>/<key>}}" (line 8)',
    );
    // The YAML library's own warning quoted the key, which is the value here.
    expect(run.stderr).not.toContain('Warning');
    expectNotPrinted(run, inside);
  });

  test('a malformed reference is reported without echoing it', async () => {
    const ws = await workspace();
    await ws.write(
      'tributary.yaml',
      pipelineConfig({
        host: '127.0.0.1',
        port: 3306,
        user: 'cdc',
        secret: '{{Hunter2-Almost-Ref}}',
        objects: tableObject('shop', 'customers'),
      }),
    );
    const run = await ws.run(['run', 'p', '--once']);
    expectFailure(run, 'CONFIG_INVALID');
    expect(run.stderr).toContain('connections.src.password: is not a valid secret reference');
    expectNotPrinted(run, 'Hunter2-Almost-Ref');
  });
});

describe('against the source database', () => {
  const suffix = randomBytes(4).toString('hex');
  const cdcUser = `cdc_${suffix}`;
  const cdcPassword = `Right-Pw-${randomBytes(6).toString('hex')}`;
  const wrongPassword = `Wrong-Pw-${randomBytes(6).toString('hex')}`;
  let db: FreshDatabase;
  let host: string;
  let port: number;

  beforeAll(async () => {
    ({ host, port } = inject('mysql'));
    db = await freshDatabase('cli_errors');
    await db.conn.query(
      `CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL);
       INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace');
       CREATE TABLE events (a INT NOT NULL, b VARCHAR(10));
       INSERT INTO events VALUES (7, 'seven');`,
    );
    const admin = await adminConnection();
    try {
      // The server runs with --skip-name-resolve, so the account is for the address, not "localhost".
      await admin.query(`CREATE USER ?@'127.0.0.1' IDENTIFIED BY ?`, [cdcUser, cdcPassword]);
      await admin.query(`GRANT SELECT ON \`${db.name}\`.* TO ?@'127.0.0.1'`, [cdcUser]);
      await admin.query(`GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO ?@'127.0.0.1'`, [cdcUser]);
    } finally {
      await admin.end();
    }
  });

  afterAll(async () => {
    const admin = await adminConnection();
    try {
      await admin.query(`DROP USER IF EXISTS ?@'127.0.0.1'`, [cdcUser]);
    } finally {
      await admin.end();
    }
    await db?.drop();
  });

  const config = (objects: string, overrides: { port?: number } = {}) =>
    pipelineConfig({ host: '127.0.0.1', port: overrides.port ?? port, user: cdcUser, objects });

  test('a missing secret names the scope, the key and the environment variable; setting it fixes the run', async () => {
    expect(host).toBe('127.0.0.1');
    const ws = await workspace();
    await ws.write('tributary.yaml', config(tableObject(db.name, 'customers')));

    const missing = await ws.run(['run', 'p', '--once']);
    expectFailure(missing, 'SECRET_NOT_FOUND');
    expect(missing.stderr).toContain('connections.src.password: secret test/password is not set');
    expect(missing.stderr).toContain(`environment variable ${SECRET_ENV} is not set`);
    expect(missing.stderr).toContain(`no key "password" in scope "test"`);
    expectHint(
      missing,
      'tributary secrets put --scope test --key password',
      `set the environment variable ${SECRET_ENV}`,
    );

    const fixed = await ws.run(['run', 'p', '--once'], { env: { [SECRET_ENV]: cdcPassword } });
    expectSuccess(fixed);
    expect(fixed.stdout).toBe('lake.bronze.customers: version 0, 2 inserted, 0 updated, 0 deleted\n');
    expectNotPrinted(fixed, cdcPassword);

    const rows = await ws.run([
      'sql',
      'SELECT id, name FROM lake.bronze.customers ORDER BY id',
      '--format',
      'json',
    ]);
    expectSuccess(rows);
    expect(JSON.parse(rows.stdout)).toEqual([
      { id: 1, name: 'Ada' },
      { id: 2, name: 'Grace' },
    ]);
  });

  test('a port where nothing listens is SOURCE_UNREACHABLE with a hint about host and port', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    await new Promise<void>((resolve, reject) => server.close((e) => (e ? reject(e) : resolve())));

    const ws = await workspace();
    await ws.write('tributary.yaml', config(tableObject(db.name, 'customers'), { port: address.port }));
    const run = await ws.run(['run', 'p', '--once'], { env: { [SECRET_ENV]: cdcPassword } });
    expectFailure(run, 'SOURCE_UNREACHABLE');
    expect(run.stderr).toContain(`connection "src" (127.0.0.1:${address.port})`);
    expect(run.stderr).toContain('ECONNREFUSED');
    expectHint(run, 'host and port');
    expectNotPrinted(run, cdcPassword);
    expect(run.stdout).toBe('');
  });

  test('a wrong stored password is SOURCE_AUTH_FAILED and neither password is printed', async () => {
    const ws = await workspace();
    await ws.write('tributary.yaml', config(tableObject(db.name, 'customers')));
    expectSuccess(await ws.run(['secrets', 'create-scope', '--scope', 'test']));
    const put = await ws.run(['secrets', 'put', '--scope', 'test', '--key', 'password'], {
      input: `${wrongPassword}\n`,
    });
    expectSuccess(put);
    expectNotPrinted(put, wrongPassword);

    const run = await ws.run(['run', 'p', '--once']);
    expectFailure(run, 'SOURCE_AUTH_FAILED');
    expect(run.stderr).toContain(`connection "src" (127.0.0.1:${port}) rejected user "${cdcUser}"`);
    expect(run.stderr).toContain('Access denied');
    expectHint(run, 'tributary secrets put');
    expectNotPrinted(run, wrongPassword, cdcPassword);

    // The fix the hint names: store the right password, and the same run succeeds.
    expectSuccess(
      await ws.run(['secrets', 'put', '--scope', 'test', '--key', 'password'], { input: `${cdcPassword}\n` }),
    );
    const fixed = await ws.run(['run', 'p', '--once']);
    expectSuccess(fixed);
    expect(fixed.stdout).toContain('lake.bronze.customers: version 0, 2 inserted');
    expectNotPrinted(fixed, wrongPassword, cdcPassword);
  });

  test('a source table that does not exist is named as db.table', async () => {
    const ws = await workspace();
    await ws.write('tributary.yaml', config(tableObject(db.name, 'no_such_table')));
    const run = await ws.run(['run', 'p', '--once'], { env: { [SECRET_ENV]: cdcPassword } });
    expectFailure(run, 'SOURCE_TABLE_NOT_FOUND');
    expect(run.stderr).toContain(`The source table "${db.name}.no_such_table" does not exist`);
    expectHint(run, 'source_schema and source_table', `GRANT SELECT ON ${db.name}.*`);
  });

  test('a table without a primary key is refused until table_configuration.primary_keys names one', async () => {
    const ws = await workspace();
    await ws.write('tributary.yaml', config(tableObject(db.name, 'events')));
    const env = { [SECRET_ENV]: cdcPassword };
    const refused = await ws.run(['run', 'p', '--once'], { env });
    expectFailure(refused, 'SOURCE_NO_PRIMARY_KEY');
    expect(refused.stderr).toContain(`The source table "${db.name}.events" has no primary key`);
    expectHint(refused, 'table_configuration.primary_keys');

    await ws.write(
      'tributary.yaml',
      config(tableObject(db.name, 'events', '          table_configuration: { primary_keys: [a] }\n')),
    );
    const fixed = await ws.run(['run', 'p', '--once'], { env });
    expectSuccess(fixed);
    expect(fixed.stdout).toBe('lake.bronze.events: version 0, 1 inserted, 0 updated, 0 deleted\n');
  });
});

describe('tributary sql', () => {
  async function emptyWarehouse(): Promise<Workspace> {
    const ws = await workspace();
    await mkdir(join(ws.dir, 'lakehouse'));
    // A full pipeline config whose secret is not set: sql reads no secrets and the warehouse has no tables.
    await ws.write(
      'tributary.yaml',
      pipelineConfig({
        host: '127.0.0.1',
        port: 3306,
        user: 'cdc',
        objects: tableObject('shop', 'customers'),
      }),
    );
    return ws;
  }

  test('a syntax error exits 1 with DuckDB parser message', async () => {
    const ws = await emptyWarehouse();
    const run = await ws.run(['sql', 'SELEC 1']);
    expectFailure(run, 'SQL_ERROR');
    expect(run.stderr).toContain('Parser Error: syntax error at or near "SELEC"');
    expect(run.stdout).toBe('');
  });

  test('--format json prints the rows as JSON and --format csv starts with a header line', async () => {
    const ws = await emptyWarehouse();
    const json = await ws.run(['sql', 'SELECT 42 AS answer', '--format', 'json']);
    expectSuccess(json);
    expect(JSON.parse(json.stdout)).toEqual([{ answer: 42 }]);

    const csv = await ws.run(['sql', "SELECT 42 AS answer, 'x,y' AS label", '--format', 'csv']);
    expectSuccess(csv);
    expect(csv.stdout.split('\r\n')).toEqual(['answer,label', '42,"x,y"', '']);

    const bad = await ws.run(['sql', 'SELECT 1', '--format', 'xml']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("argument 'xml' is invalid. Allowed choices are table, json, csv.");
  });
});

describe('usage', () => {
  test('--help lists the commands and an unknown command exits 2', async () => {
    const ws = await workspace();
    const help = await ws.run(['--help']);
    expect(help.code).toBe(0);
    for (const command of ['run', 'start', 'refresh', 'sql', 'status', 'preflight', 'secrets']) {
      expect(help.stdout).toMatch(new RegExp(`^ {2}${command} `, 'm'));
    }

    const bogus = await ws.run(['bogus']);
    expect(bogus.code).toBe(2);
    expect(bogus.stderr).toContain("unknown command 'bogus'");
    expect(bogus.stderr).toContain('tributary --help');

    const noPipeline = await ws.run(['run']);
    expect(noPipeline.code).toBe(2);
    expect(noPipeline.stderr).toContain("missing required argument 'pipeline'");
  });
});
