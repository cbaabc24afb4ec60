/**
 * Collects what a pipeline round does as rows of `system.lakeflow.pipeline_events` and writes them without
 * holding the round up. Outcomes are queued and written together (a round's rows are one commit); long work
 * shows a RUNNING row once it has run {@link RUNNING_VISIBLE_AFTER_MS}, refreshed at most every
 * {@link RUNNING_REFRESH_MS} with its progress, and replaced by its outcome when it ends. Short work never
 * writes a RUNNING row, so a continuous pipeline's quick rounds cost one commit at most, and idle ones none
 * (a `run --once` shows its round at once: pipeline-rounds.ts decides when, with {@link RunningOperation.showAfter}).
 *
 * Recording never fails the round: a write that fails is a warning, and its rows are lost, not retried, so
 * a broken events table cannot pile up memory.
 */
import { messageOf, TributaryError } from '../core/errors.js';
import { faultPoint } from '../pipeline/fault-injection.js';
import type { Logger } from '../pipeline/logger.js';
import { type EventState, type EventWrite, newEventId, type PipelineEvent } from './pipeline-events.js';

/** Work still running after this long gets a RUNNING row (TRIBUTARY_RUNNING_EVENT_AFTER_SECONDS). */
export const RUNNING_VISIBLE_AFTER_MS = 5_000;

export function runningVisibleAfterMs(): number {
  const raw = process.env['TRIBUTARY_RUNNING_EVENT_AFTER_SECONDS'];
  if (raw === undefined || raw === '') return RUNNING_VISIBLE_AFTER_MS;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds < 0) {
    throw new TributaryError(
      'USAGE',
      `TRIBUTARY_RUNNING_EVENT_AFTER_SECONDS must be a number of seconds, not "${raw}".`,
    );
  }
  return seconds * 1000;
}
/** A RUNNING row is rewritten with newer progress at most this often. */
export const RUNNING_REFRESH_MS = 30_000;

/** An event without the fields the recorder fills in (ids, pipeline, gateway); counts default to 0. */
export type EventBody = Partial<
  Omit<PipelineEvent, 'eventId' | 'pipelineName' | 'gatewayName' | 'updateId' | 'eventType' | 'message'>
> &
  Pick<PipelineEvent, 'eventType' | 'message'>;

export interface EventSink {
  /** Writes one batch (one Delta commit); resolves to whether an interrupted round's row was found. */
  write(batch: EventWrite): Promise<{ interruptedRound: boolean }>;
  /** Runs a write in the background, after the ones before it (RoundResources.inBackground). */
  schedule(task: () => Promise<void>): void;
  readonly log: Logger;
}

export class EventRecorder {
  readonly #base: Pick<PipelineEvent, 'pipelineName' | 'gatewayName' | 'updateId'>;
  readonly #sink: EventSink;
  #pending: PipelineEvent[] = [];
  #replaces: string[] = [];
  /** Resolves when every write asked for so far has ended. */
  #written: Promise<void> = Promise.resolve();

  constructor(base: Pick<PipelineEvent, 'pipelineName' | 'gatewayName' | 'updateId'>, sink: EventSink) {
    this.#base = base;
    this.#sink = sink;
  }

  /** The row of a finished operation, written with the next flush; `about` names another pipeline it concerns. */
  record(body: EventBody, about?: { readonly pipelineName: string }): void {
    this.#pending.push({ ...this.event(newEventId(), body), ...about });
  }

  /** Work that may run long: shown as RUNNING once it has run a while, replaced by its outcome. */
  begin(body: EventBody, visibleAfterMs = runningVisibleAfterMs()): RunningOperation {
    return new RunningOperation(this, body, visibleAfterMs);
  }

  /**
   * Writes what is queued, in the background. A round calls it when it ends; RUNNING rows call it when they
   * become due.
   */
  flush(): Promise<void> {
    if (this.#pending.length === 0 && this.#replaces.length === 0) return Promise.resolve();
    const batch: EventWrite = { add: this.#pending, replaces: this.#replaces };
    this.#pending = [];
    this.#replaces = [];
    return this.#run(async () => {
      await this.#sink.write(batch);
      if (batch.add.some((e) => e.state === 'RUNNING')) await faultPoint('after-running-event');
    });
  }

