import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { nextAttempt, retryDelayMs } from './backoff.js';

const s = { retryBaseMs: 5_000, retryMaxMs: 3_600_000, retryWindowMs: 86_400_000 };
const t0 = new Date('2026-12-02T00:00:00Z');
const at = (ms: number) => new Date(t0.getTime() + ms);

describe('webhook retry backoff', () => {
  it('doubles from the base up to the max', () => {
    expect([1, 2, 3, 4, 5].map((n) => retryDelayMs(n, s))).toEqual([5_000, 10_000, 20_000, 40_000, 80_000]);
    expect(retryDelayMs(11, s)).toBe(3_600_000); // 5 s x 1024 > 1 h
    expect(retryDelayMs(5_000, s)).toBe(3_600_000);
  });

  it('keeps retrying for the whole window, the last attempt at its end, then gives up', () => {
    let now = t0;
    const times: number[] = [];
    for (let n = 1; ; n++) {
      const next = nextAttempt({ attempts: n, firstAttemptAt: t0, now }, s);
      if ('giveUp' in next) break;
      times.push(next.retryAt.getTime() - t0.getTime());
      now = next.retryAt;
    }
    expect(times[0]).toBe(5_000);
    expect(times.at(-1)).toBe(86_400_000); // the last attempt is exactly at the window's end
    expect(times.length).toBe(33); // 10 doublings (85 min), 22 hourly waits, one cut short to end at 24 h
  });

  it('gives up on a failure at or after the window end', () => {
    expect(nextAttempt({ attempts: 3, firstAttemptAt: t0, now: at(86_400_000) }, s)).toEqual({ giveUp: true });
    expect(nextAttempt({ attempts: 1, firstAttemptAt: t0, now: at(1) }, { ...s, retryWindowMs: 0 })).toEqual({ giveUp: true });
  });

  it('an attempt that started before the window end and ended after it is followed by one more, at once', () => {
    expect(nextAttempt({ attempts: 9, firstAttemptAt: t0, startedAt: at(86_399_000), now: at(86_409_000) }, s)).toEqual({ retryAt: at(86_409_000) });
    expect(nextAttempt({ attempts: 9, firstAttemptAt: t0, startedAt: at(86_400_000), now: at(86_409_000) }, s)).toEqual({ giveUp: true });
  });

  it('property: each wait is within [base, max], never past the window end, and non-decreasing until cut short', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 10, max: 100_000 }),
        fc.integer({ min: 1, max: 1_000 }),
        fc.integer({ min: 0, max: 10_000_000 }),
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 0, max: 10_000_000 }),
        (base, factor, window, attempts, elapsed) => {
          const cfg = { retryBaseMs: base, retryMaxMs: base * factor, retryWindowMs: window };
          const d = retryDelayMs(attempts, cfg);
          expect(d).toBeGreaterThanOrEqual(base);
          expect(d).toBeLessThanOrEqual(cfg.retryMaxMs);
          expect(retryDelayMs(attempts + 1, cfg)).toBeGreaterThanOrEqual(d);
          const next = nextAttempt({ attempts, firstAttemptAt: t0, now: at(elapsed) }, cfg);
          if (elapsed >= window) expect(next).toEqual({ giveUp: true });
          else {
            if (!('retryAt' in next)) throw new Error('gave up inside the window');
            const wait = next.retryAt.getTime() - at(elapsed).getTime();
            expect(wait).toBeGreaterThan(0);
            expect(wait).toBe(Math.min(d, window - elapsed));
          }
        },
      ),
    );
  });

  it('a 10 ms cap against a 1,000 s window (the counterexample of a CI run whose loop bound was too short): ~100k attempts, the last at the window end', () => {
    const cfg = { retryBaseMs: 10, retryMaxMs: 10, retryWindowMs: 999_981 };
    let started = t0;
    let n = 1;
    for (; n < 200_000; n++) {
      const next = nextAttempt({ attempts: n, firstAttemptAt: t0, startedAt: started, now: started }, cfg);
      if ('giveUp' in next) break;
      started = next.retryAt;
    }
    expect(n).toBe(Math.ceil(999_981 / 10) + 1);
    expect(started.getTime() - t0.getTime()).toBe(999_981);
  });

  it('property: a receiver that never answers gets attempts until the window ends, and the last one starts no earlier than it', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 10, max: 10_000 }),
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 0, max: 5_000_000 }),
        fc.integer({ min: 0, max: 2_000 }),
        fc.integer({ min: 0, max: 20_000 }),
        (base, factor, window, lag, duration) => {
          const cfg = { retryBaseMs: base, retryMaxMs: base * factor, retryWindowMs: window };
          // The loop below runs one step per attempt: a schedule of over ~50k attempts (a 10 ms
          // cap against a 1,000 s window) is correct but too long to walk here.
          fc.pre(window / cfg.retryMaxMs < 50_000);
          let started = t0;
          let n = 1;
          for (; n < 100_000; n++) {
            const ended = new Date(started.getTime() + duration); // each attempt takes a while
            const next = nextAttempt({ attempts: n, firstAttemptAt: t0, startedAt: started, now: ended }, cfg);
            if ('giveUp' in next) break;
            expect(next.retryAt.getTime()).toBeGreaterThanOrEqual(ended.getTime());
            started = new Date(next.retryAt.getTime() + lag); // the attempt may start late, never early
          }
          expect(n).toBeLessThan(100_000);
          expect(started.getTime() - t0.getTime()).toBeGreaterThanOrEqual(window);
        },
      ),
    );
  });
});
