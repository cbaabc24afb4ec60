import { describe, expect, it } from 'vitest';
import { decodeBinlogPosition, encodeBinlogPosition, type ServerIdentity } from './binlog-position.js';
import { planResume } from './resume-plan.js';

const UUID_A = '3e11fa47-71ca-11e1-9e33-c80aa9429562';
const UUID_B = '7b9d2c10-0c1e-11ef-8f3b-0242ac120002';
const mariadbA: ServerIdentity = { flavor: 'mariadb', serverId: 201 };
const mariadbB: ServerIdentity = { flavor: 'mariadb', serverId: 202 };
const mysqlA: ServerIdentity = { flavor: 'mysql', serverId: 1, serverUuid: UUID_A };
// A rebuilt MySQL server reusing server_id 1: a different server all the same.
const mysqlB: ServerIdentity = { flavor: 'mysql', serverId: 1, serverUuid: UUID_B };

const saved = (server: ServerIdentity, gtid: string) =>
  decodeBinlogPosition(encodeBinlogPosition({ file: 'mysql-bin.000003', offset: 1234, gtid, server }));

describe('planResume', () => {
  it('resumes by file and offset on the same server while the file exists', () => {
    expect(planResume(saved(mariadbA, '0-201-9'), mariadbA, true)).toEqual({
      kind: 'file',
      file: 'mysql-bin.000003',
      offset: 1234,
      gtid: '0-201-9',
      ordinal: 9n,
    });
  });

  it('resumes by GTID after a failover (another server_id, or another server_uuid)', () => {
    const plan = planResume(saved(mariadbA, '0-201-9'), mariadbB, true);
    expect(plan).toMatchObject({ kind: 'gtid', gtid: '0-201-9', ordinal: 9n, failover: true });
    expect(plan.kind === 'gtid' && plan.reason).toBe(
      'the saved position mysql-bin.000003:1234 was recorded on MariaDB server_id 201, but the connection now reaches MariaDB server_id 202',
    );
    expect(planResume(saved(mysqlA, `${UUID_A}:1-5`), mysqlB, false)).toMatchObject({
      kind: 'gtid',
      gtid: `${UUID_A}:1-5`,
      failover: true,
    });
  });

  it('tries the GTID state when the file is gone from the same server (the server refuses if history is purged)', () => {
    expect(planResume(saved(mariadbA, '0-201-9'), mariadbA, false)).toMatchObject({
      kind: 'gtid',
      failover: false,
      reason:
        'binlog file mysql-bin.000003 of the saved position mysql-bin.000003:1234 is no longer on MariaDB server_id 201',
    });
  });

  it('reports a purge when the file is gone and there is no GTID state to fall back on', () => {
    expect(planResume(saved(mysqlA, ''), mysqlA, false)).toEqual({ kind: 'purged' });
    expect(
      planResume(decodeBinlogPosition('mysql-bin.000003:00000000000000001234'), mariadbA, false),
    ).toEqual({
      kind: 'purged',
    });
  });

  it('cannot continue on another server without a GTID state, nor across flavors', () => {
    const noGtid = planResume(saved(mysqlA, ''), mysqlB, true);
    expect(noGtid.kind).toBe('lost');
    expect(noGtid.kind === 'lost' && noGtid.reason).toMatch(
      /recorded on MySQL server_id 1 \(server_uuid 3e11fa47.*\), but the connection now reaches MySQL server_id 1 \(server_uuid 7b9d2c10.*\), and the position has no GTID state \(gtid_mode was OFF\)/,
    );
    const crossFlavor = planResume(saved(mariadbA, '0-201-9'), mysqlA, true);
    expect(crossFlavor.kind === 'lost' && crossFlavor.reason).toMatch(
      /a MariaDB GTID state means nothing to MySQL/,
    );
  });

  it('resumes old positions (no identity recorded) by file and offset, their GTID state to be looked up', () => {
    expect(planResume(decodeBinlogPosition('mysql-bin.000003:00000000000000001234'), mariadbB, true)).toEqual(
      {
        kind: 'file',
        file: 'mysql-bin.000003',
        offset: 1234,
        gtid: undefined,
        ordinal: 0n,
      },
    );
  });
});
