import { defineConfig } from 'vitest/config';

// The console's end-to-end suite (`npm run test:browser`, which .ci/run calls): a real stack with
// a worker, listening on a port, driven by Debian's chromium through playwright-core. One file
// at a time: each starts a browser. CONSOLE_BROWSER_TESTS tells the files they run here (under
// `npm test`'s config they skip, having no browser to rely on).
export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    env: { CONSOLE_BROWSER_TESTS: '1' },
    globalSetup: ['test/global-setup.ts'],
  },
});
