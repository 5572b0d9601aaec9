import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, chown, link, lstat, lutimes, mkdir, mkdtemp, readdir, readFile, readlink, realpath, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { promisify } from 'node:util';
import path from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { MemoryRepo, fromArray } from '../repo/memory-repo.test-helper.js';
import { IntegrityError } from '../repo/types.js';
import { directoryDriver } from './directory.js';
import { ComponentError } from './types.js';

const isRoot = process.getuid?.() === 0;
let base: string;
let dataRoot: string;
let outside: string;
/** The repository the tests back up into (chunks in memory, each checked when read). */
let repo: MemoryRepo;

interface Node {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  mtimeMs: number;
  uid: number;
  gid: number;
  sha256?: string;
  target?: string;
  ino: number;
}

/** Everything we promise to preserve, for every entry under `dir` (the root is ''). */
async function snapshot(dir: string): Promise<Map<string, Node>> {
  const out = new Map<string, Node>();
  const visit = async (rel: string) => {
    const abs = path.join(dir, rel);
    const st = await lstat(abs);
    const node: Node = {
      type: st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other',
      mode: st.mode & 0o7777,
      mtimeMs: st.mtimeMs,
      uid: st.uid,
      gid: st.gid,
      ino: st.ino,
    };
    if (node.type === 'file') node.sha256 = createHash('sha256').update(await readFile(abs)).digest('hex');
    if (node.type === 'symlink') {
      node.target = await readlink(abs);
      delete (node as Partial<Node>).mode; // symlink modes are not meaningful on Linux
    }
    out.set(rel, node);
    if (node.type === 'dir') for (const name of await readdir(abs)) await visit(rel ? `${rel}/${name}` : name);
  };
  await visit('');
  return out;
}

function withoutInodes(snap: Map<string, Node>): Record<string, Omit<Node, 'ino'>> {
  return Object.fromEntries([...snap].map(([rel, { ino: _ino, ...rest }]) => [rel, rest]));
}

/** The component root is not an entry of a manifest: a restored root's mtime is the time of the restore (repo/tree-restore.ts). */
function withoutRootTime(snap: Map<string, Node>): Record<string, Partial<Node>> {
  const out: Record<string, Partial<Node>> = withoutInodes(snap);
  const { mtimeMs: _m, ...root } = out[''] as Node;
  out[''] = root;
  return out;
}

function sharesInode(snap: Map<string, Node>, a: string, b: string): boolean {
  return snap.get(a)?.ino === snap.get(b)?.ino;
}

const T0 = 1_700_000_000_000;

/** A tree with every kind of entry we promise to round-trip, with fixed mtimes. */
async function buildTree(root: string): Promise<void> {
  const files: [string, Buffer | string, number][] = [
    ['a.txt', 'hello\n', 0o644],
    ['bin/run.sh', '#!/bin/sh\necho hi\n', 0o755],
    ['secret/key', randomBytes(32), 0o600],
    ['shared.txt', 'group writable\n', 0o666],
    ['empty', '', 0o644],
    ['big.bin', Buffer.concat([randomBytes(1_500_000), Buffer.alloc(1_000_000, 'a')]), 0o640],
    ['readonly/inner.txt', 'inside a 0555 directory\n', 0o444],
    [`deep/${'x'.repeat(120)}/file-with-a-rather-long-name-${'y'.repeat(60)}.txt`, 'long path\n', 0o644],
    ['ünïcode/😀 space.txt', 'unicode\n', 0o644],
    ['hard1', 'hard linked\n', 0o644],
  ];
  if (isRoot) files.push(['setuid-tool', 'binary\n', 0o4755]);
  let t = T0;
  for (const [rel, body, mode] of files) {
    const abs = path.join(root, rel);
    await mkdir(path.dirname(abs), { recursive: true });
    await writeFile(abs, body);
    await chmod(abs, mode);
    await utimes(abs, new Date((t += 1000)), new Date(t));
  }
  await link(path.join(root, 'hard1'), path.join(root, 'hard2'));
  const links: [string, string][] = [
    ['link-file', 'a.txt'],
    ['bin/link-dir', '../bin'],
    ['dangling', 'nothing-here'],
    ['to-shared', '../../shared/common.txt'],
    ['long-target', `deep/${'x'.repeat(120)}/file-with-a-rather-long-name-${'y'.repeat(60)}.txt`],
  ];
  for (const [rel, target] of links) {
    await symlink(target, path.join(root, rel));
    await lutimes(path.join(root, rel), new Date((t += 1000)), new Date(t));
  }
  const dirs = ['', 'bin', 'secret', 'readonly', 'deep', `deep/${'x'.repeat(120)}`, 'ünïcode'];
  await chmod(path.join(root, 'secret'), 0o700);
  await chmod(path.join(root, 'readonly'), 0o555);
  await chmod(path.join(root, 'bin'), 0o750);
  for (const rel of dirs.reverse()) await utimes(path.join(root, rel), new Date((t += 1000)), new Date(t));
}

