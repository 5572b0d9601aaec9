import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { childEnv, runWithInput, spawnChunks, spawnOutput, StderrTail } from './process.js';
import { ComponentError } from './types.js';

async function collect(stream: Readable): Promise<string> {
  let out = '';
  await pipeline(stream, new Writable({ write(chunk: Buffer, _e, cb) { out += chunk.toString(); cb(); } }));
  return out;
}

const opts = { label: 'sh', env: childEnv() };

describe('spawnOutput', () => {
  it('ends with all of stdout when the tool exits 0', async () => {
    expect(await collect(spawnOutput('sh', ['-c', 'echo one; sleep 0.1; echo two'], opts))).toBe('one\ntwo\n');
  });

  it('errors, after the output it produced, when the tool exits non-zero', async () => {
    const err = await collect(spawnOutput('sh', ['-c', 'echo partial; echo "it broke" >&2; exit 3'], opts)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentError);
    expect((err as Error).message).toBe('sh failed: it broke');
    const silent = await collect(spawnOutput('sh', ['-c', 'exit 4'], opts)).catch((e: unknown) => e);
    expect((silent as Error).message).toBe('sh exited with code 4');
  });

  it('errors when the tool cannot be started', async () => {
    const err = await collect(spawnOutput('no-such-tool-xyz', [], { ...opts, label: 'no-such-tool-xyz' })).catch((e: unknown) => e);
    expect((err as Error).message).toBe('could not start no-such-tool-xyz: ENOENT');
  });

  it('redacts stderr and keeps only its tail', async () => {
    const script = 'i=0; while [ $i -lt 2000 ]; do echo "noise line $i" >&2; i=$((i+1)); done; echo "token hunter2" >&2; exit 1';
    const err = await collect(spawnOutput('sh', ['-c', script], { ...opts, redact: (s) => s.replaceAll('hunter2', '***') })).catch((e: unknown) => e);
    const message = (err as Error).message;
    expect(message.length).toBeLessThanOrEqual('sh failed: '.length + 4096);
    expect(message.endsWith('token ***')).toBe(true);
    expect(message).not.toContain('noise line 0\n');
  });

  it('does not leak the environment of the service', async () => {
    process.env.SOME_SERVICE_SECRET = 'leak';
    try {
      expect(await collect(spawnOutput('sh', ['-c', 'echo "[$SOME_SERVICE_SECRET]"'], { label: 'sh', env: childEnv() }))).toBe('[]\n');
    } finally {
      delete process.env.SOME_SERVICE_SECRET;
    }
  });
});

/** What a consumer that copies each piece before asking for the next (as the repository writer) sees. */
async function drain(it: AsyncIterable<Buffer>, onPiece?: (n: number) => Promise<void> | void): Promise<{ sha: string; bytes: number; pieces: number }> {
  const h = createHash('sha256');
  let bytes = 0;
  let pieces = 0;
  for await (const b of it) {
    h.update(Buffer.from(b)); // a copy now: the memory is reused after the next pull
    bytes += b.length;
    pieces++;
    await onPiece?.(pieces);
  }
  return { sha: h.digest('hex'), bytes, pieces };
}

const leftovers = async () => (await readdir(tmpdir())).filter((n) => n.startsWith('bk-out-'));

describe('spawnChunks', () => {
  // 24 MiB of a deterministic byte pattern, made by the tool itself
  const script = 'i=0; while [ $i -lt 24 ]; do head -c 1048576 /dev/zero | tr "\\0" "$(printf "\\\\%03o" $((i + 65)))"; i=$((i+1)); done';
  const expected = (() => {
    const h = createHash('sha256');
    for (let i = 0; i < 24; i++) h.update(Buffer.alloc(1048576, i + 65));
    return h.digest('hex');
  })();

  it('yields every byte of stdout, in order, through reused buffers, and ends once the tool exited 0', async () => {
    const before = await leftovers();
    const fast = await drain(spawnChunks('sh', ['-c', script], opts));
    expect(fast).toMatchObject({ sha: expected, bytes: 24 * 1048576 });
    // a consumer slower than the tool: reading pauses while every buffer is queued, and nothing is lost or overwritten
    const slow = await drain(spawnChunks('sh', ['-c', script], opts), (n) => (n % 8 === 0 ? new Promise((r) => setTimeout(r, 20)) : undefined));
    expect(slow).toMatchObject({ sha: expected, bytes: 24 * 1048576 });
    expect(await leftovers()).toEqual(before); // the socket's private directory is gone
  });

  it('errors, after the output it produced, when the tool exits non-zero or cannot start', async () => {
    const err = await drain(spawnChunks('sh', ['-c', 'echo partial; echo "it broke" >&2; exit 3'], opts)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentError);
    expect((err as Error).message).toBe('sh failed: it broke');
    const missing = await drain(spawnChunks('no-such-tool-xyz', [], { ...opts, label: 'no-such-tool-xyz' })).catch((e: unknown) => e);
    expect((missing as Error).message).toBe('could not start no-such-tool-xyz: ENOENT');
  });

  it('an abort or a consumer that stops early kills the tool', async () => {
    const ac = new AbortController();
    const started = Date.now();
    setTimeout(() => ac.abort(), 200);
    const err = await drain(spawnChunks('sh', ['-c', 'echo first; sleep 30; echo never'], { ...opts, signal: ac.signal })).catch((e: unknown) => e);
    expect((err as Error).name).toBe('AbortError');
    expect(Date.now() - started).toBeLessThan(5000);
    const marker = `bk-spawn-chunks-${process.pid}`;
    for await (const _ of spawnChunks('yes', [marker], { ...opts, label: 'yes' })) break;
    await new Promise((r) => setTimeout(r, 200));
    const { execFileSync } = await import('node:child_process');
    expect(execFileSync('ps', ['-eo', 'args']).toString()).not.toContain(marker);
  });
});

describe('runWithInput', () => {
  it('resolves when the tool consumed the input and exited 0', async () => {
    await runWithInput('sh', ['-c', 'test "$(cat)" = "hello"'], Readable.from([Buffer.from('hel'), Buffer.from('lo')]), opts);
  });

  it('rejects with the tool failure', async () => {
    await expect(runWithInput('sh', ['-c', 'cat >/dev/null; echo nope >&2; exit 2'], Readable.from([Buffer.from('x')]), opts)).rejects.toThrow('sh failed: nope');
  });

  it('rejects with the input error rather than the tool complaint', async () => {
    const failure = new Error('checksum mismatch');
    const input = new Readable({
      read() {
        this.push(Buffer.from('partial'));
        setTimeout(() => this.destroy(failure), 20);
      },
    });
    await expect(runWithInput('sh', ['-c', 'cat >/dev/null; exit 1'], input, opts)).rejects.toBe(failure);
  });

  it('stops the tool on abort', async () => {
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 50);
    await expect(runWithInput('sh', ['-c', 'exec sleep 30'], new Readable({ read() {} }), { ...opts, signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe('StderrTail', () => {
  it('keeps the last 4 KiB', () => {
    const tail = new StderrTail();
    for (let i = 0; i < 100; i++) tail.push(Buffer.from(`${String(i).padStart(3, '0')}${'.'.repeat(97)}`));
    const text = tail.text();
    expect(text.length).toBe(4096);
    expect(text.endsWith('.'.repeat(97))).toBe(true);
  });
});
