import type { Logger } from 'pino';

/**
 * Keeps a running job's lease alive while `fn` runs, renewing it four times per lease period.
 * A worker that dies stops renewing; the reconciler then marks the job failed ("worker lost")
 * once the lease has expired.
 */
export async function withLease<T>(renew: () => Promise<unknown>, fn: () => Promise<T>, log: Logger, leaseMs: number): Promise<T> {
  const timer = setInterval(() => {
    renew().catch((err: unknown) => log.warn({ err }, 'lease renewal failed'));
  }, Math.max(250, Math.floor(leaseMs / 4)));
  timer.unref();
  try {
    return await fn();
  } finally {
    clearInterval(timer);
  }
}
