/** Renders query results for the terminal (`table`), for programs (`json`) and for spreadsheets (`csv`). */
import type { QueryResult } from '../engine/sql-session.js';

export type OutputFormat = 'table' | 'json' | 'csv';

function text(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

export function renderTable(result: QueryResult): string {
  const { columns, rows } = result;
  const cells = rows.map((r) => columns.map((c) => text(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((row) => (row[i] ?? '').length)));
  const line = (values: readonly string[]) =>
    values
      .map((v, i) => v.padEnd(widths[i] ?? 0))
      .join(' | ')
      .trimEnd();
  const out = [line(columns), widths.map((w) => '-'.repeat(w)).join('-+-'), ...cells.map(line)];
  out.push(`(${rows.length} row${rows.length === 1 ? '' : 's'})`);
  return `${out.join('\n')}\n`;
}

function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  const s = typeof value === 'object' ? JSON.stringify(value) : String(value);
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

export function renderResult(result: QueryResult, format: OutputFormat): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(result.rows, null, 2)}\n`;
    case 'csv':
      return `${[result.columns.map(csvField).join(','), ...result.rows.map((r) => result.columns.map((c) => csvField(r[c])).join(','))].join('\r\n')}\r\n`;
    case 'table':
      return renderTable(result);
  }
}

/** One line per bronze table a round applied, as `run`, `start` and `refresh` print them. */
export function appliedLine(t: {
  readonly destination: string;
  readonly version: number | null;
  readonly inserted: number;
  readonly updated: number;
  readonly deleted: number;
}): string {
  return `${t.destination}: version ${t.version ?? '-'}, ${t.inserted} inserted, ${t.updated} updated, ${t.deleted} deleted\n`;
}
