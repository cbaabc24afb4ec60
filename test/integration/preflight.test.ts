/**
 * `tributary preflight` against a real MariaDB: each checklist check passes on a well-prepared source, fails
 * with evidence and the exact fix on a badly prepared one, and a failing source does not start a pipeline.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminConnection } from '../harness/mysql.js';
import { type PipelineFixture, pipelineFixture } from '../harness/pipeline-fixture.js';

interface Finding {
  check: string;
  status: string;
  evidence: string;
  fix?: string;
}

describe('tributary preflight', () => {
  let f: PipelineFixture;
  const preflight = async () => {
    const r = await f.cli(['preflight', 'src', '--format', 'json']);
    return { code: r.code, out: r.stdout + r.stderr, findings: JSON.parse(r.stdout || '[]') as Finding[] };
  };
  const asRoot = async (sql: string, params: unknown[] = []) => {
    const admin = await adminConnection();
    try {
      await admin.query(sql, params);
    } finally {
      await admin.end();
    }
  };

  beforeAll(async () => {
    f = await pipelineFixture({
      prefix: 'pre',
      setup: async (conn) => {
        await conn.query('CREATE TABLE t (id INT PRIMARY KEY, v INT)');
      },
    });
  });
  afterAll(async () => {
    await f?.[Symbol.asyncDispose]();
  });

  it('passes every required check on a well-prepared source, with evidence', async () => {
    const { code, findings, out } = await preflight();
    expect(code, out).toBe(0);
    const status = Object.fromEntries(findings.map((x) => [x.check, x.status]));
    expect(status).toMatchObject({
      log_bin: 'PASS',
      binlog_format: 'PASS',
      gtid: 'PASS',
      binlog_row_image: 'PASS',
      binlog_retention: 'PASS',
      server_id: 'PASS',
      cdc_user_grants: 'PASS',
      cdc_user_least_privilege: 'PASS',
      cdc_user_host: 'PASS',
      [`primary_key:${f.db.name}.t`]: 'PASS',
    });
    expect(findings.every((x) => x.evidence.length > 0)).toBe(true);
    // Grant lines are shown without the password hash, and the password itself never appears.
    expect(out).not.toContain(f.password);
    expect(out).not.toMatch(/PASSWORD '\*/);
  });

  it('fails on binlog retention shorter than the checklist formula, with the exact fix', async () => {
    await asRoot('SET GLOBAL binlog_expire_logs_seconds = 3600');
    try {
      const { code, findings } = await preflight();
      expect(code).toBe(1);
      const retention = findings.find((x) => x.check === 'binlog_retention');
      expect(retention?.status).toBe('FAIL');
      expect(retention?.evidence).toContain('48 h');
      expect(retention?.fix).toContain('SET GLOBAL binlog_expire_logs_seconds = 172800');
    } finally {
      await asRoot('SET GLOBAL binlog_expire_logs_seconds = 0');
    }
  });

  it('fails on a CDC user with write privileges or without replication privileges, and run refuses to start', async () => {
    await asRoot(`GRANT INSERT ON \`${f.db.name}\`.* TO ?@'127.0.0.1'`, [f.user]);
    await asRoot(`REVOKE REPLICATION SLAVE ON *.* FROM ?@'127.0.0.1'`, [f.user]);
    try {
      const { code, findings } = await preflight();
      expect(code).toBe(1);
      const least = findings.find((x) => x.check === 'cdc_user_least_privilege');
      expect(least?.status).toBe('FAIL');
      expect(least?.evidence).toContain('INSERT');
      const grants = findings.find((x) => x.check === 'cdc_user_grants');
      expect(grants?.status).toBe('FAIL');
      expect(grants?.fix).toContain('GRANT REPLICATION SLAVE ON *.*');

      const run = await f.cli(['run', 'p', '--once']);
      expect(run.code).toBe(1);
      expect(run.stderr).toContain('SOURCE_MISCONFIGURED');
      expect(run.stderr).toContain('cdc_user_least_privilege');
      expect(run.stderr).toContain('tributary preflight src');
      expect(existsSync(join(f.dir, 'lakehouse', 'retail_analytics', 'bronze', 't'))).toBe(false);
    } finally {
      await asRoot(`REVOKE INSERT ON \`${f.db.name}\`.* FROM ?@'127.0.0.1'`, [f.user]);
      await asRoot(`GRANT REPLICATION SLAVE ON *.* TO ?@'127.0.0.1'`, [f.user]);
    }
    await f.run();
  });

  it('answers the checklist connection statements through tributary sql, without the password', async () => {
    const tables = await f.sql(`SHOW TABLES IN ${f.db.name} USING CONNECTION src`);
    expect(tables).toEqual([{ database: f.db.name, tableName: 't', isTemporary: false }]);
    const described = await f.cli(['sql', 'DESCRIBE CONNECTION src', '--format', 'json']);
    expect(described.code, described.stderr).toBe(0);
    const info = Object.fromEntries(
      (JSON.parse(described.stdout) as Array<{ info_name: string; info_value: string }>).map((r) => [
        r.info_name,
        r.info_value,
      ]),
    );
    expect(info).toMatchObject({
      'Connection Name': 'src',
      'Connection Type': 'MYSQL',
      User: f.user,
      Password: 'secret test/password',
    });
    expect(described.stdout).not.toContain(f.password);
    const unknown = await f.cli(['sql', 'DESCRIBE CONNECTION nope']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("Connection 'nope' does not exist");
    expect(unknown.stderr).toContain('src');
    const missingDb = await f.cli(['sql', 'SHOW TABLES IN no_such_db USING CONNECTION src']);
    expect(missingDb.code).toBe(1);
    expect(missingDb.stderr).toContain('SOURCE_TABLE_NOT_FOUND');
  });

  it('takes the retention formula inputs from the connection config', async () => {
    await using short = await pipelineFixture({
      prefix: 'pre2',
      setup: async (conn) => {
        await conn.query('CREATE TABLE t (id INT PRIMARY KEY)');
      },
      connection:
        '    retention_policy: { max_downtime_hours: 0.25, max_pipeline_duration_hours: 0.25, buffer_hours: 0 }',
    });
    await asRoot('SET GLOBAL binlog_expire_logs_seconds = 3600');
    try {
      const r = await short.cli(['preflight', 'src']);
      expect(r.code, r.stdout).toBe(0);
      expect(r.stdout).toContain('PASS  Binary log retention');
      expect(r.stdout).toContain('= 1 h');
    } finally {
      await asRoot('SET GLOBAL binlog_expire_logs_seconds = 0');
    }
  });
});