async function siblingsOf(rel: string): Promise<string[]> {
  return (await readdir(path.join(dataRoot, path.dirname(rel)))).sort();
}

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const b of it) parts.push(b);
  return Buffer.concat(parts);
}

/** Backs `rel` up into `repo`: the manifest's bytes once the backup succeeded, and its logical bytes. */
async function backupOf(rel: string, opts: { signal?: AbortSignal; onProgress?: () => void } = {}) {
  const snap = directoryDriver.backup({ path: rel }, { dataRoot, sink: repo, previous: null, ...opts });
  const manifest = await collect(snap.manifest);
  return { manifest, bytes: snap.logicalBytes(), sha256: createHash('sha256').update(manifest).digest('hex') };
}

function restoreFrom(rel: string, manifest: Buffer) {
  return directoryDriver.restore({ path: rel }, { dataRoot, source: repo, manifest: fromArray([manifest]) });
}

beforeAll(async () => {
  base = await realpath(await mkdtemp(path.join(tmpdir(), 'directory-test-')));
  dataRoot = path.join(base, 'data');
  outside = path.join(base, 'outside');
  await mkdir(path.join(dataRoot, 'apps/files'), { recursive: true });
  await mkdir(path.join(dataRoot, 'shared'), { recursive: true });
  await writeFile(path.join(dataRoot, 'shared/common.txt'), 'common\n');
  await mkdir(outside, { recursive: true });
  await writeFile(path.join(outside, 'secret.txt'), 'outside\n');
  await buildTree(path.join(dataRoot, 'apps/files'));
  repo = new MemoryRepo();
});

afterAll(async () => {
  await chmod(path.join(dataRoot, 'apps/files/readonly'), 0o755).catch(() => {});
  await rm(base, { recursive: true, force: true });
});

