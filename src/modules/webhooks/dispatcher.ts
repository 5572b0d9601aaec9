import pg from 'pg';
import type { Logger } from 'pino';
import type { Db } from '../../db/client.js';
import type { Queues } from '../../queue/queues.js';
import { jobId } from '../../queue/jobs.js';
import { EVENTS_CHANNEL } from '../events/outbox.js';
import { fanOut, type CreatedDelivery } from './deliveries.repo.js';

const BATCH = 500;

/** The job of a delivery's `attempt`-th attempt: one id per attempt, so a retry is never a duplicate of the job before it. */
export function deliverJobId(deliveryId: string, attempt: number): string {
  return jobId('deliver', `${deliveryId}-${attempt}`);
}

/** The attempt number a deliver job's id names (null for an id of another form). */
export function attemptOfJob(id: string | undefined): number | null {
  const m = id ? /-(\d+)$/.exec(id) : null;
  return m ? Number(m[1]) : null;
}

/** Enqueues the first attempt of each delivery. A failure is logged: the reconciler enqueues what is due and missing. */
export async function enqueueFirstAttempts(queues: Pick<Queues, 'all'>, deliveries: CreatedDelivery[], log: Logger): Promise<void> {
  if (deliveries.length === 0) return;
  await queues.all.webhooks
    .addBulk(deliveries.map((d) => ({ name: 'deliver', data: { tenant_id: d.tenantId, delivery_id: d.id }, opts: { jobId: deliverJobId(d.id, 1) } })))
    .catch((err: unknown) => log.warn({ err, deliveries: deliveries.length }, 'could not enqueue webhook deliveries; the reconciler will'));
}

/** Fans out every undispatched event (in batches) and enqueues the deliveries made; returns how many events it dispatched. */
export async function dispatchPending(deps: { db: Db; queues: Pick<Queues, 'all'>; now: () => Date; log: Logger }): Promise<number> {
  let events = 0;
  for (;;) {
    const out = await fanOut(deps.db, BATCH, deps.now());
    events += out.events;
    await enqueueFirstAttempts(deps.queues, out.deliveries, deps.log);
    if (out.events < BATCH) return events;
  }
}

export interface Dispatcher {
  /** Resolves once the LISTEN connection is up (or failed once; it keeps retrying). */
  ready: Promise<void>;
  close(): Promise<void>;
}

/**
 * Turns committed events into deliveries, soon after their commit: a dedicated PostgreSQL
 * connection LISTENs on the outbox's channel (recordEvent NOTIFYs at commit), and a poll every
 * `pollMs` covers notifications missed while that connection was down. Wake-ups that arrive
 * during a pass coalesce into one more pass. Any number of processes may run one (fanOut's
 * SKIP LOCKED and unique key keep them apart).
 */
export function startDispatcher(deps: { db: Db; databaseUrl: string; queues: Pick<Queues, 'all'>; now: () => Date; log: Logger; pollMs?: number }): Dispatcher {
  const pollMs = deps.pollMs ?? 2_000;
  let stopped = false;
  let running: Promise<void> | null = null;
  let again = false;
  let client: pg.Client | null = null;
  let reconnectTimer: NodeJS.Timeout | undefined;
  let reconnectDelay = 200;

  const pass = async () => {
    do {
      again = false;
      try {
        await dispatchPending(deps);
      } catch (err) {
        if (!stopped) deps.log.warn({ err }, 'webhook dispatch failed; retrying at the next wake-up');
      }
    } while (again && !stopped);
  };
  const wake = () => {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = pass().finally(() => (running = null));
  };

  let readyResolve!: () => void;
  const ready = new Promise<void>((r) => (readyResolve = r));
  const connect = async () => {
    if (stopped) return;
    // keepAlive: a connection cut off without a FIN is noticed and replaced (the poll covers the gap).
    const c = new pg.Client({ connectionString: deps.databaseUrl, connectionTimeoutMillis: 5_000, keepAlive: true, keepAliveInitialDelayMillis: 10_000 });
    const lost = () => {
      if (client !== c) return;
      client = null;
      c.end().catch(() => {});
      if (stopped) return;
      reconnectTimer = setTimeout(() => void connect(), reconnectDelay);
      reconnectDelay = Math.min(reconnectDelay * 2, 5_000);
    };
    client = c;
    c.on('error', lost);
    c.on('end', lost);
    c.on('notification', wake);
    try {
      await c.connect();
      await c.query(`LISTEN ${EVENTS_CHANNEL}`);
      reconnectDelay = 200;
      wake(); // whatever was committed while this connection was down
    } catch (err) {
      deps.log.debug({ err }, 'webhook dispatcher could not listen; retrying');
      lost();
    } finally {
      readyResolve();
    }
  };
  void connect();
  const poll = setInterval(wake, pollMs);
  poll.unref();

  return {
    ready,
    async close() {
      stopped = true;
      clearInterval(poll);
      clearTimeout(reconnectTimer);
      const c = client;
      client = null;
      await c?.end().catch(() => {});
      await running;
    },
  };
}
