import type { Prisma } from '../../src/generated/prisma/client.js';
import type { Runtime } from '../../src/runtime.js';

/**
 * Writes a backup row in a given state, as a crash or an older version could have left it: an
 * active one (queued/running) takes its cluster's job slot in the same transaction, as the
 * database requires. Tests only; the service itself goes through src/jobs/ledger.ts.
 */
export async function plantBackup(rt: Runtime, data: Prisma.BackupUncheckedCreateInput) {
  return rt.db.$transaction(async (tx) => {
    const row = await tx.backup.create({ data });
    if (data.status === 'queued' || data.status === 'running')
      await tx.cluster.update({ where: { id: data.clusterId }, data: { activeJobId: row.id, activeJobKind: 'backup' } });
    return row;
  });
}

/** A restore row in a given state; an active one takes its target cluster's slot (and `restoring`). */
export async function plantRestore(rt: Runtime, data: Prisma.RestoreUncheckedCreateInput) {
  return rt.db.$transaction(async (tx) => {
    const row = await tx.restore.create({ data });
    if (data.status === 'queued' || data.status === 'running')
      await tx.cluster.update({ where: { id: data.clusterId }, data: { activeJobId: row.id, activeJobKind: 'restore', status: 'restoring' } });
    return row;
  });
}
