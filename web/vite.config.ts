import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The console's build (docs/console.md): preact's JSX through vite's own transform (oxc), no
// plugin; every asset local and content-hashed under /console/assets; no inline script or style,
// so the strict CSP of src/http/console.ts holds. `npm run build:console` writes dist/console.
const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: '/console/',
  publicDir: false,
  logLevel: 'warn',
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
  build: {
    outDir: fileURLToPath(new URL('../dist/console', import.meta.url)),
    emptyOutDir: true,
    // Inlined assets would be data: URLs in CSS/JS; keep them files so img-src 'self' suffices.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    sourcemap: false,
    target: 'es2022',
  },
});
