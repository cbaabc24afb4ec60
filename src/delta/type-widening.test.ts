import { describe, expect, it } from 'vitest';
import type { StructField } from './schema.js';
import { isSupportedTypeChange, TYPE_CHANGES_KEY, typeChangesOf, widenField } from './type-widening.js';

describe('isSupportedTypeChange (the protocol type widening rules)', () => {
  it('allows the integer, floating point, date and decimal widenings', () => {
    const allowed: [string, string][] = [
      ['byte', 'short'],
      ['byte', 'integer'],
      ['byte', 'long'],
      ['short', 'integer'],
      ['short', 'long'],
      ['integer', 'long'],
      ['float', 'double'],
      ['byte', 'double'],
      ['short', 'double'],
      ['integer', 'double'],
      ['date', 'timestamp_ntz'],
      ['decimal(10,2)', 'decimal(20,2)'],
      ['decimal(10,2)', 'decimal(20,5)'],
      ['decimal(10,1)', 'decimal(12,3)'],
      ['decimal(10, 2)', 'decimal(38,2)'],
      ['byte', 'decimal(10,0)'],
      ['short', 'decimal(12,2)'],
      ['integer', 'decimal(10,0)'],
      ['integer', 'decimal(11,1)'],
      ['long', 'decimal(20,0)'],
      ['long', 'decimal(21,1)'],
    ];
    for (const [from, to] of allowed)
      expect([from, to, isSupportedTypeChange(from, to)]).toEqual([from, to, true]);
  });

  it('refuses narrowing, lossy and unrelated changes, and the same type', () => {
    const refused: [string, string][] = [
      ['long', 'integer'],
      ['integer', 'short'],
      ['double', 'float'],
      ['long', 'double'],
      ['integer', 'float'],
      ['integer', 'string'],
      ['string', 'integer'],
      ['date', 'timestamp'],
      ['timestamp', 'timestamp_ntz'],
      ['timestamp_ntz', 'date'],
      ['decimal(10,2)', 'decimal(11,4)'],
      ['decimal(10,2)', 'decimal(12,1)'],
      ['decimal(10,2)', 'decimal(9,2)'],
      ['decimal(30,2)', 'decimal(40,2)'],
      ['byte', 'decimal(4,1)'],
      ['integer', 'decimal(9,0)'],
      ['long', 'decimal(19,0)'],
      ['long', 'decimal(20,1)'],
      ['decimal(10,0)', 'long'],
      ['float', 'decimal(20,5)'],
      ['binary', 'string'],
      ['integer', 'integer'],
      ['decimal(10,2)', 'decimal(10, 2)'],
    ];
    for (const [from, to] of refused)
      expect([from, to, isSupportedTypeChange(from, to)]).toEqual([from, to, false]);
    expect(
      isSupportedTypeChange({ type: 'array', elementType: 'integer', containsNull: true }, 'string'),
    ).toBe(false);
  });
});

describe('widenField', () => {
  const field: StructField = { name: 'n', type: 'short', nullable: true, metadata: { comment: 'kept' } };

  it('records each change in delta.typeChanges, keeping earlier entries and other metadata', () => {
    const once = widenField(field, 'integer');
    expect(once).toEqual({
      name: 'n',
      type: 'integer',
      nullable: true,
      metadata: { comment: 'kept', [TYPE_CHANGES_KEY]: [{ toType: 'integer', fromType: 'short' }] },
    });
    const twice = widenField(once, 'decimal(22, 2)');
    expect(twice.type).toBe('decimal(22,2)');
    expect(typeChangesOf(twice)).toEqual([
      { toType: 'integer', fromType: 'short' },
      { toType: 'decimal(22,2)', fromType: 'integer' },
    ]);
    // The input is not modified.
    expect(field.metadata).toEqual({ comment: 'kept' });
  });

  it('refuses an unsupported change', () => {
    expect(() => widenField(field, 'string')).toThrow(/not a supported type widening/);
  });
});
