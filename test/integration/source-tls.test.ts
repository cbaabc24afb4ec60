/**
 * TLS to the source, on a MariaDB started with its own certificate authority: verify_identity (verify-full)
 * connects when the certificate names the host, and each way it can go wrong gives a clear error.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureProgram } from '../../src/testing/ensure-program.js';
import { type LocalMariaDbServer, startMariaDb } from '../../src/testing/mariadb-server.js';
import { runCli } from '../harness/cli.js';
import { prepareShop, rootConnection, shopWorkspace } from '../harness/own-server.js';

/** A CA, a server certificate for the given subjectAltName, and an unrelated CA. */
function makeCertificates(openssl: string, dir: string, san: string, prefix: string): void {
  const run = (...args: string[]) => execFileSync(openssl, args, { cwd: dir, stdio: 'pipe' });
  writeFileSync(join(dir, `${prefix}ext.cnf`), `subjectAltName=${san}\n`);
  run(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=Tributary Test CA',
    '-keyout',
    `${prefix}ca.key`,
    '-out',
    `${prefix}ca.pem`,
  );
  run(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=mariadb',
    '-keyout',
    `${prefix}server.key`,
    '-out',
    `${prefix}server.csr`,
  );
  run(
    'x509',
    '-req',
    '-in',
    `${prefix}server.csr`,
    '-CA',
    `${prefix}ca.pem`,
    '-CAkey',
    `${prefix}ca.key`,
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    `${prefix}server.pem`,
    '-extfile',
    `${prefix}ext.cnf`,
  );
}

describe('TLS to the source', () => {
  let dir: string;
  let right: LocalMariaDbServer;
  let wrongName: LocalMariaDbServer;

  const start = (prefix: string, serverId: number) =>
    startMariaDb({
      serverId,
      extraArgs: [
        `--ssl-ca=${join(dir, `${prefix}ca.pem`)}`,
        `--ssl-cert=${join(dir, `${prefix}server.pem`)}`,
        `--ssl-key=${join(dir, `${prefix}server.key`)}`,
      ],
    });

  const passwords = new Map<LocalMariaDbServer, string>();

  async function prepare(server: LocalMariaDbServer): Promise<void> {
    const ddl = [
      'CREATE TABLE shop.t (id INT PRIMARY KEY, v VARCHAR(10))',
      "INSERT INTO shop.t VALUES (1, 'secure')",
    ];
    passwords.set(server, await prepareShop(server, ddl, { requireSsl: true }));
  }

  async function run(server: LocalMariaDbServer, ssl: string, args: string[] = ['run', 'p', '--once']) {
    const work = await shopWorkspace(dir, server, passwords.get(server) as string, ssl);
    return { work: work.dir, env: work.env, result: await work.cli(args) };
  }

  beforeAll(async () => {
    const openssl = await ensureProgram({
      binary: 'openssl',
      searchDirs: ['/usr/bin'],
      aptPackage: 'openssl',
    });
    dir = await mkdtemp(join(tmpdir(), 'tributary-tls-'));
    makeCertificates(openssl, dir, 'IP:127.0.0.1', 'a-');
    makeCertificates(openssl, dir, 'DNS:elsewhere.example', 'b-');
    makeCertificates(openssl, dir, 'IP:127.0.0.1', 'other-');
    right = await start('a-', 111);
    wrongName = await start('b-', 112);
    await prepare(right);
    await prepare(wrongName);
  });
  afterAll(async () => {
    await right?.stop();
    await wrongName?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('captures over verify_identity when the certificate names the host, and preflight sees the cipher', async () => {
    const ssl = `    ssl: { mode: verify_identity, ca: ${join(dir, 'a-ca.pem')} }`;
    const { work, env, result } = await run(right, ssl);
    expect(result.code, result.stderr).toBe(0);
    // A second run reads the binlog, whose connections are verified too.
    const admin = await rootConnection(right);
    await admin.query("INSERT INTO shop.t VALUES (2, 'streamed')");
    await admin.end();
    const again = await runCli(['run', 'p', '--once'], { cwd: work, env });
    expect(again.code, again.stderr).toBe(0);
    const rows = await runCli(['sql', 'SELECT id, v FROM lake.bronze.t ORDER BY id', '--format', 'json'], {
      cwd: work,
      env,
    });
    expect(JSON.parse(rows.stdout)).toEqual([
      { id: 1, v: 'secure' },
      { id: 2, v: 'streamed' },
    ]);
    const pre = await runCli(['preflight', 'src', '--format', 'json'], { cwd: work, env });
    const tls = (JSON.parse(pre.stdout) as Array<{ check: string; status: string; evidence: string }>).find(
      (f) => f.check === 'tls',
    );
    expect(tls?.status).toBe('PASS');
    expect(tls?.evidence).toContain('encrypted');
  });

  it('is refused without TLS when the user requires it', async () => {
    const { result } = await run(right, '');
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('SOURCE_AUTH_FAILED');
  });

  it('refuses a certificate from an authority it does not trust', async () => {
    const { result } = await run(right, `    ssl: { mode: verify_ca, ca: ${join(dir, 'other-ca.pem')} }`);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('SOURCE_TLS_FAILED');
    expect(result.stderr).toContain('ssl.ca');
  });

  it('refuses a certificate for another name under verify_identity, but accepts it under verify_ca', async () => {
    const identity = await run(wrongName, `    ssl: { mode: verify_identity, ca: ${join(dir, 'b-ca.pem')} }`);
    expect(identity.result.code).toBe(1);
    expect(identity.result.stderr).toContain('SOURCE_TLS_FAILED');
    const ca = await run(wrongName, `    ssl: { mode: verify_ca, ca: ${join(dir, 'b-ca.pem')} }`);
    expect(ca.result.code, ca.result.stderr).toBe(0);
  });

  it('names an unreadable CA file', async () => {
    const { result } = await run(right, `    ssl: { mode: verify_ca, ca: ${join(dir, 'missing.pem')} }`);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('connections.src.ssl.ca');
    expect(result.stderr).toContain('missing.pem');
  });
});
