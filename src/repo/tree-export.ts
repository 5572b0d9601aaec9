import { Readable } from 'node:stream';
import tar from 'tar-stream';
import { ManifestValidator } from './manifest.js';
import type { ChunkSource, DirEntry } from './types.js';

/*
 * A directory manifest -> a portable tar stream (pax format where needed, so long and non-ASCII
 * names, ns mtimes and large ids survive): directories, files with their data, symlinks; mode,
 * uid, gid and mtime of each; paths relative (no leading `./`), directories with a trailing `/`.
 * Entries are checked as the manifest decoder checks them, so the archive never holds an
 * absolute path, a `..` or an entry below a symlink.
 *
 * Every file's data comes from `source.read(chunks)`, which verifies each chunk before pushing
 * it; any error (IntegrityError, a manifest problem, a file whose data does not match its size)
 * destroys the returned stream with that error, so an HTTP response streaming it is cut off
 * rather than completed with bad data. Backpressure holds: data is read only as fast as the
 * consumer takes it. Destroying the returned stream stops the reading.
 */

const TYPE_BITS = { file: 0o100000, directory: 0o040000, symlink: 0o120000 } as const;

/** "sec.nsec" for a pax `mtime` record. */
function paxTime(ns: string): string {
  let n = BigInt(ns);
  const negative = n < 0n;
  if (negative) n = -n;
  const sec = n / 1_000_000_000n;
  const frac = (n % 1_000_000_000n).toString().padStart(9, '0');
  return `${negative ? '-' : ''}${sec}.${frac}`;
}

type TarHeader = Partial<tar.Header> & { name: string };

function header(e: DirEntry): TarHeader {
  const pax: Record<string, string> = { mtime: paxTime(e.mtime_ns) };
  // ustar's numeric fields hold 7 octal digits: larger ids go to pax records
  if (e.uid > 0o7777777) pax.uid = String(e.uid);
  if (e.gid > 0o7777777) pax.gid = String(e.gid);
  const h: TarHeader = {
    name: e.type === 'directory' ? `${e.path}/` : e.path,
    type: e.type,
    // tar-stream replaces a mode of 0 by its default; the type bits make it non-zero and are masked off when encoded
    mode: e.mode | TYPE_BITS[e.type],
    uid: e.uid,
    gid: e.gid,
    mtime: new Date(Number(BigInt(e.mtime_ns) / 1_000_000n)),
    size: e.type === 'file' ? e.size : 0,
    pax,
  };
  if (e.type === 'symlink') h.linkname = e.link_target as string;
  return h;
}

/** A tar stream of the tree the manifest entries describe (see the notes at the top). */
export function exportTree(entries: AsyncIterable<DirEntry>, source: ChunkSource): Readable {
  const pack = tar.pack();
  // tar-stream's streams are streamx ones: the consumer gets a Node stream.
  const out = Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
  pack.on('error', () => {}); // surfaces through `out`
  let current: Readable | undefined;
  let stopped = false;
  out.once('close', () => {
    stopped = true;
    current?.destroy();
    pack.destroy(new Error('export stopped'));
  });

  const putEntry = async (e: DirEntry): Promise<void> => {
    let settled!: Promise<void>;
    const sink = await new Promise<ReturnType<typeof pack.entry>>((resolveSink) => {
      settled = new Promise<void>((resolve, reject) => {
        resolveSink(pack.entry(header(e), (err) => (err ? reject(err) : resolve())));
      });
    });
    settled.catch(() => {});
    sink.on('error', () => {}); // the failure surfaces through `out`
    if (e.type === 'file' && e.size > 0) {
      const data = source.read(e.chunks ?? []);
      current = data;
      try {
        for await (const piece of data as AsyncIterable<Buffer>) {
          if (stopped) throw new Error('export stopped');
          if (!sink.write(piece)) {
            await new Promise<void>((resolve) => {
              const go = () => {
                sink.off('drain', go);
                sink.off('close', go);
                resolve();
              };
              sink.on('drain', go);
              sink.on('close', go);
            });
          }
        }
      } finally {
        current = undefined;
        data.destroy();
      }
    }
    (sink as unknown as { end(): void }).end();
    await settled;
  };

  void (async () => {
    const validator = new ManifestValidator();
    let n = 0;
    for await (const raw of entries) {
      if (stopped) return;
      await putEntry(validator.check(raw, `manifest entry ${++n}`));
    }
    pack.finalize();
  })().catch((err: unknown) => {
    out.destroy(err instanceof Error ? err : new Error(String(err)));
  });

  return out;
}
