import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Runtime } from '../runtime.js';
import { createRedis } from '../queue/connection.js';
import { startWorkers, type Workers } from '../queue/worker.js';
import { createBackupDeleter, createBackupRunner, createReplicator, createVerifier } from '../modules/backups/backups.jobs.js';
import { createRestoreRunner } from '../modules/restores/restores.jobs.js';
import { createClusterDeleter } from '../modules/clusters/clusters.jobs.js';
import { createPruneJob } from '../modules/retention/retention.jobs.js';
import { createRetentionService } from '../modules/retention/retention.service.js';

export interface WorkerRole {
  id: string;
  workers: Workers;
  close(): Promise<void>;
}

export function startWorkerRole(rt: Runtime, opts: { graceMs?: number } = {}): WorkerRole {
  const shutdown = new AbortController();
  const id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const connection = createRedis(rt.config.redisUrl, 'worker');
  connection.on('error', (err) => rt.log.debug({ err: err.message }, 'redis worker connection error'));
  const stores = [rt.store, ...(rt.secondaryStore ? [rt.secondaryStore] : [])];
  const retention = createRetentionService({ db: rt.db });
  const storeSet = { primary: rt.store, secondary: rt.secondaryStore };
  const { db, ledger, box, postgresTargets, now, log, queues } = rt;
  const leaseMs = rt.config.leaseMs;
  const dataRootOf = async (_tenantId: string) => rt.config.dataRoot;
  const common = { db, ledger, box, dataRootOf, postgresTargets, workerId: id, now, log, shutdown: shutdown.signal, leaseMs };
  const workers = startWorkers({
    connection,
    prefix: rt.config.queuePrefix,
    concurrency: rt.config.workerConcurrency,
    log,
    handlers: {
      backups: { 'run-backup': createBackupRunner({ ...common, store: rt.store, secondary: rt.secondaryStore, queues }) },
      restores: { 'run-restore': createRestoreRunner({ ...common, stores: storeSet }) },
      maintenance: {
        'delete-backup': createBackupDeleter({ db, ledger, stores }),
        'delete-cluster': createClusterDeleter({ db, ledger, stores, now }),
        prune: createPruneJob({ service: retention, queues }),
        'replicate-backup': createReplicator({ db, stores: storeSet, log, now }),
        'verify-backup': createVerifier({ db, stores: storeSet, now }),
      },
    },
  });
  return {
    id,
    workers,
    /** Takes no new jobs; lets running ones finish within the grace period, then aborts them: each is cleaned up and handed back (`queued`) for another worker. */
    async close() {
      const closing = workers.close();
      let timer: NodeJS.Timeout | undefined;
      const late = await Promise.race([
        closing.then(() => false),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), opts.graceMs ?? rt.config.shutdownGraceMs))),
      ]);
      clearTimeout(timer);
      if (late) {
        rt.log.warn('running jobs did not finish within the grace period; aborting them');
        shutdown.abort();
        await closing;
      }
      connection.disconnect();
    },
  };
}
