import { defineConfig } from 'vitest/config';

// The fault suite stops and starts the machine's PostgreSQL and Redis and kills processes:
// it runs alone, one file and one test at a time, after the main suite.
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    fileParallelism: false,
    sequence: { concurrent: false },
    testTimeout: 240_000,
    hookTimeout: 120_000,
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
  },
});
