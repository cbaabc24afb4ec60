import { describe, expect, it } from 'vitest';
import { IDLE_EVENT_INTERVAL_MS, type PipelineEvent, worthRecording } from './pipeline-events.js';

const event = (over: Partial<PipelineEvent>): PipelineEvent => ({
  eventId: 'e',
  eventType: 'update',
  pipelineName: 'p',
  gatewayName: 'g',
  updateId: 'u',
  timestamp: new Date(0),
  state: 'COMPLETED',
  message: 'up to date',
  errorCode: null,
  durationMs: 1,
  changesCaptured: 0,
  rowsInserted: 0,
  rowsUpdated: 0,
  rowsDeleted: 0,
  tablesApplied: 1,
  tablesFailed: 0,
  tableName: null,
  lagMs: null,
  details: null,
  ...over,
});

describe('worthRecording', () => {
  it('records idle successes at most once per interval per pipeline, and everything else always', () => {
    const t0 = 1_000_000_000_000;
    expect(worthRecording(event({ timestamp: new Date(t0) }))).toBe(true);
    expect(worthRecording(event({ timestamp: new Date(t0 + 1000) }))).toBe(false);
    expect(worthRecording(event({ pipelineName: 'q', timestamp: new Date(t0 + 1000) }))).toBe(true);
    expect(worthRecording(event({ timestamp: new Date(t0 + 2000), rowsUpdated: 1 }))).toBe(true);
    expect(worthRecording(event({ timestamp: new Date(t0 + 3000), state: 'FAILED' }))).toBe(true);
    expect(worthRecording(event({ timestamp: new Date(t0 + IDLE_EVENT_INTERVAL_MS) }))).toBe(true);
  });
});
