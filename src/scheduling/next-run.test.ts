import fc from 'fast-check';
import { DateTime } from 'luxon';
import { describe, expect, it } from 'vitest';
import { bucketStart, nextBucketStart } from './buckets.js';
import { nextRunAt, nextRunsAt, offsetSeconds, smallestInterval } from './next-run.js';
import { TRICKY_ZONES } from './tricky-zones.fixture.js';

const HOUR = 3_600_000;
const daily = (timezone: string) => ({ timezone, schedule: [{ interval: '1d', count: 7 }, { interval: '1w', count: 4 }] });

/** `count` successive runs, each the next one after the previous. */
function chain(policy: Parameters<typeof nextRunAt>[0], clusterId: string, after: Date, count: number): Date[] {
  const runs: Date[] = [];
  let t = after;
  for (let i = 0; i < count; i++) {
    const run = nextRunAt(policy, clusterId, t);
    if (!run) throw new Error('no run');
    runs.push(run);
    t = run;
  }
  return runs;
}

describe('smallestInterval', () => {
  it('picks the smallest nominal interval', () => {
    expect(smallestInterval([{ interval: '1M', count: 12 }, { interval: '1d', count: 7 }, { interval: '1w', count: 4 }])).toBe('1d');
    expect(smallestInterval([{ interval: '2d', count: 1 }, { interval: '36h', count: 1 }])).toBe('36h');
    expect(smallestInterval([])).toBeNull();
  });

  it('throws on an invalid interval', () => {
    expect(() => smallestInterval([{ interval: 'daily', count: 1 }])).toThrow(RangeError);
  });
});

