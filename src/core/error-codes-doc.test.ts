import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderErrorCodesDoc } from './error-codes-doc.js';
import { ERROR_CODES } from './errors.js';

const DOC = new URL('../../docs/error-codes.md', import.meta.url);

function readDoc(): string {
  try {
    return readFileSync(DOC, 'utf8');
  } catch (error) {
    // A missing file should fail with the same instruction as a stale one, not with ENOENT.
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw error;
  }
}

describe('docs/error-codes.md', () => {
  it('is generated from ERROR_CODES', () => {
    expect(readDoc(), 'docs/error-codes.md is out of date: run `node scripts/gen-error-codes.mjs`').toBe(
      renderErrorCodesDoc(ERROR_CODES),
    );
  });
});

describe('renderErrorCodesDoc', () => {
  it('lists every code once, with its retry class and meaning', () => {
    const doc = renderErrorCodesDoc(ERROR_CODES);
    for (const [code, { retry, doc: meaning }] of Object.entries(ERROR_CODES)) {
      const rows = doc.split('\n').filter((line) => line.startsWith(`| \`${code}\` |`));
      expect(rows).toEqual([`| \`${code}\` | \`${retry}\` | ${meaning} |`]);
    }
  });

  it('keeps a meaning with a pipe or a line break inside its table cell', () => {
    const doc = renderErrorCodesDoc({ X: { retry: 'fatal', doc: 'a | b\nc' } });
    expect(doc).toContain('| `X` | `fatal` | a \\| b c |');
  });

  it('shows how errors print', () => {
    const doc = renderErrorCodesDoc({});
    expect(doc).toContain('tributary: error[CODE]: message\n  hint: ');
  });
});
