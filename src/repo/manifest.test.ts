import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { comparePaths, decodeManifest, decodeManifestToArray, decodeStreamManifest, encodeManifest, encodeStreamManifest, openManifest } from './manifest.js';
import { IntegrityError, type DirEntry } from './types.js';

const ID = (n: number) => n.toString(16).padStart(64, '0');

function entry(p: string, type: DirEntry['type'] = 'file', extra: Partial<DirEntry> = {}): DirEntry {
  const base: DirEntry = { path: p, type, mode: type === 'directory' ? 0o755 : 0o644, uid: 0, gid: 0, mtime_ns: '1700000000123456789', ctime_ns: '1700000000123456789', ino: '42', size: 0 };
  if (type === 'file') base.chunks = [];
  if (type === 'symlink') base.link_target = 'target';
  return { ...base, ...extra };
}

async function collect(gen: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of gen) parts.push(b);
  return Buffer.concat(parts);
}

const HEADER = '{"format":"bk-manifest/v1","type":"directory"}\n';
const lines = (...objs: unknown[]) => [Buffer.from(HEADER + objs.map((o) => `${JSON.stringify(o)}\n`).join(''))];

async function decodeError(chunks: (Buffer | string)[]): Promise<Error> {
  try {
    await decodeManifestToArray((async function* () { yield* chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c)); })());
  } catch (err) {
    return err as Error;
  }
  throw new Error('decoded without error');
}

describe('comparePaths', () => {
  it('orders segment by segment: a directory right before its contents', () => {
    const paths = ['a.txt', 'a/b', 'a', 'b', 'a/b/c', 'a!', 'a/z', 'ab'];
    expect([...paths].sort(comparePaths)).toEqual(['a', 'a/b', 'a/b/c', 'a/z', 'a!', 'a.txt', 'ab', 'b']);
  });
  it('orders by code point (UTF-8 byte order), not UTF-16 units', () => {
    // U+FF5E (3 UTF-8 bytes, one unit) < U+1F600 (4 bytes, a surrogate pair)
    expect(comparePaths('\uff5e', '\u{1f600}')).toBeLessThan(0);
    expect(comparePaths('\u{1f600}', '\uff5e')).toBeGreaterThan(0);
    expect(Buffer.compare(Buffer.from('\uff5e'), Buffer.from('\u{1f600}'))).toBeLessThan(0);
  });
  it.each([
    ['any characters', fc.string({ minLength: 1, maxLength: 4, unit: 'grapheme' }).filter((s) => !s.includes('/'))],
    // characters on both sides of '/' (0x2f), prefixes of each other, and astral ones: where a one-pass comparison could go wrong
    ['a small alphabet around "/"', fc.string({ minLength: 1, maxLength: 3, unit: fc.constantFrom('a', 'b', '!', '.', '-', '0', '\uff5e', '\u{1f600}') })],
  ])('agrees with byte order of segment arrays (property: %s)', (_name, seg) => {
    fc.assert(
      fc.property(fc.array(seg, { minLength: 1, maxLength: 3 }), fc.array(seg, { minLength: 1, maxLength: 3 }), (a, b) => {
        const bytes = (s: string[]) => s.map((x) => Buffer.from(x));
        let expected = 0;
        const ba = bytes(a);
        const bb = bytes(b);
        for (let i = 0; i < Math.min(ba.length, bb.length) && expected === 0; i++) expected = Buffer.compare(ba[i] as Buffer, bb[i] as Buffer);
        if (expected === 0) expected = a.length - b.length;
        expect(Math.sign(comparePaths(a.join('/'), b.join('/')))).toBe(Math.sign(expected));
      }),
    );
  });
});

