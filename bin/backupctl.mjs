#!/usr/bin/env node
// `npx backupctl` in a checkout: runs the TypeScript source through tsx's loader in this
// process. Cron hosts use the bundled dist/backupctl.mjs instead (npm run build:cli), which
// needs only Node.js.
import { register } from 'tsx/esm/api';

register();
await import(new URL('../src/cli/main.ts', import.meta.url).href);
