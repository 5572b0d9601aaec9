import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ArtifactNotFoundError, createFileStore, createStore, InvalidArtifactKeyError, putJson, sha256OfStream, type ArtifactStore } from './index.js';

let root: string;
let store: ArtifactStore;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'file-store-test-'));
  store = createFileStore(root);
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

function chunks(...parts: Buffer[]): Readable {
  return Readable.from(parts);
}

/** Every file below `dir`, relative. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => !e.isDirectory()).map((e) => path.relative(dir, path.join(e.parentPath ?? e.path, e.name))).sort();
}

async function readAll(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

describe('file store', () => {
  it('round-trips put, get, exists, delete and records the hash of the bytes on disk', async () => {
    const data = [randomBytes(1 << 20), randomBytes(3 << 20), Buffer.from('tail')];
    const progress: number[] = [];
    const result = await store.put('tenant/cluster/backup/db.pgdump', chunks(...data), { onProgress: (n) => progress.push(n) });

    const onDisk = await readFile(path.join(root, 'tenant/cluster/backup/db.pgdump'));
    expect(result.bytes).toBe(onDisk.length);
    expect(result.sha256).toBe(createHash('sha256').update(onDisk).digest('hex'));
    expect(onDisk.equals(Buffer.concat(data))).toBe(true);
    expect(progress.at(-1)).toBe(onDisk.length);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));

    expect(await store.exists('tenant/cluster/backup/db.pgdump')).toBe(true);
    expect((await readAll(await store.get('tenant/cluster/backup/db.pgdump'))).equals(onDisk)).toBe(true);
    expect(await sha256OfStream(await store.get('tenant/cluster/backup/db.pgdump'))).toEqual(result);
    expect(store.locationOf('tenant/cluster/backup/db.pgdump')).toBe(pathToFileURL(path.join(root, 'tenant/cluster/backup/db.pgdump')).href);
    expect(store.url).toBe(pathToFileURL(root).href);

    await store.delete('tenant/cluster/backup/db.pgdump');
    expect(await store.exists('tenant/cluster/backup/db.pgdump')).toBe(false);
    await expect(store.get('tenant/cluster/backup/db.pgdump')).rejects.toBeInstanceOf(ArtifactNotFoundError);
    await store.delete('tenant/cluster/backup/db.pgdump'); // idempotent
    expect(await readdir(root)).toEqual([]); // emptied directories are pruned
  });

  it('replaces an existing key atomically', async () => {
    await store.put('a/k', chunks(Buffer.from('one')));
    await store.put('a/k', chunks(Buffer.from('two')));
    expect((await readAll(await store.get('a/k'))).toString()).toBe('two');
    expect(await listFiles(root)).toEqual(['a/k']);
  });

  it('deletes every key under a prefix, idempotently', async () => {
    await store.put('t/c/b1/files.tar.gz', chunks(Buffer.from('1')));
    await store.put('t/c/b1/db.pgdump', chunks(Buffer.from('2')));
    await store.put('t/c/b10/db.pgdump', chunks(Buffer.from('3')));
    await putJson(store, 't/c/b1/manifest.json', { ok: true });

    await store.deletePrefix('t/c/b1/');
    expect(await store.exists('t/c/b1/files.tar.gz')).toBe(false);
    expect(await store.exists('t/c/b1/manifest.json')).toBe(false);
    expect(await store.exists('t/c/b10/db.pgdump')).toBe(true);
    await store.deletePrefix('t/c/b1/');
    await store.deletePrefix('t/c/');
    expect(await listFiles(root)).toEqual([]);
    await expect(store.deletePrefix('t/c')).rejects.toBeInstanceOf(InvalidArtifactKeyError);
  });

  it('rejects with the body error and leaves neither the key nor a temp file', async () => {
    const failure = new Error('pg_dump exited with code 1');
    const body = new Readable({
      read() {
        this.push(randomBytes(256 * 1024));
        setImmediate(() => this.destroy(failure));
      },
    });
    await expect(store.put('t/c/b/db.pgdump', body)).rejects.toBe(failure);
    expect(await store.exists('t/c/b/db.pgdump')).toBe(false);
    expect(await listFiles(root)).toEqual([]);
  });

  it('stops on abort and cleans up', async () => {
    const controller = new AbortController();
    let sent = 0;
    const body = new Readable({
      read() {
        sent += 1;
        if (sent === 3) controller.abort();
        this.push(randomBytes(64 * 1024));
      },
    });
    await expect(store.put('t/c/b/files.tar.gz', body, { signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(await listFiles(root)).toEqual([]);
    expect(body.destroyed).toBe(true);
  });

  it.each(['', '/abs/key', 'a/../b', '..', 'a//b', 'a/', './a', 'a/.hidden', 'a\\b', 'a\0b'])('rejects the key %j', async (key) => {
    const body = chunks(Buffer.from('x'));
    await expect(store.put(key, body)).rejects.toBeInstanceOf(InvalidArtifactKeyError);
    expect(body.destroyed).toBe(true);
    await expect(store.get(key)).rejects.toBeInstanceOf(InvalidArtifactKeyError);
    await expect(store.exists(key)).rejects.toBeInstanceOf(InvalidArtifactKeyError);
    await expect(store.delete(key)).rejects.toBeInstanceOf(InvalidArtifactKeyError);
    expect(() => store.locationOf(key)).toThrow(InvalidArtifactKeyError);
    expect(await listFiles(root)).toEqual([]);
  });

  it('does not mistake a directory for an artifact', async () => {
    await store.put('a/b/c', chunks(Buffer.from('x')));
    expect(await store.exists('a/b')).toBe(false);
    await expect(store.get('a/b')).rejects.toBeInstanceOf(ArtifactNotFoundError);
  });
});

describe('createStore', () => {
  it('opens file:// URLs', async () => {
    const s = createStore(pathToFileURL(root).href + '/');
    await s.put('k', chunks(Buffer.from('v')));
    expect(await readFile(path.join(root, 'k'), 'utf8')).toBe('v');
  });

  it('refuses credentials in s3 URLs and unknown schemes, without echoing the URL', () => {
    expect(() => createStore('s3://AKIA:secret@bucket/prefix')).toThrow(/^s3 storage URLs must not carry credentials; set S3_ACCESS_KEY_ID/);
    expect(() => createStore('ftp://user:secret@host/x')).toThrow(/unsupported storage URL scheme: ftp/);
    expect(() => createStore('not a url')).toThrow('invalid storage URL');
  });
});