describe('directory manifests', () => {
  const tree: DirEntry[] = [
    entry('a', 'directory'),
    entry('a/b', 'file', { size: 3, chunks: [ID(1)] }),
    entry('a/l', 'symlink', { link_target: '../x' }),
    entry('a.txt', 'file', { size: 10, chunks: [ID(2), ID(3)] }),
    entry('é', 'directory', { mode: 0o1777, uid: 4294967295 }),
  ];

  it('round trips, split at any byte', async () => {
    const bytes = await collect(encodeManifest({ format: 'bk-manifest/v1', type: 'directory' }, tree));
    expect(bytes.toString().split('\n')[0]).toBe(HEADER.trim());
    for (const cut of [1, 7, 63, bytes.length - 1]) {
      const pieces = [bytes.subarray(0, cut), bytes.subarray(cut)];
      const { header, entries } = await openManifest((async function* () { yield* pieces; })());
      expect(header).toEqual({ format: 'bk-manifest/v1', type: 'directory' });
      const out: DirEntry[] = [];
      for await (const e of entries) out.push(e);
      expect(out).toEqual(tree);
    }
  });

  it('encodes deterministically', async () => {
    const a = await collect(encodeManifest({ format: 'bk-manifest/v1', type: 'directory' }, tree));
    const shuffled = tree.map((e) => Object.fromEntries(Object.entries(e).reverse()) as unknown as DirEntry);
    const b = await collect(encodeManifest({ format: 'bk-manifest/v1', type: 'directory' }, shuffled));
    expect(b.equals(a)).toBe(true);
  });

  it('an empty tree is just the header', async () => {
    const bytes = await collect(encodeManifest({ format: 'bk-manifest/v1', type: 'directory' }, []));
    expect(bytes.toString()).toBe(HEADER);
    expect(await decodeManifestToArray((async function* () { yield bytes; })())).toEqual([]);
  });

  it('the encoder refuses entries out of order', async () => {
    await expect(collect(encodeManifest({ format: 'bk-manifest/v1', type: 'directory' }, [entry('b'), entry('a')]))).rejects.toThrow(IntegrityError);
  });

  it('rejects out-of-order and duplicate entries, naming the line', async () => {
    const err = await decodeError(lines(entry('a.txt'), entry('a', 'directory')));
    expect(err).toBeInstanceOf(IntegrityError);
    expect(err.message).toMatch(/manifest line 3/);
    expect(await decodeError(lines(entry('a'), entry('a')))).toBeInstanceOf(IntegrityError);
    // plain string order ('a.txt' < 'a/b') is not path order
    expect((await decodeError(lines(entry('a', 'directory'), entry('a.txt'), entry('a/b')))).message).toMatch(/line 4.*path order/);
  });

  it('rejects bad paths', async () => {
    for (const p of ['/etc/passwd', '../x', 'a/../b', './a', 'a//b', 'a/', '', 'a\0b', 'x'.repeat(256), 'a/.']) {
      const err = await decodeError(lines(entry(p)));
      expect(err, p).toBeInstanceOf(IntegrityError);
      expect(err.message).toMatch(/manifest line 2: path/);
    }
  });

  it('rejects parents that are not directories earlier in the manifest', async () => {
    expect((await decodeError(lines(entry('a/b')))).message).toMatch(/parent/);
    expect((await decodeError(lines(entry('a'), entry('a/b')))).message).toMatch(/parent/); // a file
    expect((await decodeError(lines(entry('a', 'symlink'), entry('a/b')))).message).toMatch(/parent/); // below a symlink
    expect((await decodeError(lines(entry('a', 'directory'), entry('a/b', 'directory'), entry('a/c'), entry('a/c/d')))).message).toMatch(/line 5.*parent/);
    // a directory that ended does not stay a parent
    expect(await decodeManifestToArray((async function* () { yield* lines(entry('a', 'directory'), entry('a/b', 'directory'), entry('a/b/c'), entry('a/d')); })())).toHaveLength(4);
  });

  it('rejects fields of the wrong type or place', async () => {
    const bad: unknown[] = [
      { ...entry('f'), mode: 0o10000 },
      { ...entry('f'), mode: '644' },
      { ...entry('f'), uid: -1 },
      { ...entry('f'), gid: 1.5 },
      { ...entry('f'), mtime_ns: 17 },
      { ...entry('f'), ino: '-1' },
      { ...entry('f'), size: -1 },
      { ...entry('f'), size: 3, chunks: [] },
      { ...entry('f'), size: 0, chunks: [ID(1)] },
      { ...entry('f'), chunks: ['XYZ'] },
      { ...entry('f'), chunks: undefined },
      { ...entry('f'), link_target: 'x' },
      { ...entry('d', 'directory'), chunks: [] },
      { ...entry('d', 'directory'), size: 5 },
      { ...entry('s', 'symlink'), link_target: '' },
      { ...entry('s', 'symlink'), link_target: undefined },
      { ...entry('f'), type: 'fifo' },
      { ...entry('f'), extra: 1 },
      [1, 2],
      'string',
    ];
    for (const b of bad) expect(await decodeError(lines(b)), JSON.stringify(b)).toBeInstanceOf(IntegrityError);
  });

  it('rejects broken framing: bad header, no final newline, empty lines, bad JSON, bad UTF-8', async () => {
    expect((await decodeError([])).message).toMatch(/empty/);
    expect((await decodeError(['{"format":"bk-manifest/v2","type":"directory"}\n'])).message).toMatch(/line 1/);
    expect((await decodeError(['{"format":"bk-manifest/v1","type":"stream","bytes":0}\n'])).message).toMatch(/line 1/);
    expect((await decodeError([HEADER.trim()])).message).toMatch(/newline/);
    const ok = `${JSON.stringify(entry('a'))}\n`;
    expect((await decodeError([HEADER + ok.trim()])).message).toMatch(/line 2.*newline/);
    expect((await decodeError([HEADER + '\n' + ok])).message).toMatch(/line 2: empty/);
    expect((await decodeError([HEADER + '{"path":\n'])).message).toMatch(/line 2: not valid JSON/);
    expect((await decodeError([Buffer.concat([Buffer.from(HEADER + '{"path":"'), Buffer.from([0xff]), Buffer.from('"}\n')])])).message).toMatch(/UTF-8/);
  });

  it('stops at the first bad line: earlier entries come out, nothing after', async () => {
    const seen: string[] = [];
    await expect(
      (async () => {
        for await (const e of decodeManifest((async function* () { yield* lines(entry('a'), entry('c'), entry('b'), entry('d')); })())) seen.push(e.path);
      })(),
    ).rejects.toThrow(/line 4/);
    expect(seen).toEqual(['a', 'c']);
  });
});

