import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    exclude: ['test/faults/**', 'test/slow/**', 'test/browser/**', 'node_modules/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Two files at a time on a two-core machine (vitest's default would be one): every file has
    // its own database, queue prefix and folders, and most of a file's time is spent waiting on
    // PostgreSQL, Redis, workers and child processes.
    maxWorkers: 2,
    globalSetup: ['test/global-setup.ts'],
  },
});