describe('directory backup and restore', () => {
  it('restores a byte-identical tree (contents, modes, mtimes, owners, symlinks, hard-linked files) elsewhere', async () => {
    const before = await snapshot(path.join(dataRoot, 'apps/files'));
    const put = await backupOf('apps/files');
    expect(put.bytes).toBeGreaterThan(2_500_000);

    await restoreFrom('apps/restored', put.manifest);
    const after = await snapshot(path.join(dataRoot, 'apps/restored'));
    expect(withoutRootTime(after)).toEqual(withoutRootTime(before));
    // Hard links are stored as separate files (repo/tree-backup.ts): both come back, equal, each its own inode.
    expect(after.get('hard2')?.sha256).toBe(after.get('hard1')?.sha256);
    expect(sharesInode(after, 'hard1', 'hard2')).toBe(false);
    expect(await siblingsOf('apps/restored')).toEqual(['files', 'restored']);
  });

  it('produces the same manifest for an unchanged tree', async () => {
    const first = await backupOf('apps/files');
    const second = await backupOf('apps/files');
    expect(second.sha256).toBe(first.sha256);
  });

  it('replaces the target atomically: files added since the backup are gone', async () => {
    const root = path.join(dataRoot, 'apps/files');
    const before = await snapshot(root);
    const put = await backupOf('apps/files');

    await writeFile(path.join(root, 'added-later.txt'), 'new');
    await writeFile(path.join(root, 'a.txt'), 'changed');
    await unlink(path.join(root, 'link-file'));
    await chmod(path.join(root, 'bin/run.sh'), 0o600);
    await mkdir(path.join(root, 'new-dir/sub'), { recursive: true });

    await restoreFrom('apps/files', put.manifest);
    expect(withoutRootTime(await snapshot(root))).toEqual(withoutRootTime(before));
    expect((await siblingsOf('apps/files')).filter((n) => n.startsWith('.'))).toEqual([]);
  });

  it('fails the stream when a symlink points outside the tenant\'s folder, naming the link', async () => {
    const escapes = ['../../../../outside/secret.txt', '/etc/passwd', '../../../shared/../../outside', `../../../../outside/${'z'.repeat(150)}`];
    for (const target of escapes) {
      const rel = 'apps/escaping';
      await rm(path.join(dataRoot, rel), { recursive: true, force: true });
      await mkdir(path.join(dataRoot, rel, 'sub'), { recursive: true });
      await writeFile(path.join(dataRoot, rel, 'ok.txt'), randomBytes(3_000_000)); // the link comes after real data
      await symlink(target, path.join(dataRoot, rel, 'sub/bad'));

      // The manifest errors instead of ending: there is no snapshot to record.
      const err = await backupOf(rel).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ComponentError);
      expect((err as Error).message).toBe("symbolic link sub/bad points outside the tenant's folder");
    }
  });

  it('fails for a missing directory, a file, and a root outside the tenant\'s folder (told like a missing one)', async () => {
    await symlink('../../outside', path.join(dataRoot, 'apps/out'));
    const cases: [string, string][] = [
      ['apps/nope', "no such directory in this tenant's folder: apps/nope"],
      ['apps/files/a.txt', 'not a directory: apps/files/a.txt'],
      ['apps/out', "no such directory in this tenant's folder: apps/out"],
      ['../outside', "path must not contain '..' segments"],
    ];
    for (const [rel, message] of cases) {
      const writes = repo.writeStreamCalls;
      const err = await backupOf(rel).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ComponentError);
      expect((err as Error).message).toBe(message);
      expect(repo.writeStreamCalls).toBe(writes); // nothing was read
    }
  });

  // The Dockerfile runs the service as `node`: without root, a read-only directory of the old
  // tree keeps its entries from being removed after the swap unless it is opened up first.
  it('without root, replaces a tree holding read-only directories and leaves nothing beside it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'directory-non-root-')); // `base` is root's 0700
    onTestFinished(() => rm(dir, { recursive: true, force: true }));
    if (isRoot) await chown(dir, 65534, 65534);
    const script = `
      import { chmod, mkdir, readdir, writeFile } from 'node:fs/promises';
      import { directoryDriver } from ${JSON.stringify(path.resolve(import.meta.dirname, 'directory.ts'))};
      import { MemoryRepo } from ${JSON.stringify(path.resolve(import.meta.dirname, '../repo/memory-repo.test-helper.ts'))};
      const dataRoot = ${JSON.stringify(path.join(dir, 'data'))};
      const tree = dataRoot + '/apps/site';
      await mkdir(tree + '/locked', { recursive: true });
      await writeFile(tree + '/locked/kept.txt', 'kept');
      await chmod(tree + '/locked', 0o555);
      const repo = new MemoryRepo();
      const parts = [];
      for await (const b of directoryDriver.backup({ path: 'apps/site' }, { dataRoot, sink: repo, previous: null }).manifest) parts.push(b);
      await writeFile(tree + '/added-later.txt', 'gone after the restore');
      await directoryDriver.restore({ path: 'apps/site' }, { dataRoot, source: repo, manifest: (async function* () { yield* parts; })() });
      console.log(JSON.stringify({ uid: process.getuid(), apps: await readdir(dataRoot + '/apps'), site: await readdir(tree), locked: await readdir(tree + '/locked') }));
    `;
    // The child (run as `nobody` when we are root) may not be able to enter the checkout at all (a
    // clone in a 0700 directory): it gets one self-contained file in `dir`, bundled by esbuild
    // (tsx's own dependency), and needs neither tsx nor node_modules nor the sources.
    const child = path.join(dir, 'child.mjs');
    await build({
      stdin: { contents: script, resolveDir: import.meta.dirname, loader: 'ts', sourcefile: 'non-root-child.ts' },
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: `node${process.versions.node.split('.')[0]}`,
      // Bundled CommonJS dependencies call require() for node's built-ins.
      banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
      outfile: child,
      logLevel: 'silent',
    });
    await chmod(child, 0o644);
    const { stdout } = await promisify(execFile)(process.execPath, [child], {
      ...(isRoot ? { uid: 65534, gid: 65534 } : {}),
      cwd: dir,
    });
    const seen = JSON.parse(stdout) as { uid: number; apps: string[]; site: string[]; locked: string[] };
    expect(seen.uid).not.toBe(0);
    expect(seen).toMatchObject({ apps: ['site'], site: ['locked'], locked: ['kept.txt'] });
  });

  it('stops when aborted', async () => {
    const controller = new AbortController();
    const done = backupOf('apps/files', { signal: controller.signal, onProgress: () => controller.abort() });
    await expect(done).rejects.toMatchObject({ name: 'AbortError' });
  });
});

