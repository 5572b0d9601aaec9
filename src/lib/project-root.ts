import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The repository's root: the nearest directory above this module with a package.json. The same
 * from src/lib/ (under tsx or vitest) and from dist/src/lib/ (the build `npm start` runs,
 * scripts/build-service.mjs), so paths to prisma/, web/ and dist/console/ need no depth of their own.
 */
export const PROJECT_ROOT: string = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
})();
