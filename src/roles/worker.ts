import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Runtime } from '../runtime.js';
import { createRedis } from '../queue/connection.js';
import { startWorkers, type Workers } from '../queue/worker.js';
import { createBackupDeleter, createBackupRunner } from '../modules/backups/backups.jobs.js';
import { createClusterDeleter } from '../modules/clusters/clusters.jobs.js';
import { createPruneJob } from '../modules/retention/retention.jobs.js';
import { createRetentionService } from '../modules/retention/retention.service.js';

export interface WorkerRole {
  id: string;
  workers: Workers;
  close(): Promise<void>;
}

export function startWorkerRole(rt: Runtime): WorkerRole {
  const id = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
  const connection = createRedis(rt.config.redisUrl, 'worker');
  connection.on('error', (err) => rt.log.debug({ err: err.message }, 'redis worker connection error'));
  const stores = [rt.store, ...(rt.secondaryStore ? [rt.secondaryStore] : [])];
  const retention = createRetentionService({ db: rt.db });
  const workers = startWorkers({
    connection,
    prefix: rt.config.queuePrefix,
    concurrency: rt.config.workerConcurrency,
    log: rt.log,
    handlers: {
      backups: {
        'run-backup': createBackupRunner({ db: rt.db, store: rt.store, box: rt.box, dataRoot: rt.config.dataRoot, queues: rt.queues, workerId: id, now: rt.now, log: rt.log }),
      },
      restores: {
        'run-restore': async () => {
          throw new Error('restores are not available yet');
        },
      },
      maintenance: {
        'delete-backup': createBackupDeleter({ db: rt.db, stores }),
        'delete-cluster': createClusterDeleter({ db: rt.db, stores, now: rt.now }),
        prune: createPruneJob({ service: retention, queues: rt.queues }),
      },
    },
  });
  return {
    id,
    workers,
    async close() {
      await workers.close();
      connection.disconnect();
    },
  };
}