/** A manifest line as written by hand: whatever a damaged or forged manifest could hold. */
type RawEntry = Record<string, unknown> & { path: unknown; type: string };

/** Stores `body` in the repository and answers its chunk ids. */
function chunksOf(body: string | Buffer): string[] {
  const data = Buffer.from(body);
  if (data.length === 0) return [];
  const id = MemoryRepo.id(data);
  repo.chunks.set(id, data);
  return [id];
}

/** A directory manifest of hand-made entries, the kind our own backups never write. */
function maliciousManifest(entries: RawEntry[]): Buffer {
  const lines = [JSON.stringify({ format: 'bk-manifest/v1', type: 'directory' })];
  for (const e of entries) {
    const body = typeof e.body === 'string' ? e.body : '';
    const { body: _b, ...rest } = e;
    lines.push(
      JSON.stringify({
        mode: e.type === 'directory' ? 0o755 : 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: `${T0}000000`,
        ctime_ns: `${T0}000000`,
        ino: '1',
        size: e.type === 'file' ? Buffer.byteLength(body) : 0,
        ...(e.type === 'file' ? { chunks: chunksOf(body) } : {}),
        ...rest,
      }),
    );
  }
  return Buffer.from(lines.map((l) => `${l}\n`).join(''));
}

describe('directory restore of a malicious manifest', () => {
  const victim = 'apps/victim';

  const cases: [string, () => Buffer][] = [
    ['a ../ entry', () => maliciousManifest([{ path: 'ok.txt', type: 'file', body: 'ok' }, { path: '../evil', type: 'file', body: 'pwned' }])],
    ['an absolute entry', () => maliciousManifest([{ path: `${outside}/abs-evil`, type: 'file', body: 'pwned' }])],
    [
      'a symlink to outside, then a file through it',
      () =>
        maliciousManifest([
          { path: 'link', type: 'symlink', link_target: outside },
          { path: 'link/pwned', type: 'file', body: 'pwned' },
        ]),
    ],
    [
      'a relative symlink to outside, then a file through it',
      () =>
        maliciousManifest([
          { path: 'link', type: 'symlink', link_target: '../../../outside' },
          { path: 'link/pwned', type: 'file', body: 'pwned' },
        ]),
    ],
    [
      'a symlink within DATA_ROOT, then a file through it',
      () =>
        maliciousManifest([
          { path: 'link', type: 'symlink', link_target: '../../shared' },
          { path: 'link/pwned', type: 'file', body: 'pwned' },
        ]),
    ],
    [
      'a symlink that leads outside only through a symlink later in the manifest',
      () =>
        maliciousManifest([
          // lexically <victim>/outside; once b exists, three levels up from the victim: <base>/outside
          { path: 'a', type: 'symlink', link_target: 'd1/d2/b/../../../outside' },
          { path: 'd1', type: 'directory' },
          { path: 'd1/d2', type: 'directory' },
          { path: 'd1/d2/b', type: 'symlink', link_target: '../..' },
        ]),
    ],
    // Manifests have no hard links (tree-backup.ts stores them as files): a forged one is refused.
    ['a hard link to a file outside', () => maliciousManifest([{ path: 'h', type: 'hardlink', link_target: '../../../outside/secret.txt' }])],
    ['a hard link to an absolute path', () => maliciousManifest([{ path: 'h', type: 'link', link_target: `${outside}/secret.txt` }])],
    ['a truncated manifest', () => maliciousManifest([{ path: 'big', type: 'file', body: randomBytes(50_000).toString('hex') }]).subarray(0, 150)],
    [
      'a file whose data is not in the repository',
      () => {
        const m = maliciousManifest([{ path: 'big', type: 'file', body: 'x'.repeat(100_000) }]);
        repo.delete(MemoryRepo.id(Buffer.from('x'.repeat(100_000))));
        return m;
      },
    ],
    [
      'a file whose data does not verify',
      () => {
        const m = maliciousManifest([{ path: 'big', type: 'file', body: 'y'.repeat(100_000) }]);
        repo.corrupt(MemoryRepo.id(Buffer.from('y'.repeat(100_000))));
        return m;
      },
    ],
    ['a file shorter than its size', () => maliciousManifest([{ path: 'short', type: 'file', body: 'abc', size: 10 }])],
    ['garbage', () => randomBytes(5000)],
  ];

  it.each(cases)('refuses %s and leaves everything as it was', async (_name, manifest) => {
    await rm(path.join(dataRoot, victim), { recursive: true, force: true });
    await mkdir(path.join(dataRoot, victim), { recursive: true });
    await writeFile(path.join(dataRoot, victim, 'keep.txt'), 'precious');
    const victimBefore = await snapshot(path.join(dataRoot, victim));
    const outsideBefore = await snapshot(outside);
    const sharedBefore = await snapshot(path.join(dataRoot, 'shared'));
    const appsBefore = await siblingsOf(victim);

    const err = await restoreFrom(victim, manifest()).catch((e: unknown) => e);
    expect(err instanceof ComponentError || err instanceof IntegrityError, String(err)).toBe(true);

    expect(withoutInodes(await snapshot(path.join(dataRoot, victim)))).toEqual(withoutInodes(victimBefore));
    expect(withoutInodes(await snapshot(outside))).toEqual(withoutInodes(outsideBefore));
    expect(withoutInodes(await snapshot(path.join(dataRoot, 'shared')))).toEqual(withoutInodes(sharedBefore));
    expect(await siblingsOf(victim)).toEqual(appsBefore);
    await expect(lstat(path.join(dataRoot, 'apps/evil'))).rejects.toThrow();
    await expect(lstat(path.join(dataRoot, 'evil'))).rejects.toThrow();
  });

  it('restores a benign hand-made manifest (sanity check of the fixtures)', async () => {
    const manifest = maliciousManifest([
      { path: 'd1', type: 'directory' },
      { path: 'd1/d2', type: 'directory' },
      { path: 'd1/d2/d3', type: 'directory' },
      { path: 'h', type: 'file', body: 'ok' },
      { path: 'inner-link', type: 'symlink', link_target: 'ok.txt' },
      { path: 'ok.txt', type: 'file', body: 'ok' },
      { path: 'x', type: 'symlink', link_target: 'd1/d2/d3' },
      // lexically <base>, outside DATA_ROOT; through x, <data>/apps
      { path: 'y', type: 'symlink', link_target: 'x/../../../..' },
    ]);
    await restoreFrom('apps/benign', manifest);
    expect(await readFile(path.join(dataRoot, 'apps/benign/h'), 'utf8')).toBe('ok');
    expect(await readFile(path.join(dataRoot, 'apps/benign/ok.txt'), 'utf8')).toBe('ok');
    expect(await readlink(path.join(dataRoot, 'apps/benign/inner-link'))).toBe('ok.txt');
    expect(await realpath(path.join(dataRoot, 'apps/benign/y'))).toBe(path.join(dataRoot, 'apps'));
  });
});
