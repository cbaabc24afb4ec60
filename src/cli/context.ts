/** What every command needs from the outside world; tests pass their own streams. */
export interface CliContext {
  readonly stdin: NodeJS.ReadableStream;
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /** The --config file, resolved when a command runs (default ./tributary.yaml). */
  configPath(): string;
}
