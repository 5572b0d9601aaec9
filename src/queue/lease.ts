import type { Logger } from 'pino';

export const LEASE_MS = 60_000;
export const HEARTBEAT_MS = 15_000;

/**
 * Keeps a running job's lease alive while `fn` runs. A worker that dies stops renewing; the
 * reconciler then marks the job failed ("worker lost") once the lease has expired.
 */
export async function withLease<T>(renew: () => Promise<unknown>, fn: () => Promise<T>, log: Logger, heartbeatMs = HEARTBEAT_MS): Promise<T> {
  const timer = setInterval(() => {
    renew().catch((err: unknown) => log.warn({ err }, 'lease renewal failed'));
  }, heartbeatMs);
  timer.unref();
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}
