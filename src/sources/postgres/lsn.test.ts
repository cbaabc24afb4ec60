import { describe, expect, it } from 'vitest';
import { TributaryError } from '../../core/errors.js';
import { decodePgPosition, encodePgPosition, formatLsn, parseLsn } from './lsn.js';

describe('LSN text form', () => {
  it('parses and formats X/Y as PostgreSQL prints it', () => {
    expect(parseLsn('16/B374D848')).toBe(0x16_b374_d848n);
    expect(parseLsn('0/0')).toBe(0n);
    expect(parseLsn('ffffffff/ffffffff')).toBe((1n << 64n) - 1n);
    expect(formatLsn(0x16_b374_d848n)).toBe('16/B374D848');
    expect(formatLsn(0x1_0000_0001n)).toBe('1/1');
    expect(formatLsn(0n)).toBe('0/0');
  });

  it('rejects what is not an LSN', () => {
    for (const bad of ['', '16', '16/', '/1', '1/2/3', 'G/1', '123456789/0']) {
      expect(() => parseLsn(bad)).toThrow(TributaryError);
    }
    expect(() => formatLsn(-1n)).toThrow(TributaryError);
    expect(() => formatLsn(1n << 64n)).toThrow(TributaryError);
  });
});

describe('PostgreSQL positions', () => {
  it('round-trips through 16 upper-case hex digits', () => {
    expect(encodePgPosition(0x16_b374_d848n)).toBe('00000016B374D848');
    expect(decodePgPosition(encodePgPosition(0x16_b374_d848n))).toBe(0x16_b374_d848n);
    expect(encodePgPosition((1n << 64n) - 1n)).toBe('FFFFFFFFFFFFFFFF');
  });

  it('sorts as strings in log order', () => {
    const lsns = [0n, 0xffn, 0x1_0000_0000n, 0xa_0000_0000n, 0x10_0000_0000n, 0xabn];
    const byString = lsns.map(encodePgPosition).sort();
    const byNumber = [...lsns].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)).map(encodePgPosition);
    expect(byString).toEqual(byNumber);
  });

  it('refuses garbage as a corrupt staging position', () => {
    for (const bad of ['', '16/B374D848', '00000016b374d848', '0000016B374D848', 'mysql-bin.000001:4']) {
      try {
        decodePgPosition(bad);
        expect.unreachable(`accepted ${bad}`);
      } catch (error) {
        expect(error).toBeInstanceOf(TributaryError);
        expect((error as TributaryError).code).toBe('STAGING_CORRUPT');
      }
    }
  });
});
