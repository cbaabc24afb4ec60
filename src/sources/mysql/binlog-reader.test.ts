import { describe, expect, it } from 'vitest';
import { truncatedTable } from './binlog-reader.js';

describe('truncatedTable', () => {
  const captured = new Set(['shop.orders', 'shop.odd`name', 'other.t']);

  it('resolves unqualified names against the session database', () => {
    expect(truncatedTable('TRUNCATE TABLE orders', 'shop', captured)).toEqual({
      schema: 'shop',
      table: 'orders',
    });
    expect(truncatedTable('truncate orders', 'shop', captured)).toEqual({ schema: 'shop', table: 'orders' });
    expect(truncatedTable('TRUNCATE orders', 'other', captured)).toBeUndefined();
  });

  it('reads qualified and backquoted names, with doubled backquotes', () => {
    expect(truncatedTable('TRUNCATE TABLE `other`.`t`', 'shop', captured)).toEqual({
      schema: 'other',
      table: 't',
    });
    expect(truncatedTable('TRUNCATE `odd``name`', 'shop', captured)).toEqual({
      schema: 'shop',
      table: 'odd`name',
    });
  });

  it('ignores tables that are not captured', () => {
    expect(truncatedTable('TRUNCATE TABLE shop.customers', 'shop', captured)).toBeUndefined();
  });
});
