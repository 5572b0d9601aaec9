import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { createFileStore } from './file-store.js';

it('puts into a directory that deletes of its last keys keep pruning at the same time (found by the GC race test)', async () => {
  const root = await mkdtemp(path.join(tmpdir(), 'bk-prune-race-'));
  try {
    const store = createFileStore(root);
    const failures: unknown[] = [];
    // Two writers per directory put and delete their own keys over and over: a delete of the
    // last key prunes d/a/b/c, d/a/b, ... while the other writer's mkdir -p and open run, level by level.
    await Promise.all(
      Array.from({ length: 16 }, async (_, w) => {
        for (let i = 0; i < 150; i++) {
          const key = `${w % 8}/a/b/c/key-${w}-${i}`;
          try {
            await store.putBuffer(key, Buffer.from('x'));
            await store.delete(key);
          } catch (err) {
            failures.push(err);
          }
        }
      }),
    );
    expect(failures).toEqual([]);
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
