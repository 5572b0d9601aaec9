import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFileStore } from './file-store.js';
import { parseS3Url, resolveS3Options, s3ObjectKey, s3StoreUrl } from './s3-config.js';
import type { ArtifactStore } from './types.js';

export { sha256OfStream } from './checksum.js';
export { checkArtifactKey, checkArtifactPrefix, createFileStore, putJson } from './file-store.js';
export { ArtifactNotFoundError, InvalidArtifactKeyError, RangeNotSatisfiableError } from './types.js';
export type { ArtifactStore, ListedArtifact, PutOptions, PutResult } from './types.js';

/** Builds the store named by STORAGE_URL / STORAGE_SECONDARY_URL. Error messages never echo the URL (it may carry credentials). */
export function createStore(url: string): ArtifactStore {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error('invalid storage URL');
  }
  switch (parsed.protocol) {
    case 'file:': {
      if (parsed.host !== '' && parsed.host !== 'localhost') throw new Error('file storage URLs must not name a host');
      const root = fileURLToPath(parsed);
      if (!path.isAbsolute(root)) throw new Error('file storage URL must be an absolute path');
      return createFileStore(root);
    }
    case 's3:':
      // endpoint, region and credentials come from S3_* env (see README.md), never from the URL
      return lazyS3Store(url);
    default:
      throw new Error(`unsupported storage URL scheme: ${parsed.protocol.replace(/:$/, '')}`);
  }
}

/**
 * An s3:// store whose AWS SDK (s3-store.ts) loads at its first use: a service that keeps its
 * artifacts on a file system never holds the SDK's ~12 MB. The URL and the S3_* settings are
 * checked now, as createS3Store checks them, so a bad one still stops the service at start.
 */
function lazyS3Store(url: string): ArtifactStore {
  const { bucket, prefix } = parseS3Url(url);
  resolveS3Options();
  let loading: Promise<ArtifactStore> | null = null;
  const real = () => (loading ??= import('./s3-store.js').then((m) => m.createS3Store(url)));
  return {
    url: s3StoreUrl(bucket, prefix),
    put: async (key, body, opts) => (await real()).put(key, body, opts),
    get: async (key) => (await real()).get(key),
    exists: async (key) => (await real()).exists(key),
    delete: async (key) => (await real()).delete(key),
    deletePrefix: async (p) => (await real()).deletePrefix(p),
    getRange: async (key, start, end) => (await real()).getRange(key, start, end),
    size: async (key) => (await real()).size(key),
    async *list(p) {
      yield* (await real()).list(p);
    },
    putBuffer: async (key, body, opts) => (await real()).putBuffer(key, body, opts),
    sweepTemps: async (p, olderThan) => (await real()).sweepTemps(p, olderThan),
    locationOf: (key) => `s3://${bucket}/${s3ObjectKey(prefix, key)}`,
  };
}

/** The whole object under `key`, in memory (packs, snapshot records, configs: bounded sizes). ArtifactNotFoundError if missing. */
export async function readWhole(store: ArtifactStore, key: string): Promise<Buffer> {
  return store.getRange(key, 0, await store.size(key));
}
