/*
 * Where a tenant's repository lives in a store (the same layout in the primary and the secondary):
 *
 *   repos/<tenant id>/config                 wrapped keys + sealed tenant record (JSON)
 *   repos/<tenant id>/packs/<id[0:2]>/<id>   pack objects; id = sha256 of the body
 *   repos/<tenant id>/snapshots/<backup id>  sealed snapshot record of one completed backup
 */
export const REPOS_PREFIX = 'repos/';

export const repoPrefix = (tenantId: string) => `${REPOS_PREFIX}${tenantId}/`;
export const configKey = (tenantId: string) => `${repoPrefix(tenantId)}config`;
export const packsPrefix = (tenantId: string) => `${repoPrefix(tenantId)}packs/`;
export const packKey = (tenantId: string, packId: string) => `${packsPrefix(tenantId)}${packId.slice(0, 2)}/${packId}`;
export const snapshotsPrefix = (tenantId: string) => `${repoPrefix(tenantId)}snapshots/`;
export const snapshotKey = (tenantId: string, backupId: string) => `${snapshotsPrefix(tenantId)}${backupId}`;

/** The pack id of a key under packsPrefix, or null for anything else. */
export function packIdOf(tenantId: string, key: string): string | null {
  const rest = key.startsWith(packsPrefix(tenantId)) ? key.slice(packsPrefix(tenantId).length) : null;
  const m = rest === null ? null : /^([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(rest);
  return m && m[2]!.startsWith(m[1]!) ? m[2]! : null;
}
