import { defineConfig } from 'vitest/config';

// Unit tests sit beside the code and need nothing running. Integration tests start real servers once, in
// the global setup, and share them; they run files serially because they share those servers. Chaos
// scenarios start servers of their own, because they kill them.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['src/**/*.test.ts', 'test/contracts/**/*.test.ts'],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/harness/global-setup.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
      {
        // Fault injection (issue 7): each file starts, kills and restarts servers of its own. npm test runs
        // the short version; `npm run chaos` sets TRIBUTARY_CHAOS=long.
        test: {
          name: 'chaos',
          include: ['test/chaos/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: process.env['TRIBUTARY_CHAOS'] === 'long' ? 3_600_000 : 600_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