describe('offsetSeconds', () => {
  it('is stable, whole, and within min(1 h, bucket)', () => {
    expect(offsetSeconds('cluster-a', 86_400)).toBe(offsetSeconds('cluster-a', 86_400));
    fc.assert(
      fc.property(fc.string(), fc.integer({ min: 1, max: 10_000_000 }), (id, len) => {
        const s = offsetSeconds(id, len);
        expect(Number.isInteger(s)).toBe(true);
        expect(s).toBeGreaterThanOrEqual(0);
        expect(s).toBeLessThan(Math.min(3600, len));
      }),
    );
  });

  it('spreads clusters over the hour', () => {
    const offsets = Array.from({ length: 1000 }, (_, i) => offsetSeconds(`00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, 86_400));
    const perQuarter = [0, 0, 0, 0];
    for (const s of offsets) perQuarter[Math.floor(s / 900)]! += 1;
    for (const q of perQuarter) expect(q).toBeGreaterThan(150);
    expect(new Set(offsets).size).toBeGreaterThan(700);
  });
});

describe('nextRunAt: examples', () => {
  it('returns null without a schedule', () => {
    expect(nextRunAt({ timezone: 'UTC', schedule: [] }, 'c', new Date())).toBeNull();
  });

  it('runs once a day at the cluster offset after local midnight, driven by the smallest interval', () => {
    const s = offsetSeconds('c1', 86_400);
    const z = 'Europe/Berlin';
    const midnight = DateTime.fromISO('2024-06-02T00:00', { zone: z }).toMillis();
    // Before today's slot: today's slot.
    expect(nextRunAt(daily(z), 'c1', new Date(midnight))?.getTime()).toBe(midnight + s * 1000);
    // At or after today's slot: tomorrow's slot (strictly after).
    const tomorrow = DateTime.fromISO('2024-06-03T00:00', { zone: z }).toMillis();
    expect(nextRunAt(daily(z), 'c1', new Date(midnight + s * 1000))?.getTime()).toBe(tomorrow + s * 1000);
  });

  it('runs in the 23-hour day at the same wall-clock time', () => {
    const z = 'America/New_York';
    const [a, b, c] = chain(daily(z), 'cluster-42', DateTime.fromISO('2024-03-09T00:00', { zone: z }).toJSDate(), 3);
    const local = [a, b, c].map((d) => DateTime.fromJSDate(d!, { zone: z }));
    expect(local.map((d) => d.toISODate())).toEqual(['2024-03-09', '2024-03-10', '2024-03-11']);
    expect(new Set(local.map((d) => d.toFormat('HH:mm:ss'))).size).toBe(1);
    expect(b!.getTime() - a!.getTime()).toBe(24 * HOUR);
    expect(c!.getTime() - b!.getTime()).toBe(23 * HOUR);
  });

  it('skips a day that does not exist (Pacific/Apia 2011-12-30)', () => {
    const z = 'Pacific/Apia';
    const runs = chain(daily(z), 'c', DateTime.fromISO('2011-12-28T12:00', { zone: z }).toJSDate(), 3);
    expect(runs.map((d) => DateTime.fromJSDate(d, { zone: z }).toISODate())).toEqual(['2011-12-29', '2011-12-31', '2012-01-01']);
  });

  it('throws on an unknown zone', () => {
    expect(() => nextRunAt(daily('Nowhere/City'), 'c', new Date())).toThrow(RangeError);
  });
});

const clusterIdArb = fc.uuid();
const instantArb = fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2060, 0, 1) }).map((ms) => new Date(ms));
const intervalArb = fc
  .tuple(fc.integer({ min: 1, max: 5 }), fc.constantFrom('h', 'd', 'w', 'M', 'y'))
  .map(([n, u]) => `${n}${u}`);

describe('nextRunAt: properties', () => {
  it('nextRunsAt (the scheduler\'s batched form) equals nextRunAt for each cluster', () => {
    fc.assert(
      fc.property(instantArb, intervalArb, fc.constantFrom(...TRICKY_ZONES), fc.array(clusterIdArb, { minLength: 1, maxLength: 20 }), (after, interval, timezone, ids) => {
        const policy = { timezone, schedule: [{ interval, count: 1 }] };
        expect(nextRunsAt(policy, ids, after)).toEqual(ids.map((id) => nextRunAt(policy, id, after)));
      }),
      { numRuns: 500 },
    );
    expect(nextRunsAt({ timezone: 'UTC', schedule: [] }, ['a', 'b'], new Date())).toEqual([null, null]);
  });

  it('is strictly after `after`, in its bucket or the next one, at the stable offset', () => {
    fc.assert(
      fc.property(instantArb, intervalArb, fc.constantFrom(...TRICKY_ZONES), clusterIdArb, (after, interval, timezone, id) => {
        const run = nextRunAt({ timezone, schedule: [{ interval, count: 1 }] }, id, after)!;
        expect(run.getTime()).toBeGreaterThan(after.getTime());
        const start = bucketStart(run, interval, timezone);
        expect([bucketStart(after, interval, timezone).getTime(), nextBucketStart(after, interval, timezone).getTime()]).toContain(start.getTime());
        const length = (nextBucketStart(run, interval, timezone).getTime() - start.getTime()) / 1000;
        expect(run.getTime() - start.getTime()).toBe(offsetSeconds(id, length) * 1000);
      }),
      { numRuns: 1000 },
    );
  });

  it('chained runs fall in consecutive buckets, one each', () => {
    fc.assert(
      fc.property(instantArb, intervalArb, fc.constantFrom(...TRICKY_ZONES), clusterIdArb, (after, interval, timezone, id) => {
        const runs = chain({ timezone, schedule: [{ interval, count: 1 }] }, id, after, 6);
        for (let i = 1; i < runs.length; i++) {
          expect(bucketStart(runs[i]!, interval, timezone)).toEqual(nextBucketStart(runs[i - 1]!, interval, timezone));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('hourly runs are exactly 3600 s apart in every zone', () => {
    fc.assert(
      fc.property(instantArb, fc.constantFrom(...TRICKY_ZONES), clusterIdArb, (after, timezone, id) => {
        const runs = chain({ timezone, schedule: [{ interval: '1h', count: 24 }, { interval: '1d', count: 7 }] }, id, after, 50);
        for (let i = 1; i < runs.length; i++) expect(runs[i]!.getTime() - runs[i - 1]!.getTime()).toBe(HOUR);
      }),
      { numRuns: 200 },
    );
  });

  it('daily runs fall on consecutive local days, at one wall-clock time, across DST changes', () => {
    // These zones change their clocks away from the first hour after midnight,
    // so the wall-clock time of the run is the same every day.
    const zones = ['Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'Pacific/Apia'];
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(2012, 0, 1), max: Date.UTC(2040, 0, 1) }).map((ms) => new Date(ms)),
        fc.constantFrom(...zones),
        clusterIdArb,
        (after, zone, id) => {
          const runs = chain(daily(zone), id, after, 370).map((d) => DateTime.fromJSDate(d, { zone }));
          for (let i = 1; i < runs.length; i++) {
            expect(runs[i]!.startOf('day').diff(runs[i - 1]!.startOf('day'), 'days').days).toBe(1);
            expect(runs[i]!.toFormat('HH:mm:ss')).toBe(runs[0]!.toFormat('HH:mm:ss'));
          }
        },
      ),
      { numRuns: 16 },
    );
  }, 60_000);
});
