/**
 * Crash points for the fault-injection tests. `TRIBUTARY_FAULT=<point>[:<n>]` kills the process with
 * SIGKILL the n-th time (default 1st) it passes `<point>`: no cleanup, no flush, exactly like a power cut.
 * Unset in production, where every call is a cheap no-op.
 */
const spec = process.env['TRIBUTARY_FAULT'];
const [target, nth] = spec ? spec.split(':') : [];
const wanted = Number(nth ?? 1);
let seen = 0;

export async function faultPoint(point: string): Promise<void> {
  if (target === undefined || point !== target) return;
  seen++;
  if (seen === wanted) {
    process.kill(process.pid, 'SIGKILL');
    // SIGKILL is delivered asynchronously; never continue past the crash point.
    await new Promise(() => {});
  }
}
