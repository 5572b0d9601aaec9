/** The retry schedule of one delivery (WEBHOOK_RETRY_*): pure, so it is tested on its own. */
export interface RetrySettings {
  /** The wait after the first failed attempt. */
  retryBaseMs: number;
  /** No wait is longer than this. */
  retryMaxMs: number;
  /** Retries go on for this long after the first attempt. */
  retryWindowMs: number;
}

/** The wait after the `attempts`-th failed attempt: base, 2 x base, 4 x base ... at most max. */
export function retryDelayMs(attempts: number, s: Pick<RetrySettings, 'retryBaseMs' | 'retryMaxMs'>): number {
  if (attempts < 1) return 0;
  // 2^(attempts-1) overflows to Infinity long before it matters; min() caps it.
  return Math.min(s.retryMaxMs, s.retryBaseMs * 2 ** Math.min(attempts - 1, 1024));
}

/**
 * After a failed attempt (the `attempts`-th, started at `startedAt` and ended at `now`) of a
 * delivery first attempted at `firstAttemptAt`: when to try again, or give up. The window is
 * honoured to its end: a wait that would run past it is cut short to end exactly there, so the
 * last attempt starts no earlier than the window's end; only an attempt that started at or after
 * the end gives up (one that started before it and ended after is followed by one more, at once).
 */
export function nextAttempt(input: { attempts: number; firstAttemptAt: Date; startedAt?: Date; now: Date }, s: RetrySettings): { retryAt: Date } | { giveUp: true } {
  const windowEnd = input.firstAttemptAt.getTime() + s.retryWindowMs;
  const now = input.now.getTime();
  if ((input.startedAt ?? input.now).getTime() >= windowEnd) return { giveUp: true };
  return { retryAt: new Date(Math.max(now, Math.min(now + retryDelayMs(input.attempts, s), windowEnd))) };
}
