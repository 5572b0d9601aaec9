import { describe, expect, it } from 'vitest';
import { writeBehind } from './write-behind.js';

function recorder() {
  const started: string[] = [];
  const finishers: (() => void)[] = [];
  const flush = (file: string) => {
    started.push(file);
    return new Promise<void>((resolve) => finishers.push(resolve));
  };
  const finishAll = async () => {
    while (finishers.length > 0) finishers.shift()?.();
    await new Promise((r) => setImmediate(r));
  };
  return { started, flush, finishAll };
}

describe('writeBehind', () => {
  it('flushes a file only once lagBytes of later data went by, in order', async () => {
    const r = recorder();
    const wb = writeBehind('/d', { lagBytes: 100, concurrency: 8, flush: r.flush });
    wb.file('a', 50);
    wb.file('b', 40);
    expect(r.started).toEqual([]); // 90 bytes so far: nothing is 100 bytes behind
    wb.file('c', 60); // a ends at 50, now at 150
    expect(r.started).toEqual(['/d/a']);
    wb.file('d', 0);
    wb.file('e', 200); // b (90) and c (150) are now >= 100 behind 350; d (150) too
    expect(r.started).toEqual(['/d/a', '/d/b', '/d/c', '/d/d']);
    await r.finishAll();
    await wb.stop();
  });

  it('keeps at most `concurrency` flushes running and catches up as they finish', async () => {
    const r = recorder();
    const wb = writeBehind('/d', { lagBytes: 0, concurrency: 2, flush: r.flush });
    for (const name of ['a', 'b', 'c', 'd']) wb.file(name, 10);
    expect(r.started).toEqual(['/d/a', '/d/b']);
    await r.finishAll();
    expect(r.started).toEqual(['/d/a', '/d/b', '/d/c', '/d/d']);
    await r.finishAll();
    await wb.stop();
  });

  it('stop drops what is pending and waits for the flushes under way, failed ones included', async () => {
    let release!: () => void;
    const started: string[] = [];
    const wb = writeBehind('/d', {
      lagBytes: 0,
      concurrency: 1,
      flush: (file) => {
        started.push(file);
        return new Promise<void>((_resolve, reject) => (release = () => reject(new Error('EIO'))));
      },
    });
    wb.file('a', 1);
    wb.file('b', 1);
    let stopped = false;
    const stopping = wb.stop().then(() => (stopped = true));
    await new Promise((r) => setImmediate(r));
    expect(stopped).toBe(false);
    release();
    await stopping;
    expect(started).toEqual(['/d/a']);
    wb.file('c', 1);
    expect(started).toEqual(['/d/a']);
  });
});
