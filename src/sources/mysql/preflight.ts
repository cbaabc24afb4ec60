/**
 * The source checks of the production checklist (reference 000, sections 1, 2 and 4) for MySQL and MariaDB.
 * Each check reports what it saw and, when it is not a PASS, the exact statement or setting that fixes it.
 * Evidence never includes a secret: grant lines are printed without their password hashes.
 */
import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import type mysql from 'mysql2/promise';
import type { Finding, ReadinessContext } from '../../core/ports.js';
import { tableKey } from '../../core/table.js';
import type { MySqlEndpoint } from './connect.js';
import { quoteIdent } from './sql.js';

const S1 = '1. MySQL Configuration';
const S2 = '2. MySQL Security and Access Control';
const S4 = '4. MySQL Performance Baseline';

async function variables(conn: mysql.Connection, names: readonly string[]): Promise<Map<string, string>> {
  const [rows] = await conn.query<mysql.RowDataPacket[]>('SHOW GLOBAL VARIABLES WHERE Variable_name IN (?)', [
    names,
  ]);
  return new Map(rows.map((r) => [String(r['Variable_name']).toLowerCase(), String(r['Value'])]));
}

function hours(seconds: number): string {
  return `${Math.round((seconds / 3600) * 10) / 10} h`;
}

/** Privileges named in `SHOW GRANTS` lines, by the object they apply to (`*.*`, `` `db`.* ``, ...). */
export function parseGrants(lines: readonly string[]): { on: string; privileges: string[] }[] {
  const grants: { on: string; privileges: string[] }[] = [];
  for (const line of lines) {
    const m = /^GRANT (.+?) ON (\S+) TO /i.exec(line);
    if (!m?.[1] || !m[2]) continue;
    grants.push({
      on: m[2].replaceAll('`', ''),
      privileges: m[1].split(',').map((p) => p.trim().toUpperCase()),
    });
  }
  return grants;
}

export function redactGrant(line: string): string {
  return line.replace(/IDENTIFIED (BY|VIA|WITH) .*/i, '').trim();
}

