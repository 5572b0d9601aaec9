import { randomUUID } from 'node:crypto';
import type { Db, Tx } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import { parsePostgresUrl } from '../../components/postgres-connection.js';
import { isContinuous, type StoredComponent } from '../clusters/components.js';

/*
 * The wal_streams rows of a cluster follow its continuous components (SPEC section 13), written in
 * the transaction that saves the components. The rows alone say what the archivers must do: an
 * 'active' row is streamed (its slot is created by the archiver that first holds it), a
 * 'dropping' row has its slot dropped and is then deleted with its stored WAL. Nothing here
 * talks to the tenant's server: no network call inside a transaction.
 */

/** The replication slot of a stream: one per stream row, so a re-pointed component's new slot never shares a name with the old one being dropped. */
export function slotNameOf(streamId: string): string {
  return `bk_pitr_${streamId.replace(/-/g, '')}`;
}

/** Host, port, database and user: a URL that keeps them (a new password, say) keeps its stream and its recovery window. */
function serverIdentity(url: string): string {
  const env = parsePostgresUrl(url).env;
  return JSON.stringify([env.PGHOST, env.PGPORT ?? '5432', env.PGDATABASE, env.PGUSER ?? '']);
}

/**
 * Makes the cluster's active streams match `components`: a new continuous component gets a
 * stream; one that keeps its server keeps it (with its URL updated); a removed, re-pointed or no
 * longer continuous one has its stream turned 'dropping'.
 */
export async function syncStreams(tx: Tx, box: SecretBox, o: { tenantId: string; clusterId: string; components: StoredComponent[] }): Promise<void> {
  const active = await tx.walStream.findMany({ where: { clusterId: o.clusterId, status: 'active' } });
  const byName = new Map(active.map((s) => [s.component, s]));
  const kept = new Set<string>();
  for (const c of o.components) {
    if (!isContinuous(c) || c.type !== 'postgres') continue;
    const url = box.decrypt(c.config.url_encrypted);
    const current = byName.get(c.name);
    if (current && serverIdentity(box.decrypt(current.urlEnc)) === serverIdentity(url)) {
      kept.add(current.id);
      await tx.walStream.update({ where: { id: current.id }, data: { urlEnc: c.config.url_encrypted } });
      continue;
    }
    if (current) await tx.walStream.update({ where: { id: current.id }, data: { status: 'dropping' } });
    const id = randomUUID();
    kept.add(id);
    await tx.walStream.create({ data: { id, tenantId: o.tenantId, clusterId: o.clusterId, component: c.name, slotName: slotNameOf(id), urlEnc: c.config.url_encrypted } });
  }
  const gone = active.filter((s) => !kept.has(s.id)).map((s) => s.id);
  if (gone.length) await tx.walStream.updateMany({ where: { id: { in: gone } }, data: { status: 'dropping' } });
}

/** The cluster is being deleted: every stream of it drops its slot. */
export async function dropClusterStreams(tx: Tx | Db, clusterId: string): Promise<void> {
  await tx.walStream.updateMany({ where: { clusterId, status: 'active' }, data: { status: 'dropping' } });
}
