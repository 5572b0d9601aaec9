import { defineConfig } from 'vitest/config';

// Slower suites than `npm test` allows (SPEC 11's pause over a ~1 GB database, SPEC 13's point-in-time
// recovery end to end): `npm run test:slow`,
// which .ci/run also runs. One file at a time.
export default defineConfig({
  test: {
    include: ['test/slow/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
  },
});
