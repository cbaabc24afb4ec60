/**
 * Progress of long work (a snapshot, a full refresh, a catch-up of the log), as capture reports it through
 * the logger ({@link Logger.progress}). The stderr logger draws it as a bar with an ETA on a terminal and as a
 * log line every few seconds otherwise; a run also records it in `system.lakeflow.pipeline_events`.
 */

export interface WorkProgress {
  /** A first snapshot, a full refresh (a new snapshot of tables that had one), or a catch-up of the log. */
  readonly work: 'snapshot' | 'refresh' | 'catch-up';
  /** What the work covers, for messages: a snapshot's tables, a catch-up's gateway. */
  readonly subject: string;
  /** Units done so far (rows staged, changes staged). */
  readonly done: number;
  readonly unit: 'rows' | 'changes';
  /**
   * The estimated total, in `unit`: table statistics for a snapshot (they may be off either way, so it is
   * shown as "~" and never below `done`). Absent when nothing estimates it.
   */
  readonly total?: number;
  /**
   * Share of the work done, 0..1, when the total is not counted in `unit`: a catch-up measures how much of
   * the log between its start and the head it has read (bytes of WAL, transactions of the binlog).
   */
  readonly fraction?: number;
  /** Units per second since the work (or this process's part of it) started. */
  readonly ratePerSecond: number;
  /** Seconds left at the current rate; absent when unknown. */
  readonly etaSeconds?: number;
  readonly elapsedMs: number;
  readonly finished: boolean;
}

/** Turns counts into {@link WorkProgress}, with the rate and time left since it was created. */
export class ProgressMeter {
  readonly #startedAt = Date.now();

  constructor(
    private readonly work: WorkProgress['work'],
    private readonly subject: string,
    private readonly unit: WorkProgress['unit'],
    /** Units already done by an earlier process (a resumed snapshot); they do not count in the rate. */
    private readonly startDone = 0,
    private readonly total?: number,
  ) {}

  at(done: number, finished = false, fraction?: number): WorkProgress {
    const elapsedMs = Date.now() - this.#startedAt;
    const ratePerSecond = elapsedMs > 0 ? ((done - this.startDone) * 1000) / elapsedMs : 0;
    // While running the estimate never shows below what is done; at the end it is shown as it was.
    const total =
      this.total !== undefined && this.total > 0
        ? finished
          ? this.total
          : Math.max(this.total, done)
        : undefined;
    let etaSeconds: number | undefined;
    if (finished) etaSeconds = 0;
    else if (total !== undefined && ratePerSecond > 0) etaSeconds = (total - done) / ratePerSecond;
    else if (fraction !== undefined && fraction > 0 && fraction < 1)
      etaSeconds = ((elapsedMs / 1000) * (1 - fraction)) / fraction;
    return {
      work: this.work,
      subject: this.subject,
      done,
      unit: this.unit,
      ...(total === undefined ? {} : { total }),
      ...(fraction === undefined ? {} : { fraction: Math.min(1, Math.max(0, fraction)) }),
      ratePerSecond,
      ...(etaSeconds === undefined ? {} : { etaSeconds }),
      elapsedMs,
      finished,
    };
  }
}

/** 0..1 when known: counted against the estimate, or the share of the log read. */
export function shareDone(p: WorkProgress): number | undefined {
  if (p.finished) return 1;
  if (p.total !== undefined) return Math.min(1, p.done / p.total);
  return p.fraction;
}

const number = (n: number) => Math.round(n).toLocaleString('en-US');

/** "snapshot of shop.orders: 1,234 of ~10,000 rows (12%), 3,000 rows/s, about 3 s left". */
export function describeProgress(p: WorkProgress): string {
  const share = shareDone(p);
  const parts: string[] = [];
  if (p.finished) {
    const estimate = p.total === undefined ? '' : ` (estimated ~${number(p.total)})`;
    parts.push(`${number(p.done)} ${p.unit}${estimate} in ${formatDuration(p.elapsedMs / 1000)}`);
  } else if (p.total !== undefined) {
    parts.push(`${number(p.done)} of ~${number(p.total)} ${p.unit} (${Math.floor(100 * (share ?? 0))}%)`);
  } else if (share !== undefined) {
    parts.push(`${number(p.done)} ${p.unit} (${Math.floor(100 * share)}% of the log)`);
  } else {
    parts.push(`${number(p.done)} ${p.unit}`);
  }
  if (p.ratePerSecond > 0) parts.push(`${number(p.ratePerSecond)} ${p.unit}/s`);
  if (!p.finished && p.etaSeconds !== undefined) parts.push(`about ${formatDuration(p.etaSeconds)} left`);
  return `${p.work === 'catch-up' ? 'catch-up of' : `${p.work} of`} ${p.subject}: ${parts.join(', ')}${p.finished ? ' (complete)' : ''}`;
}

export function formatDuration(seconds: number): string {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** A terminal line: `[########------------]  40% ` followed by the description, cut to the width. */
export function progressBar(p: WorkProgress, columns: number): string {
  const share = shareDone(p);
  const width = 20;
  const filled = share === undefined ? 0 : Math.round(share * width);
  const bar =
    share === undefined
      ? `[${'?'.repeat(width)}]     `
      : `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.floor(100 * share)).padStart(3)}% `;
  const line = `${bar}${describeProgress(p)}`;
  return line.length > columns - 1 ? `${line.slice(0, Math.max(0, columns - 2))}…` : line;
}