describe('stream manifests', () => {
  it('round trips with at most 1000 ids a line', async () => {
    const ref = { chunks: Array.from({ length: 2345 }, (_, i) => ID(i + 1)), bytes: 123_456_789 };
    const bytes = await collect(encodeStreamManifest(ref));
    const text = bytes.toString().trimEnd().split('\n');
    expect(JSON.parse(text[0] as string)).toEqual({ format: 'bk-manifest/v1', type: 'stream', bytes: 123_456_789 });
    expect(text.slice(1).map((l) => JSON.parse(l).chunks.length)).toEqual([1000, 1000, 345]);
    expect(await decodeStreamManifest((async function* () { yield bytes.subarray(0, 5000); yield bytes.subarray(5000); })())).toEqual(ref);
  });
  it('an empty stream', async () => {
    const bytes = await collect(encodeStreamManifest({ chunks: [], bytes: 0 }));
    expect(await decodeStreamManifest((async function* () { yield bytes; })())).toEqual({ chunks: [], bytes: 0 });
  });
  it('rejects malformed stream manifests', async () => {
    const h = (bytes: number) => `{"format":"bk-manifest/v1","type":"stream","bytes":${bytes}}\n`;
    const bad = [
      h(5),
      h(0) + `{"chunks":["${ID(1)}"]}\n`,
      h(5) + '{"chunks":[]}\n',
      h(5) + `{"chunks":${JSON.stringify(Array.from({ length: 1001 }, () => ID(1)))}}\n`,
      h(5) + `{"chunks":["${ID(1)}"],"x":1}\n`,
      h(5) + '{"chunks":["nothex"]}\n',
      HEADER,
      '{"format":"bk-manifest/v1","type":"stream","bytes":-1}\n',
    ];
    for (const b of bad) await expect(decodeStreamManifest((async function* () { yield Buffer.from(b); })()), b).rejects.toThrow(IntegrityError);
  });
});