  /**
   * A process died holding the pipeline's round (kill -9, power cut): its RUNNING rows become FAILED with
   * RUN_INTERRUPTED, and when it had not run long enough to show its round, `round` is recorded instead.
   */
  interrupted(
    dead: { updateId: string; pipelineName: string },
    message: string,
    round: EventBody,
  ): Promise<void> {
    return this.#run(async () => {
      const { interruptedRound } = await this.#sink.write({ add: [], interrupted: { ...dead, message } });
      if (!interruptedRound)
        await this.#sink.write({ add: [{ ...this.event(newEventId(), round), ...dead }] });
    });
  }

  /** Resolves when everything flushed so far is written (or failed, with a warning). */
  async settled(): Promise<void> {
    await this.#written;
  }

  /** @internal for RunningOperation */
  queue(event: PipelineEvent, replaces?: string): void {
    this.#pending.push(event);
    if (replaces !== undefined) this.#replaces.push(replaces);
  }

  /** The row of `body` under this recorder's pipeline, gateway and update id. */
  event(eventId: string, body: EventBody): PipelineEvent {
    return {
      ...this.#base,
      eventId,
      timestamp: body.timestamp ?? new Date(),
      eventType: body.eventType,
      state: body.state ?? 'COMPLETED',
      message: body.message,
      errorCode: body.errorCode ?? null,
      durationMs: body.durationMs ?? 0,
      changesCaptured: body.changesCaptured ?? 0,
      rowsInserted: body.rowsInserted ?? 0,
      rowsUpdated: body.rowsUpdated ?? 0,
      rowsDeleted: body.rowsDeleted ?? 0,
      tablesApplied: body.tablesApplied ?? 0,
      tablesFailed: body.tablesFailed ?? 0,
      tableName: body.tableName ?? null,
      lagMs: body.lagMs ?? null,
      details: body.details ?? null,
    };
  }

  /** Resolves when this task has run (a failure is a warning, not a rejection). */
  #run(task: () => Promise<void>): Promise<void> {
    const done = new Promise<void>((resolve) => {
      this.#sink.schedule(async () => {
        try {
          await task();
        } catch (error) {
          this.#sink.log.warn(`could not record in system.lakeflow.pipeline_events: ${messageOf(error)}`);
        } finally {
          resolve();
        }
      });
    });
    const before = this.#written;
    this.#written = Promise.all([before, done]).then(() => undefined);
    return done;
  }
}

/** One piece of work under way; see {@link EventRecorder.begin}. */
export class RunningOperation {
  readonly #recorder: EventRecorder;
  readonly eventId = newEventId();
  readonly #startedAt = Date.now();
  #body: EventBody;
  /** When its RUNNING row was handed to a write; undefined while it has none. */
  #shownAt: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #ended = false;

  /** `visibleAfterMs` Infinity: not until {@link showAfter} is called. */
  constructor(recorder: EventRecorder, body: EventBody, visibleAfterMs: number) {
    this.#recorder = recorder;
    this.#body = { ...body, timestamp: body.timestamp ?? new Date(this.#startedAt) };
    if (visibleAfterMs !== Number.POSITIVE_INFINITY) this.showAfter(visibleAfterMs);
  }

  /** Shows the RUNNING row once `ms` have passed (from now), unless the work has ended or shows already. */
  showAfter(ms: number): void {
    if (this.#ended || this.#shownAt !== undefined) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#show(), ms);
    // A pending row must not keep a finished process alive.
    this.#timer.unref();
  }

  /** Newer progress (counts, message, details); the RUNNING row shows it at its next refresh. */
  update(body: Partial<EventBody>): void {
    if (this.#ended) return;
    this.#body = { ...this.#body, ...body };
    if (this.#shownAt !== undefined && Date.now() - this.#shownAt >= RUNNING_REFRESH_MS) this.#show();
  }

  /**
   * The outcome, replacing the RUNNING row if there is one. `unlessShort`: work that never showed a RUNNING
   * row leaves no row at all (a quick catch-up is part of its round's row; an idle round is not worth one).
   * A shown row is replaced at once, and the promise says when that is written; otherwise the outcome waits
   * for the round's flush (undefined).
   */
  end(
    outcome: Partial<EventBody> & { state: Exclude<EventState, 'RUNNING'> },
    unlessShort = false,
  ): Promise<void> | undefined {
    if (this.#ended) return undefined;
    this.#ended = true;
    clearTimeout(this.#timer);
    const shown = this.#shownAt !== undefined;
    if (!shown && unlessShort) return undefined;
    const body = { ...this.#body, ...outcome, durationMs: Date.now() - this.#startedAt };
    this.#recorder.queue(this.#recorder.event(this.eventId, body), shown ? this.eventId : undefined);
    return shown ? this.#recorder.flush() : undefined;
  }

  #show(): void {
    if (this.#ended) return;
    const replaces = this.#shownAt !== undefined ? this.eventId : undefined;
    this.#recorder.queue(
      this.#recorder.event(this.eventId, {
        ...this.#body,
        state: 'RUNNING',
        durationMs: Date.now() - this.#startedAt,
      }),
      replaces,
    );
    this.#shownAt = Date.now();
    void this.#recorder.flush();
  }
}
