import type { Db } from '../../db/client.js';
import type { SecretBox } from '../../crypto/secrets.js';
import { parsePostgresUrl, type PostgresConnection } from '../../components/postgres-connection.js';
import type { TargetPolicy } from '../../components/postgres-targets.js';
import { postgresConnection } from '../../components/postgres.js';
import { ComponentError } from '../../components/types.js';
import { createSlot, dropSlot } from '../../components/pitr/checks.js';
import type { Queues } from '../../queue/queues.js';

/*
 * The replication slots of continuous components on the tenants' servers (SPEC section 13). The
 * cluster service calls these right after the transaction that saved the components (never a
 * network call inside a transaction); the archivers do the same work for any stream that still
 * needs it (a save whose follow-up failed, a cluster deleted by the job), so a failure here only
 * delays it.
 */

export interface SlotDeps {
  db: Db;
  box: SecretBox;
  targets: TargetPolicy;
  queues?: Pick<Queues, 'add'> | undefined;
  log: { warn(obj: object, msg: string): void };
}

interface StreamRow {
  id: string;
  tenantId: string;
  slotName: string;
  urlEnc: string;
}

/** The stream's connection, refused or pinned by the operator's target policy like every connection to a tenant's server (the postgres driver's check). */
export async function streamConnection(deps: Pick<SlotDeps, 'box' | 'targets'>, s: Pick<StreamRow, 'urlEnc'>): Promise<PostgresConnection> {
  let url: string;
  try {
    url = deps.box.decrypt(s.urlEnc);
    parsePostgresUrl(url);
  } catch (err) {
    throw new ComponentError(`postgres: the component's URL is invalid: ${err instanceof ComponentError ? err.message : 'it cannot be read'}`);
  }
  return postgresConnection({ url }, { dataRoot: '', targets: deps.targets });
}

/** Creates the slots of the cluster's active streams (idempotent): WAL is kept for the archiver from now on. */
export async function ensureClusterSlots(deps: SlotDeps, clusterId: string): Promise<void> {
  const streams = await deps.db.walStream.findMany({ where: { clusterId, status: 'active' } });
  for (const s of streams) {
    try {
      await createSlot(await streamConnection(deps, s), s.slotName);
    } catch (err) {
      deps.log.warn({ err: (err as Error).message, stream_id: s.id, cluster_id: clusterId }, 'could not create the replication slot at save; the archiver will');
    }
  }
}

/**
 * Finishes one 'dropping' stream: drops its slot on the tenant's server (ending the walsender
 * that holds it, an archiver's or an orphan's), then deletes the row with its stored WAL
 * (wal_segments and their references cascade) and asks for a GC of the tenant's repository.
 * Throws when the slot could not be dropped: the row stays, for an archiver to retry.
 */
export async function finishDroppedStream(deps: SlotDeps, s: StreamRow): Promise<void> {
  await dropSlot(await streamConnection(deps, s), s.slotName);
  const gone = await deps.db.walStream.deleteMany({ where: { id: s.id, status: 'dropping' } });
  if (gone.count === 0) return;
  await deps.db.repository.updateMany({ where: { tenantId: s.tenantId }, data: { gcRequestedAt: new Date() } });
  await deps.queues?.add('maintenance', 'gc', { tenant_id: s.tenantId }, s.tenantId).catch(() => {});
}

/** Finishes the cluster's 'dropping' streams now (best effort: what fails is left to the archivers). */
export async function dropClusterSlots(deps: SlotDeps, clusterId: string): Promise<void> {
  const streams = await deps.db.walStream.findMany({ where: { clusterId, status: 'dropping' } });
  for (const s of streams) {
    try {
      await finishDroppedStream(deps, s);
    } catch (err) {
      deps.log.warn({ err: (err as Error).message, stream_id: s.id, cluster_id: clusterId }, 'could not drop the replication slot now; the archiver will retry');
    }
  }
}
