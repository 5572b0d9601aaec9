import { lstat, mkdir, mkdtemp, readdir, readlink, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { Header, type HeaderData } from 'tar';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { extractTarGz } from './tar-extract.js';
import { ComponentError } from './types.js';

let dataRoot: string;
let dest: string;

function header(data: HeaderData): Buffer {
  const h = new Header({ mode: data.type === 'Directory' ? 0o755 : 0o644, mtime: new Date(1_700_000_000_000), uid: 0, gid: 0, size: 0, ...data });
  h.encode();
  return h.block as Buffer;
}

function padded(body: string | Buffer): Buffer {
  const b = Buffer.from(body);
  return Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
}

function pax(type: 'ExtendedHeader' | 'GlobalExtendedHeader', records: Record<string, string>): Buffer {
  let text = '';
  for (const [key, value] of Object.entries(records)) {
    const record = ` ${key}=${value}\n`;
    let length = record.length + 1;
    while (String(length).length + record.length !== length) length++;
    text += `${length}${record}`;
  }
  return Buffer.concat([header({ path: 'PaxHeader', type, size: Buffer.byteLength(text) }), padded(text)]);
}

const archive = (...parts: Buffer[]) => gzipSync(Buffer.concat([...parts, Buffer.alloc(1024)]));
/** Refused wherever it is seen: if a case gets it past the vetting, tar would create it. */
const hiddenLeak = () => header({ path: 'leak', type: 'SymbolicLink', linkpath: '/etc' });

function extract(gz: Buffer) {
  return extractTarGz(Readable.from([gz]), { dest, finalRoot: path.join(dataRoot, 'restored'), dataRootReal: dataRoot });
}

beforeAll(async () => {
  dataRoot = await realpath(await mkdtemp(path.join(tmpdir(), 'tar-extract-test-')));
});

beforeEach(async () => {
  dest = path.join(dataRoot, `dest-${Math.random().toString(36).slice(2)}`);
  await mkdir(dest);
});

afterAll(async () => {
  await rm(dataRoot, { recursive: true, force: true });
});

describe('extractTarGz framing', () => {
  // GNU tar reads no content after these headers (or takes the pax size), so a scanner that
  // skipped `size` bytes would let tar see entries it never vetted.
  const cases: [string, () => Buffer][] = [
    ['a directory with content', () => archive(header({ path: 'd/', type: 'Directory', size: 512 }), hiddenLeak())],
    ['a file named with a trailing slash, with content', () => archive(header({ path: 'f/', type: 'File', size: 512 }), hiddenLeak())],
    ['a symlink with content', () => archive(header({ path: 's', type: 'SymbolicLink', linkpath: 'x', size: 512 }), hiddenLeak())],
    ['a hard link with content', () => archive(header({ path: 'a', type: 'File' }), header({ path: 'l', type: 'Link', linkpath: 'a', size: 512 }), hiddenLeak())],
    ['a pax size smaller than the header size', () => archive(pax('ExtendedHeader', { size: '0' }), header({ path: 'big', type: 'File', size: 512 }), hiddenLeak())],
    ['two pax headers for one entry', () => archive(pax('ExtendedHeader', { path: 'l/through' }), pax('ExtendedHeader', { comment: 'x' }), header({ path: 'innocent', type: 'File' }))],
    ['a global pax header renaming entries', () => archive(pax('GlobalExtendedHeader', { path: 'leak' }), header({ path: 'one', type: 'File' }))],
    [
      'a pax path (which wins over a GNU long name) through a symlink',
      () =>
        archive(
          header({ path: 'sub/', type: 'Directory' }),
          header({ path: 'l', type: 'SymbolicLink', linkpath: 'sub' }),
          header({ path: '././@LongLink', type: 'NextFileHasLongPath', size: 8 }),
          padded('safe.txt'),
          pax('ExtendedHeader', { path: 'l/through' }),
          header({ path: 'x', type: 'File' }),
        ),
    ],
    [
      'a file through a hard link to a symlink',
      () =>
        archive(
          header({ path: 'sub/', type: 'Directory' }),
          header({ path: 'l', type: 'SymbolicLink', linkpath: 'sub' }),
          header({ path: 'h', type: 'Link', linkpath: 'l' }),
          header({ path: 'h/through', type: 'File' }),
        ),
    ],
  ];

  it.each(cases)('refuses %s', async (_name, gz) => {
    const err = await extract(gz()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ComponentError);
    await expect(lstat(path.join(dest, 'leak'))).rejects.toThrow();
    await expect(lstat(path.join(dest, 'sub/through'))).rejects.toThrow();
  });

  it('drops FIFOs and devices, keeps the rest', async () => {
    await extract(
      archive(
        header({ path: 'fifo', type: 'FIFO' }),
        header({ path: 'null', type: 'CharacterDevice', devmaj: 1, devmin: 3 }),
        header({ path: 'ok.txt', type: 'File', size: 2 }),
        padded('ok'),
        header({ path: 'link', type: 'SymbolicLink', linkpath: 'ok.txt' }),
        header({ path: 'h', type: 'Link', linkpath: 'link' }),
      ),
    );
    expect((await readdir(dest)).sort()).toEqual(['h', 'link', 'ok.txt']);
    expect(await readlink(path.join(dest, 'h'))).toBe('ok.txt');
  });

  it('stops tar and rejects at once when aborted', async () => {
    const controller = new AbortController();
    const endless = new Readable({ read() {} });
    endless.push(gzipSync(Buffer.concat([header({ path: 'a.txt', type: 'File', size: 1 << 20 }), Buffer.alloc(4096)])).subarray(0, -8));
    setTimeout(() => controller.abort(), 50);
    const started = Date.now();
    const done = extractTarGz(endless, { dest, finalRoot: path.join(dataRoot, 'restored'), dataRootReal: dataRoot, signal: controller.signal });
    await expect(done).rejects.toMatchObject({ name: 'AbortError' });
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
