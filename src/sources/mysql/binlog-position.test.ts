import { describe, expect, it } from 'vitest';
import { isTributaryError } from '../../core/errors.js';
import {
  binlogDistance,
  decodeBinlogPosition,
  encodeBinlogPosition,
  type ServerIdentity,
} from './binlog-position.js';
import { gtidOrdinal, normalizeGtid } from './gtid.js';

const mariadb101: ServerIdentity = { flavor: 'mariadb', serverId: 101 };
const mariadb102: ServerIdentity = { flavor: 'mariadb', serverId: 102 };
const UUID = '3e11fa47-71ca-11e1-9e33-c80aa9429562';
const mysql1: ServerIdentity = { flavor: 'mysql', serverId: 1, serverUuid: UUID };

describe('MySQL positions', () => {
  it('encode file, offset, GTID state and server, and decode back', () => {
    const p = encodeBinlogPosition({
      file: 'mysql-bin.000003',
      offset: 1234,
      gtid: '0-101-40,1-5-2',
      server: mariadb101,
    });
    expect(p).toBe(
      '~000000000000000000000042 mysql-bin.000003:00000000000000001234 gtid=0-101-40,1-5-2 server=mariadb/101',
    );
    expect(decodeBinlogPosition(p)).toEqual({
      legacy: false,
      file: 'mysql-bin.000003',
      offset: 1234,
      gtid: '0-101-40,1-5-2',
      server: mariadb101,
      ordinal: 42n,
    });
    const m = encodeBinlogPosition({
      file: 'binlog.000001',
      offset: 4,
      gtid: `${UUID}:1-5:7`,
      server: mysql1,
    });
    expect(decodeBinlogPosition(m)).toMatchObject({ gtid: `${UUID}:1-5:7`, server: mysql1, ordinal: 6n });
    // No GTIDs at all (MySQL with gtid_mode=OFF): ordinal 0, empty state.
    const off = encodeBinlogPosition({ file: 'binlog.000001', offset: 4, gtid: '', server: mysql1 });
    expect(decodeBinlogPosition(off)).toMatchObject({ gtid: '', ordinal: 0n });
  });

  it('decode the plain <file>:<offset> positions staged before GTIDs were recorded', () => {
    expect(decodeBinlogPosition('mysql-bin.000003:00000000000000001234')).toEqual({
      legacy: true,
      file: 'mysql-bin.000003',
      offset: 1234,
    });
    // Every new position sorts after every old one: old ones were all written earlier.
    const newer = encodeBinlogPosition({ file: 'mysql-bin.000001', offset: 4, gtid: '', server: mariadb101 });
    expect('zz-bin.999999:99999999999999999999' < newer).toBe(true);
  });

  it('sort in log order on one server: by file and offset while the GTID state grows', () => {
    const at = (file: string, offset: number, seq: number) =>
      encodeBinlogPosition({ file, offset, gtid: `0-101-${seq}`, server: mariadb101 });
    const inOrder = [
      at('mysql-bin.000001', 385, 0),
      at('mysql-bin.000001', 900, 1),
      at('mysql-bin.000001', 10_000, 9),
      // A head read between transactions: same GTID state, further offset.
      at('mysql-bin.000001', 10_050, 9),
      at('mysql-bin.000002', 385, 9),
      at('mysql-bin.000002', 700, 10),
    ];
    expect([...inOrder].reverse().sort()).toEqual(inOrder);
  });

  it('sort the new primary after the old one across a failover, whatever their file names say', () => {
    const oldPrimary = encodeBinlogPosition({
      file: 'mysql-bin.000042',
      offset: 987_654,
      gtid: '0-101-500',
      server: mariadb101,
    });
    const newPrimary = encodeBinlogPosition({
      file: 'mysql-bin.000001',
      offset: 1_000,
      gtid: '0-102-501',
      server: mariadb102,
    });
    expect(oldPrimary < newPrimary).toBe(true);
  });

  it('refuse anything else as a corrupt staging position', () => {
    for (const bad of [
      '',
      'nonsense',
      'mysql-bin.000001:abc',
      '~12 mysql-bin.000001:00000000000000000004 gtid= server=oracle/1',
      '~12 mysql-bin.000001:00000000000000000004 gtid=0-1-1 server=mysql/1',
      `~12 mysql-bin.000001:00000000000000000004 gtid=${UUID}:1 server=mariadb/1`,
      '~x mysql-bin.000001:00000000000000000004 gtid= server=mariadb/1',
    ]) {
      try {
        decodeBinlogPosition(bad);
        expect.unreachable(bad);
      } catch (error) {
        expect(isTributaryError(error) && error.code).toBe('STAGING_CORRUPT');
      }
    }
  });
});

describe('GTID ordinal', () => {
  it('sums MariaDB sequence numbers over domains and counts MySQL GTIDs, tags included', () => {
    expect(gtidOrdinal('')).toBe(0n);
    expect(gtidOrdinal('0-101-42,1-5-7')).toBe(49n);
    expect(gtidOrdinal(`${UUID}:1-5:7-9,${UUID.replace('3e', '4f')}:1`)).toBe(9n);
    expect(gtidOrdinal(`${UUID}:1-5:tag_a:1-2`)).toBe(7n);
    expect(gtidOrdinal('0-1-18446744073709551615,1-1-18446744073709551615')).toBe(36893488147419103230n);
  });

  it('normalizes server text: whitespace, case and order', () => {
    expect(normalizeGtid('mysql', `${UUID.toUpperCase()}:1-5,\n${UUID.replace('3e', '0a')}:3`)).toBe(
      `${UUID.replace('3e', '0a')}:3,${UUID}:1-5`,
    );
    expect(normalizeGtid('mariadb', '1-5-7, 0-101-42')).toBe('0-101-42,1-5-7');
  });
});

describe('binlog distance (catch-up progress)', () => {
  const at = (file: string, offset: number, gtid: string) =>
    encodeBinlogPosition({ file, offset, gtid, server: mariadb101 });
  it('counts transactions by GTID, bytes within one file, and says nothing across files without GTIDs', () => {
    expect(binlogDistance(at('b.000001', 100, '0-101-10'), at('b.000004', 50, '0-101-35'))).toBe(25);
    expect(binlogDistance(at('b.000001', 100, ''), at('b.000001', 900, ''))).toBe(800);
    expect(binlogDistance(at('b.000001', 100, ''), at('b.000002', 900, ''))).toBeUndefined();
    expect(binlogDistance('b.000002:40', 'b.000002:100')).toBe(60);
  });
});
