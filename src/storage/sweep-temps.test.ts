import { mkdtemp, readdir, rm, utimes, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CreateMultipartUploadCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFileStore } from './file-store.js';
import { createS3Store } from './s3-store.js';
import { S3_TEST_CREDENTIALS, startS3TestServer, type S3TestServer } from './s3-test-server.js';

describe('sweepTemps: what writes killed mid-way left behind', () => {
  it('file store: removes old .partial temps under the prefix only, keeps fresh ones, keys and other prefixes', async () => {
    const root = await mkdtemp(path.join(tmpdir(), 'bk-sweep-'));
    try {
      const store = createFileStore(root);
      await store.putBuffer('repos/t1/packs/ab/key', Buffer.from('kept'));
      const dir = path.join(root, 'repos', 't1', 'packs', 'ab');
      const old = path.join(dir, `.key2.${'0'.repeat(16)}.partial`);
      const fresh = path.join(dir, `.key3.${'1'.repeat(16)}.partial`);
      const notOurs = path.join(dir, '.something-else');
      await writeFile(old, 'x');
      await writeFile(fresh, 'y');
      await writeFile(notOurs, 'z');
      await mkdir(path.join(root, 'repos', 't2', 'packs', 'cd'), { recursive: true });
      const otherTenant = path.join(root, 'repos', 't2', 'packs', 'cd', `.k.${'2'.repeat(16)}.partial`);
      await writeFile(otherTenant, 'w');
      const hourAgo = new Date(Date.now() - 3600_000);
      for (const f of [old, notOurs, otherTenant]) await utimes(f, hourAgo, hourAgo);
      expect(await store.sweepTemps('repos/t1/', new Date(Date.now() - 60_000))).toBe(1);
      expect((await readdir(dir)).sort()).toEqual([path.basename(notOurs), path.basename(fresh), 'key'].sort());
      expect(await readdir(path.dirname(otherTenant))).toEqual([path.basename(otherTenant)]);
      expect(await store.sweepTemps('repos/missing/', new Date())).toBe(0);
      await expect(store.sweepTemps('../', new Date())).rejects.toThrow(/invalid artifact key/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  describe('S3', () => {
    let server: S3TestServer;
    let raw: S3Client;
    beforeAll(async () => {
      server = await startS3TestServer(['sweep']);
      raw = new S3Client({ endpoint: server.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: S3_TEST_CREDENTIALS });
    });
    afterAll(async () => {
      raw?.destroy();
      await server?.close();
    });

    it('aborts incomplete multipart uploads under the prefix started before the cutoff, and only those', async () => {
      const prefix = `p-${randomBytes(3).toString('hex')}`;
      const store = createS3Store(`s3://sweep/${prefix}`, { endpoint: server.endpoint, ...S3_TEST_CREDENTIALS });
      await raw.send(new CreateMultipartUploadCommand({ Bucket: 'sweep', Key: `${prefix}/repos/t1/packs/ab/x` }));
      await raw.send(new CreateMultipartUploadCommand({ Bucket: 'sweep', Key: `${prefix}/repos/t2/packs/ab/y` }));
      const uploads = async () => ((await raw.send(new ListMultipartUploadsCommand({ Bucket: 'sweep', Prefix: `${prefix}/` }))).Uploads ?? []).map((u) => u.Key).sort();
      expect(await uploads()).toEqual([`${prefix}/repos/t1/packs/ab/x`, `${prefix}/repos/t2/packs/ab/y`]);
      // a cutoff before they began: nothing is taken
      expect(await store.sweepTemps('repos/t1/', new Date(Date.now() - 3600_000))).toBe(0);
      expect(await store.sweepTemps('repos/t1/', new Date(Date.now() + 60_000))).toBe(1);
      expect(await uploads()).toEqual([`${prefix}/repos/t2/packs/ab/y`]);
    });
  });
});