export async function runPreflight(
  conn: mysql.Connection,
  endpoint: MySqlEndpoint,
  context: ReadinessContext & { readonly replicaServerId: number },
): Promise<Finding[]> {
  const findings: Finding[] = [];
  const add = (f: Finding) => findings.push(f);
  const vars = await variables(conn, [
    'log_bin',
    'binlog_format',
    'gtid_mode',
    'gtid_strict_mode',
    'binlog_row_image',
    'binlog_row_metadata',
    'binlog_expire_logs_seconds',
    'expire_logs_days',
    'server_id',
    'have_ssl',
    'log_bin_basename',
    'version',
  ]);
  const mariadb = /mariadb/i.test(vars.get('version') ?? '');
  const v = (name: string) => vars.get(name) ?? '';

  // Section 1: the binlog.
  add(
    v('log_bin') === 'ON'
      ? {
          check: 'log_bin',
          section: S1,
          title: 'Binary logging enabled',
          status: 'PASS',
          evidence: 'log_bin = ON',
        }
      : {
          check: 'log_bin',
          section: S1,
          title: 'Binary logging enabled',
          status: 'FAIL',
          evidence: `log_bin = ${v('log_bin') || 'OFF'}`,
          fix: 'Start the server with log-bin=mysql-bin (my.cnf [mysqld]) and restart it.',
        },
  );
  add(
    v('binlog_format') === 'ROW'
      ? {
          check: 'binlog_format',
          section: S1,
          title: 'Binary log format is ROW',
          status: 'PASS',
          evidence: 'binlog_format = ROW',
        }
      : {
          check: 'binlog_format',
          section: S1,
          title: 'Binary log format is ROW',
          status: 'FAIL',
          evidence: `binlog_format = ${v('binlog_format')}`,
          fix: "SET GLOBAL binlog_format = 'ROW'; and binlog_format=ROW in my.cnf. STATEMENT and MIXED logs do not carry row values, so changes cannot be captured.",
        },
  );
  if (mariadb) {
    add({
      check: 'gtid',
      section: S1,
      title: 'GTID enabled (recommended)',
      status: v('gtid_strict_mode') === 'ON' ? 'PASS' : 'WARN',
      evidence: `MariaDB GTIDs are always on; gtid_strict_mode = ${v('gtid_strict_mode')}`,
      ...(v('gtid_strict_mode') === 'ON'
        ? {}
        : {
            fix: 'SET GLOBAL gtid_strict_mode = ON; and gtid_strict_mode=1 in my.cnf, so GTID order is reliable across failover.',
          }),
    });
  } else {
    add({
      check: 'gtid',
      section: S1,
      title: 'GTID enabled (recommended)',
      status: v('gtid_mode') === 'ON' ? 'PASS' : 'WARN',
      evidence: `gtid_mode = ${v('gtid_mode') || 'OFF'}`,
      ...(v('gtid_mode') === 'ON'
        ? {}
        : {
            fix: 'Enable gtid_mode=ON and enforce_gtid_consistency=ON so capture can continue on a new primary after failover.',
          }),
    });
  }
  const image = v('binlog_row_image');
  add(
    image === 'FULL'
      ? {
          check: 'binlog_row_image',
          section: S1,
          title: 'Row image is FULL',
          status: 'PASS',
          evidence: 'binlog_row_image = FULL',
        }
      : {
          check: 'binlog_row_image',
          section: S1,
          title: 'Row image is FULL',
          status: 'FAIL',
          evidence: `binlog_row_image = ${image}`,
          fix: `SET GLOBAL binlog_row_image = 'FULL'; and in my.cnf. ${image === 'MINIMAL' ? 'MINIMAL logs only changed columns and the key, so an update would null out every other column in bronze.' : 'NOBLOB leaves unchanged BLOB/TEXT columns out of updates, so they would be lost in bronze.'}`,
        },
  );
  if (vars.has('binlog_row_metadata')) {
    const full = v('binlog_row_metadata') === 'FULL';
    add({
      check: 'binlog_row_metadata',
      section: S1,
      title: 'Row metadata is FULL (recommended)',
      status: full ? 'PASS' : 'WARN',
      evidence: `binlog_row_metadata = ${v('binlog_row_metadata')}`,
      ...(full
        ? {}
        : {
            fix: "SET GLOBAL binlog_row_metadata = 'FULL'; and in my.cnf. Without column names in the log, capture follows each table's columns through the DDL it reads (its schema history), which covers ADD, DROP, MODIFY, CHANGE and RENAME but not every statement MySQL accepts; with FULL every row names its own columns.",
          }),
    });
  }

  // Retention against the checklist's formula.
  const r = context.retention;
  const requiredSeconds = 2 * (r.maxDowntimeHours + r.maxPipelineHours + r.bufferHours) * 3600;
  const expireSeconds =
    Number(v('binlog_expire_logs_seconds')) || Number(v('expire_logs_days')) * 86_400 || 0;
  const formula = `2 × (${r.maxDowntimeHours} h downtime + ${r.maxPipelineHours} h pipeline + ${r.bufferHours} h buffer) = ${hours(requiredSeconds)}`;
  add(
    expireSeconds === 0 || expireSeconds >= requiredSeconds
      ? {
          check: 'binlog_retention',
          section: S1,
          title: 'Binary log retention',
          status: 'PASS',
          evidence: `${expireSeconds === 0 ? 'binlogs never expire' : `binlog_expire_logs_seconds = ${expireSeconds} (${hours(expireSeconds)})`}; required ${formula}`,
        }
      : {
          check: 'binlog_retention',
          section: S1,
          title: 'Binary log retention',
          status: 'FAIL',
          evidence: `binlog_expire_logs_seconds = ${expireSeconds} (${hours(expireSeconds)}); required ${formula}`,
          fix: `SET GLOBAL binlog_expire_logs_seconds = ${requiredSeconds}; (and in my.cnf). Otherwise a pipeline that is down longer than the retention finds its position purged and needs a full refresh.`,
        },
  );

  // Disk usage: measurable only when the binlog directory is on this machine.
  const [logs] = await conn
    .query<mysql.RowDataPacket[]>('SHOW BINARY LOGS')
    .catch(() => [[] as mysql.RowDataPacket[]]);
  const total = logs.reduce((sum, l) => sum + Number(l['File_size'] ?? 0), 0);
  const base = v('log_bin_basename');
  const local = ['127.0.0.1', 'localhost', '::1'].includes(endpoint.host) && base !== '';
  const disk = local ? await statfs(dirname(base)).catch(() => undefined) : undefined;
  if (disk) {
    const used = 1 - Number(disk.bavail) / Number(disk.blocks);
    add({
      check: 'binlog_disk',
      section: S1,
      title: 'Binary log disk space',
      status: used >= 0.7 ? 'WARN' : 'PASS',
      evidence: `${logs.length} binlog file(s), ${(total / 2 ** 20).toFixed(1)} MiB; the disk holding ${dirname(base)} is ${(used * 100).toFixed(0)}% full`,
      ...(used >= 0.7
        ? {
            fix: 'Free space or add capacity before the disk fills: a full binlog disk stops writes on the source.',
          }
        : {}),
    });
  } else {
    add({
      check: 'binlog_disk',
      section: S1,
      title: 'Binary log disk space',
      status: 'INFO',
      evidence: `${logs.length} binlog file(s), ${(total / 2 ** 20).toFixed(1)} MiB; disk capacity is not visible from here (remote server)`,
      fix: 'Monitor the binlog disk on the server and alert at 70% (checklist section 1).',
    });
  }
  const serverId = Number(v('server_id'));
  add(
    serverId !== 0 && serverId !== context.replicaServerId
      ? {
          check: 'server_id',
          section: S1,
          title: 'Server ID set and unique',
          status: 'PASS',
          evidence: `server_id = ${serverId}; Tributary reads as ${context.replicaServerId}`,
        }
      : {
          check: 'server_id',
          section: S1,
          title: 'Server ID set and unique',
          status: 'FAIL',
          evidence: `server_id = ${serverId}; Tributary reads as ${context.replicaServerId}`,
          fix:
            serverId === 0
              ? 'Set server_id to a non-zero value unique in the topology (my.cnf) and restart.'
              : "Give the gateway a different server_id in tributary.yaml: the source's own id would collide.",
        },
  );

  // Section 2: the CDC user.
  const [grantRows] = await conn.query<mysql.RowDataPacket[]>('SHOW GRANTS');
  const lines = grantRows.map((g) => String(Object.values(g)[0]));
  const grants = parseGrants(lines);
  const [[me]] = (await conn.query('SELECT CURRENT_USER() AS u')) as unknown as [[{ u: string }]];
  const global = grants.filter((g) => g.on === '*.*').flatMap((g) => g.privileges);
  const has = (p: string) => global.includes(p) || global.includes('ALL PRIVILEGES');
  const missing: string[] = [];
  if (!has('REPLICATION SLAVE') && !has('REPLICATION REPLICA')) missing.push('REPLICATION SLAVE');
  if (!has('REPLICATION CLIENT') && !has('BINLOG MONITOR'))
    missing.push(mariadb ? 'BINLOG MONITOR (REPLICATION CLIENT)' : 'REPLICATION CLIENT');
  const schemas = new Set([...context.selection.schemas, ...context.selection.tables.map((t) => t.schema)]);
  for (const schema of schemas) {
    const canSelect = grants.some(
      (g) =>
        (g.on === '*.*' || g.on === `${schema}.*`) &&
        (g.privileges.includes('SELECT') || g.privileges.includes('ALL PRIVILEGES')),
    );
    const tablesOk = context.selection.tables
      .filter((t) => t.schema === schema)
      .every((t) => grants.some((g) => g.on === `${t.schema}.${t.table}` && g.privileges.includes('SELECT')));
    const tableOnly =
      context.selection.tables.some((t) => t.schema === schema) &&
      !context.selection.schemas.includes(schema);
    if (!canSelect && !(tableOnly && tablesOk)) missing.push(`SELECT ON ${schema}.*`);
  }
  const evidence = `${me.u}: ${lines.map(redactGrant).join('; ')}`;
  add(
    missing.length === 0
      ? {
          check: 'cdc_user_grants',
          section: S2,
          title: 'CDC user has the privileges capture needs',
          status: 'PASS',
          evidence,
        }
      : {
          check: 'cdc_user_grants',
          section: S2,
          title: 'CDC user has the privileges capture needs',
          status: 'FAIL',
          evidence,
          fix: missing
            .map(
              (m) =>
                `GRANT ${m.startsWith('SELECT') ? m : `${m.replace(/ \(.*\)$/, '')} ON *.*`} TO ${me.u.replace(/^([^@]*)@(.*)$/, "'$1'@'$2'")};`,
            )
            .join(' '),
        },
  );
  const excessive = grants.flatMap((g) =>
    g.privileges
      .filter((p) =>
        ['INSERT', 'UPDATE', 'DELETE', 'SUPER', 'ALL PRIVILEGES', 'DROP', 'ALTER', 'CREATE'].includes(p),
      )
      .map((p) => `${p} ON ${g.on}`),
  );
  add(
    excessive.length === 0
      ? {
          check: 'cdc_user_least_privilege',
          section: S2,
          title: 'CDC user has no write or admin privileges',
          status: 'PASS',
          evidence: 'no INSERT, UPDATE, DELETE, SUPER or ALL PRIVILEGES',
        }
      : {
          check: 'cdc_user_least_privilege',
          section: S2,
          title: 'CDC user has no write or admin privileges',
          status: 'FAIL',
          evidence: `has ${excessive.join(', ')}`,
          fix: `Create a dedicated CDC user with only SELECT, REPLICATION SLAVE and REPLICATION CLIENT, or REVOKE ${excessive.map((e) => e.split(' ON ')[0]).join(', ')} from it.`,
        },
  );
  const anyHost = me.u.endsWith('@%');
  add({
    check: 'cdc_user_host',
    section: S2,
    title: 'CDC user host restricted',
    status: anyHost ? 'WARN' : 'PASS',
    evidence: `connected as ${me.u}`,
    ...(anyHost
      ? {
          fix: "Acceptable in development; in production create the user for the gateway's address only, e.g. 'cdc_user'@'10.0.1.%'.",
        }
      : {}),
  });
  const [cipher] = await conn.query<mysql.RowDataPacket[]>("SHOW SESSION STATUS LIKE 'Ssl_cipher'");
  const encrypted = String(cipher[0]?.['Value'] ?? '') !== '';
  add({
    check: 'tls',
    section: S2,
    title: 'SSL/TLS to the source',
    status: encrypted ? 'PASS' : 'WARN',
    evidence: `have_ssl = ${v('have_ssl')}; this connection is ${encrypted ? `encrypted (${String(cipher[0]?.['Value'])})` : 'not encrypted'}`,
    ...(encrypted
      ? {}
      : {
          fix: 'Enable TLS on the server (ssl_cert, ssl_key) if your security policy requires encryption in transit.',
        }),
  });

  // Section 4: the captured tables.
  if (context.selection.tables.length + context.selection.schemas.length > 0) {
    const pairs = context.selection.tables.map((t) => [t.schema, t.table]);
    const [tables] = await conn.query<mysql.RowDataPacket[]>(
      `SELECT t.TABLE_SCHEMA AS s, t.TABLE_NAME AS n, t.TABLE_ROWS AS estimate, t.UPDATE_TIME AS updated,
              EXISTS(SELECT 1 FROM information_schema.STATISTICS i WHERE i.TABLE_SCHEMA = t.TABLE_SCHEMA
                       AND i.TABLE_NAME = t.TABLE_NAME AND i.NON_UNIQUE = 0
                       AND NOT EXISTS(SELECT 1 FROM information_schema.STATISTICS j
                                        JOIN information_schema.COLUMNS c ON c.TABLE_SCHEMA = j.TABLE_SCHEMA
                                         AND c.TABLE_NAME = j.TABLE_NAME AND c.COLUMN_NAME = j.COLUMN_NAME
                                       WHERE j.TABLE_SCHEMA = i.TABLE_SCHEMA AND j.TABLE_NAME = i.TABLE_NAME
                                         AND j.INDEX_NAME = i.INDEX_NAME AND c.IS_NULLABLE = 'YES')) AS keyed
         FROM information_schema.TABLES t
        WHERE t.TABLE_TYPE = 'BASE TABLE' AND (t.TABLE_SCHEMA IN (?) ${pairs.length > 0 ? 'OR (t.TABLE_SCHEMA, t.TABLE_NAME) IN (?)' : ''})
        ORDER BY t.TABLE_SCHEMA, t.TABLE_NAME`,
      // STATISTICS rather than TABLE_CONSTRAINTS: MariaDB hides constraints from a user with only SELECT.
      pairs.length > 0 ? [[...context.selection.schemas, ''], pairs] : [[...context.selection.schemas, '']],
    );
    for (const t of tables) {
      const key = `${t['s']}.${t['n']}`;
      const configured = context.selection.primaryKeys?.has(key) === true;
      const keyed = Number(t['keyed']) === 1 || configured;
      add({
        check: `primary_key:${key}`,
        section: S4,
        title: `${key} has a primary key or a unique index over NOT NULL columns`,
        status: keyed ? 'PASS' : 'FAIL',
        evidence: configured
          ? 'primary_keys configured in tributary.yaml'
          : Number(t['keyed']) === 1
            ? 'primary key or NOT NULL unique index present'
            : 'no primary key and no unique index over NOT NULL columns',
        ...(keyed
          ? {}
          : {
              fix: `ALTER TABLE ${quoteIdent(String(t['s']))}.${quoteIdent(String(t['n']))} ADD PRIMARY KEY (...); or set table_configuration.primary_keys in the pipeline.`,
            }),
      });
      add({
        check: `statistics:${key}`,
        section: S4,
        title: `${key} statistics`,
        status: 'INFO',
        evidence: `about ${t['estimate'] ?? '?'} rows (information_schema estimate)`,
        fix: `ANALYZE TABLE ${quoteIdent(String(t['s']))}.${quoteIdent(String(t['n']))}; keeps the estimate (used for snapshot progress) current.`,
      });
    }
    const found = new Set(tables.map((t) => `${t['s']}.${t['n']}`));
    for (const id of context.selection.tables) {
      if (!found.has(tableKey(id))) {
        add({
          check: `table_exists:${tableKey(id)}`,
          section: S4,
          title: `${tableKey(id)} exists`,
          status: 'FAIL',
          evidence: 'not found in information_schema (or not visible to the CDC user)',
          fix: `Check source_schema/source_table, and GRANT SELECT ON ${quoteIdent(id.schema)}.* to the CDC user.`,
        });
      }
    }
  }
  return findings;
}
