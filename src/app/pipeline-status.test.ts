import { describe, expect, it } from 'vitest';
import { asPosition } from '../core/position.js';
import { captureLag } from './pipeline-status.js';

const now = new Date('2026-03-01T12:00:00.000Z');
const p = (n: number) =>
  asPosition(`~${String(n).padStart(24, '0')} bin.000001:${String(n).padStart(20, '0')}`);
const base = { now, sourceError: null, snapshotting: false };

describe('captureLag', () => {
  it('is 0 when the staged position is the head now: an idle source, caught up', () => {
    const lag = captureLag({ ...base, staged: p(5), head: p(5), contact: undefined });
    expect(lag).toEqual({
      caughtUp: true,
      seconds: 0,
      capturedThrough: now.toISOString(),
      lastContact: now.toISOString(),
      secondsSinceContact: 0,
      reason: `caught up with the source at ${now.toISOString()}`,
    });
  });

  it('is 0 when the last round read through the head and the change-free stretch is not sealed yet', () => {
    const lag = captureLag({
      ...base,
      staged: p(5),
      head: p(9),
      contact: { at: '2026-03-01T11:59:50.000Z', head: p(9) },
    });
    expect(lag.seconds).toBe(0);
    expect(lag.reason).toMatch(/^caught up with the source at .*no change of the captured tables/);
  });

  it('grows from the last completed round when the source has moved on since', () => {
    const lag = captureLag({
      ...base,
      staged: p(5),
      head: p(12),
      contact: { at: '2026-03-01T11:59:30.000Z', head: p(9) },
    });
    expect(lag).toMatchObject({
      caughtUp: false,
      seconds: 30,
      capturedThrough: '2026-03-01T11:59:30.000Z',
      secondsSinceContact: 0,
    });
    // Behind is never shown as 0, however recent the last round.
    const justNow = { at: '2026-03-01T11:59:59.990Z', head: p(9) };
    expect(captureLag({ ...base, staged: p(5), head: p(12), contact: justNow })).toMatchObject({
      caughtUp: false,
      seconds: 0.1,
    });
    expect(lag.reason).toMatch(/^behind the source: every change committed before 2026-03-01T11:59:30.000Z/);
    // Without a recorded round, behind is all that is known.
    expect(captureLag({ ...base, staged: p(5), head: p(12), contact: undefined }).seconds).toBeNull();
  });

  it('is unknown, never 0, when the source cannot be reached, and says since when', () => {
    const lag = captureLag({
      ...base,
      sourceError: 'SOURCE_UNREACHABLE: ECONNREFUSED',
      staged: p(5),
      head: null,
      contact: { at: '2026-03-01T11:00:00.000Z', head: p(5) },
    });
    expect(lag).toMatchObject({
      caughtUp: false,
      seconds: null,
      lastContact: '2026-03-01T11:00:00.000Z',
      secondsSinceContact: 3600,
    });
    expect(lag.reason).toMatch(
      /^the source cannot be reached \(SOURCE_UNREACHABLE: ECONNREFUSED\): the lag is unknown, and grows from the last successful contact at 2026-03-01T11:00:00.000Z \(3600 s ago\)/,
    );
    const never = captureLag({ ...base, sourceError: 'x', staged: p(5), head: null, contact: undefined });
    expect(never).toMatchObject({ seconds: null, lastContact: null, secondsSinceContact: null });
  });

  it('is unknown before the first snapshot completes', () => {
    expect(captureLag({ ...base, staged: null, head: p(5), contact: undefined }).seconds).toBeNull();
    expect(
      captureLag({ ...base, snapshotting: true, staged: p(3), head: p(5), contact: undefined }).seconds,
    ).toBeNull();
  });
});
