/**
 * Renders `docs/error-codes.md` from {@link ERROR_CODES}. Pure, so that the generator script (which runs the
 * built copy in `dist/`) and the unit test that keeps the committed file current produce the same bytes.
 */
import type { RetryClass } from './errors.js';

export type ErrorCodeTable = Readonly<Record<string, { readonly retry: RetryClass; readonly doc: string }>>;

/** Keyed by RetryClass, so a new class fails to compile until it is explained here. */
const RETRY_CLASS_MEANINGS: Readonly<Record<RetryClass, string>> = {
  transient:
    'Try again later with backoff: the network, a restarting server, a lock, a concurrent writer. Nothing needs to change.',
  resnapshot: "The source's history is gone; only a fresh snapshot of the affected tables can recover.",
  fatal:
    'A human must change something first (configuration, credentials, grants, the source server). Retrying alone will not help.',
};

/** A table cell must stay on one line and must not end the cell early. */
function cell(text: string): string {
  return text.replaceAll('\\', '\\\\').replaceAll('|', '\\|').replaceAll(/\r?\n/g, ' ');
}

export function renderErrorCodesDoc(codes: ErrorCodeTable): string {
  const lines = [
    '# Error codes',
    '',
    '<!-- Generated from ERROR_CODES in src/core/errors.ts by `node scripts/gen-error-codes.mjs`. Do not edit by hand. -->',
    '',
    'Every failure a user can see is a `TributaryError` with a stable code, a message that names the problem and,',
    'usually, a hint that names the fix. The command line prints it on stderr as',
    '',
    '```',
    'tributary: error[CODE]: message',
    '  hint: what to do about it',
    '```',
    '',
    'and exits with status 2 for `USAGE` errors and 1 for everything else. The hint line is left out when there',
    'is no hint. Anything thrown that is not a `TributaryError` is reported as `INTERNAL` (set `TRIBUTARY_DEBUG=1`',
    'to print its stack as well).',
    '',
    '## Retry classes',
    '',
    'Each error also carries a retry class, which is what a supervisor acts on; it never parses messages. The',
    "class in the table of codes is the code's default; the place that raises an error may override it for a",
    'particular case it understands better.',
    '',
    '| retry class | meaning |',
    '|---|---|',
    ...Object.entries(RETRY_CLASS_MEANINGS).map(([retry, meaning]) => `| \`${retry}\` | ${cell(meaning)} |`),
    '',
    '## Codes',
    '',
    '| code | retry class | meaning |',
    '|---|---|---|',
    ...Object.entries(codes).map(([code, { retry, doc }]) => `| \`${code}\` | \`${retry}\` | ${cell(doc)} |`),
    '',
  ];
  return lines.join('\n');
}
