/**
 * The pipeline's log port. Lines go to stderr so stdout stays clean for results (`tributary sql`).
 * Secrets never reach a logger: callers pass names, never connection strings.
 */
import { describeProgress, progressBar, type WorkProgress } from './progress.js';

export interface Logger {
  info(message: string): void;
  warn(message: string): void;
  /**
   * Progress of long work, reported as often as the work likes (capture reports a few times a second at
   * most); the logger decides what to show. Optional: a logger without it shows none.
   */
  progress?(p: WorkProgress): void;
}

/** Where the stderr logger writes: process.stderr, or a stand-in with the same shape in tests. */
export interface LogStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

/** Without a terminal, long work logs a progress line this often (and once when it completes). */
export const PROGRESS_LOG_INTERVAL_MS = 10_000;
/** On a terminal, the bar appears once work has run this long, so short rounds draw nothing. */
const BAR_AFTER_MS = 1_000;
const BAR_REDRAW_MS = 200;

export function stderrLogger(
  quiet = false,
  stream: LogStream = process.stderr,
  env: NodeJS.ProcessEnv = process.env,
): Logger {
  // CI logs are files even when a pseudo-terminal is attached: they get lines, not carriage returns.
  const terminal = stream.isTTY === true && !env['CI'];
  let bar: { key: string; text: string; drawnAt: number } | undefined;
  const nextLine = new Map<string, number>();
  const logged = new Set<string>();

  const clearBar = () => {
    if (bar) stream.write('\r\x1b[K');
  };
  const redrawBar = () => {
    if (bar) stream.write(bar.text);
  };
  const write = (level: string, message: string) => {
    clearBar();
    stream.write(`${new Date().toISOString()} ${level} ${message}\n`);
    redrawBar();
  };

  const onTerminal = (p: WorkProgress, key: string) => {
    const now = Date.now();
    if (p.finished) {
      if (bar?.key === key) {
        stream.write('\r\x1b[K');
        bar = undefined;
      }
      // A bar was drawn, or the work was long enough to be worth a line of its own.
      if (p.elapsedMs >= BAR_AFTER_MS || p.work !== 'catch-up') write('INFO ', describeProgress(p));
      return;
    }
    if (p.elapsedMs < BAR_AFTER_MS) return;
    if (bar?.key === key && now - bar.drawnAt < BAR_REDRAW_MS) return;
    const text = progressBar(p, stream.columns ?? 100);
    stream.write(`\r\x1b[K${text}`);
    bar = { key, text, drawnAt: now };
  };

  const inLines = (p: WorkProgress, key: string) => {
    const now = Date.now();
    if (p.finished) {
      const wasLogged = logged.delete(key);
      nextLine.delete(key);
      // A short catch-up is a round's ordinary business; the round's own lines say what it applied.
      if (p.work !== 'catch-up' || wasLogged) write('INFO ', describeProgress(p));
      return;
    }
    // The first line comes one interval after the work started, so work shorter than that logs only its end.
    const due = nextLine.get(key) ?? now - p.elapsedMs + PROGRESS_LOG_INTERVAL_MS;
    nextLine.set(key, due);
    if (now < due) return;
    nextLine.set(key, now + PROGRESS_LOG_INTERVAL_MS);
    logged.add(key);
    write('INFO ', describeProgress(p));
  };

  return {
    info: (m) => {
      if (!quiet) write('INFO ', m);
    },
    warn: (m) => write('WARN ', m),
    progress: (p) => {
      if (quiet) return;
      const key = `${p.work}:${p.subject}`;
      if (terminal) onTerminal(p, key);
      else inLines(p, key);
    },
  };
}

export const silentLogger: Logger = { info: () => {}, warn: () => {} };
