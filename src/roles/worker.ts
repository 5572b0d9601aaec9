import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Runtime } from '../runtime.js';
import { createRedis } from '../queue/connection.js';
import { startWorkers, type Workers } from '../queue/worker.js';
import { createBackupDeleter, createBackupRunner, createReplicator, createVerifier } from '../modules/backups/backups.jobs.js';
import { createRestoreRunner } from '../modules/restores/restores.jobs.js';
import { createClusterDeleter } from '../modules/clusters/clusters.jobs.js';
import { createGcJob, createSampleVerifier } from '../modules/repository/repository.jobs.js';
import { createPruneJob } from '../modules/retention/retention.jobs.js';
import { createDeliverJob } from '../modules/webhooks/delivery.jobs.js';
import { createWebhookSender } from '../modules/webhooks/sender.js';
import { createHookCaller } from '../modules/hooks/hooks.js';
import { startDispatcher } from '../modules/webhooks/dispatcher.js';
import { createRetentionService } from '../modules/retention/retention.service.js';
import { tenantRootOf } from '../modules/tenants/tenant-folder.js';
import { sweepRestoreLeftovers } from '../components/index.js';
import { sweepScratch } from '../components/pitr/scratch.js';
import type { StoredComponent } from '../modules/clusters/components.js';
import type { Db } from '../db/client.js';
import type { Logger } from 'pino';

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
  const retention = createRetentionService({ db: rt.db, ledger: rt.ledger });
  const repoSettings = { gcGraceMs: rt.config.gcGraceMs, gcRepackThreshold: rt.config.gcRepackThreshold, verifySamplePercent: rt.config.verifySamplePercent };
  const { db, ledger, box, targets, now, log, queues } = rt;
  const leaseMs = rt.config.leaseMs;
  // Directory components resolve inside their tenant's own folder, checked again here.
  const dataRootOf = tenantRootOf(db, rt.config.dataRoot);
  // Hooks (consistent backups, restores) are called like webhooks: signed, through the SSRF guard.
  const hooks = createHookCaller({ urlGuard: rt.webhookUrls, box, now });
  const common = { db, ledger, box, dataRootOf, targets, workerId: id, now, log, shutdown: shutdown.signal, leaseMs, hooks };
  const workers = startWorkers({
    connection,
    prefix: rt.config.queuePrefix,
    concurrency: rt.config.workerConcurrency,
    log,
    handlers: {
      backups: { 'run-backup': createBackupRunner({ ...common, repo: rt.repo, queues }) },
      restores: { 'run-restore': createRestoreRunner({ ...common, repo: rt.repo, pitr: rt.config.pitr }) },
      maintenance: {
        'delete-backup': createBackupDeleter({ db, ledger, repo: rt.repo, queues, now }),
        'delete-cluster': createClusterDeleter({ db, ledger, repo: rt.repo, queues, now }),
        prune: createPruneJob({ service: retention, queues }),
        'replicate-backup': createReplicator({ db, repo: rt.repo, log, now }),
        'verify-backup': createVerifier({ db, repo: rt.repo, now }),
        gc: createGcJob({ db, repo: rt.repo, settings: repoSettings, now, log, signal: shutdown.signal }),
        'verify-sample': createSampleVerifier({ db, repo: rt.repo, settings: repoSettings, now, log }),
      },
      webhooks: { deliver: createDeliverJob({ db, box, queues, sender: createWebhookSender({ urlGuard: rt.webhookUrls, timeoutMs: rt.config.webhooks.timeoutMs }), settings: rt.config.webhooks, now, log }) },
    },
  });
  void sweepLeftovers(db, dataRootOf, log);
  // Scratch PostgreSQL instances a killed worker left (point-in-time restores).
  void sweepScratch(rt.config.pitr.workDir, { log }).catch((err: unknown) => log.warn({ err }, 'could not sweep scratch instances'));
  // Workers turn committed events into deliveries as they are notified (any number may: the fan-out is idempotent).
  const dispatcher = startDispatcher({ db, databaseUrl: rt.config.databaseUrl, queues, now, log });
  return {
    id,
    workers,
    /** Takes no new jobs; lets running ones finish within the grace period, then aborts them: each is cleaned up and handed back (`queued`) for another worker. */
    async close() {
      await dispatcher.close();
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

/**
 * Removes what interrupted restores left beside their targets (and puts back a tree a crash took
 * away mid-swap), for every directory component of clusters with no restore queued or running.
 */
async function sweepLeftovers(db: Db, dataRootOf: (tenantId: string) => Promise<string>, log: Logger): Promise<void> {
  try {
    let after = '00000000-0000-0000-0000-000000000000';
    for (;;) {
      const clusters = await db.$queryRaw<{ id: string; tenant_id: string; components: StoredComponent[] }[]>`
        SELECT id::text, tenant_id::text, components FROM clusters
        WHERE id > ${after}::uuid AND status = 'active' AND components @> '[{"type":"directory"}]'::jsonb
        ORDER BY id LIMIT 500`;
      if (clusters.length === 0) return;
      after = clusters[clusters.length - 1]!.id;
      for (const c of clusters) {
        const paths = c.components.flatMap((x) => (x.type === 'directory' ? [x.config.path] : []));
        const root = await dataRootOf(c.tenant_id).catch(() => null);
        if (root) await sweepRestoreLeftovers(root, paths, log);
      }
    }
  } catch (err) {
    log.warn({ err }, 'could not sweep restore leftovers');
  }
}
