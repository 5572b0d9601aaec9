import { publicMessage } from '../lib/public-error.js';
import { readWhole } from '../storage/index.js';
import type { ArtifactStore } from '../storage/types.js';
import { packKey } from './layout.js';
import { verifyPack } from './pack.js';
import type { TenantKeys } from './types.js';

/** Problems of one stored copy of a pack: missing, not matching its id, or a chunk that does not open. */
export async function verifyPackAt(store: ArtifactStore, keys: TenantKeys, tenantId: string, packId: string): Promise<string[]> {
  let body: Buffer;
  try {
    body = await readWhole(store, packKey(tenantId, packId));
  } catch (err) {
    return [err instanceof Error && err.name === 'ArtifactNotFoundError' ? 'the pack is missing' : `unreadable (${publicMessage(err)})`];
  }
  try {
    return (await verifyPack(keys, body, packId)).map((p) => (p.id ? `chunk ${p.id.slice(0, 12)}: ${p.message}` : p.message));
  } catch (err) {
    return [publicMessage(err)];
  }
}

/**
 * Problems of every copy of a pack: the primary's, and the secondary's when the pack was copied
 * there; each names its copy and the pack.
 */
export async function verifyPackCopies(
  stores: { primary: ArtifactStore; secondary: ArtifactStore | null },
  keys: TenantKeys,
  tenantId: string,
  pack: { id: string; secondaryStatus: string | null },
): Promise<string[]> {
  const copies: [string, ArtifactStore][] = [['primary', stores.primary]];
  if (stores.secondary && pack.secondaryStatus === 'present') copies.push(['secondary', stores.secondary]);
  const problems: string[] = [];
  for (const [name, store] of copies) {
    for (const m of await verifyPackAt(store, keys, tenantId, pack.id)) problems.push(`${name} copy of pack ${pack.id.slice(0, 12)}: ${m}`);
  }
  return problems;
}
