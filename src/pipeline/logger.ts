/**
 * The pipeline's log port. Lines go to stderr so stdout stays clean for results (`tributary sql`).
 * Secrets never reach a logger: callers pass names, never connection strings.
 */
export interface Logger {
  info(message: string): void;
  warn(message: string): void;
}

export function stderrLogger(quiet = false): Logger {
  const write = (level: string, message: string) => {
    process.stderr.write(`${new Date().toISOString()} ${level} ${message}\n`);
  };
  return {
    info: (m) => {
      if (!quiet) write('INFO ', m);
    },
    warn: (m) => write('WARN ', m),
  };
}

export const silentLogger: Logger = { info: () => {}, warn: () => {} };
