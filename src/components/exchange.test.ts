import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exchangePaths } from '../lib/exchange.js';
import { MemoryRepo, fromArray } from '../repo/memory-repo.test-helper.js';
import { directoryDriver } from './directory.js';
import { makeRestoreTemp, swapIntoPlace } from './restore-swap.js';

async function collect(stream: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * A thread that lstat()s `target` in a tight loop (no event loop in between, so it samples far
 * more often than a swap takes) until told to stop; answers how often it found nothing there.
 */
function watchTarget(target: string): { stop(): Promise<{ looks: number; missing: number }> } {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const { workerData, parentPort } = require('node:worker_threads');
     const { lstatSync } = require('node:fs');
     const stop = workerData.stop; let looks = 0, missing = 0;
     while (Atomics.load(stop, 0) === 0) {
       looks++;
       try { lstatSync(workerData.target); } catch (e) { if (e.code === 'ENOENT') missing++; else throw e; }
     }
     parentPort.postMessage({ looks, missing });`,
    { eval: true, workerData: { target, stop } },
  );
  const result = new Promise<{ looks: number; missing: number }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  return {
    async stop() {
      Atomics.store(stop, 0, 1);
      const r = await result;
      await worker.terminate();
      return r;
    },
  };
}

let base: string;
beforeAll(async () => {
  base = await realpath(await mkdtemp(path.join(tmpdir(), 'exchange-test-')));
});
afterAll(() => rm(base, { recursive: true, force: true }));

describe('exchangePaths', () => {
  it('swaps two directories in one step', async () => {
    const a = path.join(base, 'a');
    const b = path.join(base, 'b');
    await mkdir(a);
    await mkdir(b);
    await writeFile(path.join(a, 'in-a'), 'A');
    await writeFile(path.join(b, 'in-b'), 'B');
    expect(await exchangePaths(a, b)).toBe('exchanged');
    expect(await readdir(a)).toEqual(['in-b']);
    expect(await readdir(b)).toEqual(['in-a']);
  });

  it('reports a missing path as an errno error, changing nothing', async () => {
    const a = path.join(base, 'lonely');
    await mkdir(a);
    await expect(exchangePaths(a, path.join(base, 'nothing-here'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(lstatSync(a).isDirectory()).toBe(true);
  });
});

describe('swapIntoPlace', () => {
  it('replaces the target without it ever being missing, over many swaps', async () => {
    const target = path.join(base, 'site');
    mkdirSync(target);
    writeFileSync(path.join(target, 'gen'), '0');
    const watcher = watchTarget(target);
    for (let i = 1; i <= 100; i++) {
      const temp = await makeRestoreTemp(target);
      await writeFile(path.join(temp, 'gen'), String(i));
      await swapIntoPlace(temp, target);
    }
    const seen = await watcher.stop();
    expect(seen.looks).toBeGreaterThan(1000);
    expect(seen.missing).toBe(0);
    expect(readFileSync(path.join(target, 'gen'), 'utf8')).toBe('100');
    expect(readdirSync(base).filter((n) => n.startsWith('.site.'))).toEqual([]); // no leftovers
  });

  it('moves a tree into a target that does not exist yet', async () => {
    const target = path.join(base, 'fresh');
    const temp = await makeRestoreTemp(target);
    await writeFile(path.join(temp, 'x'), 'x');
    await swapIntoPlace(temp, target);
    expect(await readFile(path.join(target, 'x'), 'utf8')).toBe('x');
    expect(readdirSync(base).filter((n) => n.startsWith('.fresh.'))).toEqual([]);
  });
});

describe('directory restore swap', () => {
  it('never leaves the target missing while restores replace it', async () => {
    const dataRoot = mkdtempSync(path.join(base, 'data-'));
    const tree = path.join(dataRoot, 'apps/site');
    mkdirSync(tree, { recursive: true });
    writeFileSync(path.join(tree, 'index.html'), 'v1\n');
    const repo = new MemoryRepo();
    const manifest = await collect(directoryDriver.backup({ path: 'apps/site' }, { dataRoot, sink: repo, previous: null }).manifest);
    const watcher = watchTarget(tree);
    for (let i = 0; i < 25; i++) await directoryDriver.restore({ path: 'apps/site' }, { dataRoot, source: repo, manifest: fromArray([manifest]) });
    const seen = await watcher.stop();
    expect(seen.missing).toBe(0);
    expect(readFileSync(path.join(tree, 'index.html'), 'utf8')).toBe('v1\n');
    expect(readdirSync(path.join(dataRoot, 'apps'))).toEqual(['site']);
    rmSync(dataRoot, { recursive: true, force: true });
  });
});
