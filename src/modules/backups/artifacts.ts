import { pipeline } from 'node:stream/promises';
import { Sha256Meter } from '../../storage/checksum.js';
import type { ArtifactStore } from '../../storage/types.js';
import type { ArtifactLocation } from './backups.present.js';

export interface Stores {
  primary: ArtifactStore;
  secondary: ArtifactStore | null;
}

export interface ArtifactRef {
  component: string;
  key: string;
  sha256: string;
  bytes: bigint | number;
  locations: unknown;
}

export function storeOf(stores: Stores, which: ArtifactLocation['store']): ArtifactStore | null {
  return which === 'primary' ? stores.primary : stores.secondary;
}

export class ArtifactUnusable extends Error {
  constructor(
    readonly component: string,
    readonly problems: string[],
  ) {
    super(`component "${component}": no intact copy of the artifact: ${problems.join('; ')}`);
  }
}

/** Reads one copy end to end and compares its sha256 and size with what was recorded at backup time. */
async function check(store: ArtifactStore, a: ArtifactRef, where: string): Promise<string | null> {
  let stream;
  try {
    stream = await store.get(a.key);
  } catch (err) {
    return `${where} copy unreadable (${(err as Error).message})`;
  }
  const meter = new Sha256Meter();
  try {
    await pipeline(stream, meter, async (source) => {
      for await (const _ of source) void _;
    });
  } catch (err) {
    return `${where} copy unreadable (${(err as Error).message})`;
  }
  const got = meter.result();
  if (got.sha256 !== a.sha256) return `${where} copy checksum mismatch (expected sha256 ${a.sha256}, got ${got.sha256})`;
  if (got.bytes !== Number(a.bytes)) return `${where} copy size mismatch (expected ${a.bytes} bytes, got ${got.bytes})`;
  return null;
}

/**
 * Finds a copy whose bytes hash to the recorded sha256: the primary first, then the secondary
 * (dual-region). Throws ArtifactUnusable naming the component and every copy's problem.
 */
export async function findIntactCopy(a: ArtifactRef, stores: Stores): Promise<{ store: ArtifactStore; which: ArtifactLocation['store']; problems: string[] }> {
  const problems: string[] = [];
  const locations = (a.locations as ArtifactLocation[]).filter((l) => l.status === 'present');
  for (const loc of locations) {
    const store = storeOf(stores, loc.store);
    if (!store) {
      problems.push(`${loc.store} store is not configured`);
      continue;
    }
    const problem = await check(store, a, loc.store);
    if (!problem) return { store, which: loc.store, problems };
    problems.push(problem);
  }
  if (locations.length === 0) problems.push('no stored copy');
  throw new ArtifactUnusable(a.component, problems);
}
