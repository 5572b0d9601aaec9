import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createFileStore } from './file-store.js';
import { createS3Store } from './s3-store.js';
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
      return createS3Store(url);
    default:
      throw new Error(`unsupported storage URL scheme: ${parsed.protocol.replace(/:$/, '')}`);
  }
}

/** The whole object under `key`, in memory (packs, snapshot records, configs: bounded sizes). ArtifactNotFoundError if missing. */
export async function readWhole(store: ArtifactStore, key: string): Promise<Buffer> {
  return store.getRange(key, 0, await store.size(key));
}
