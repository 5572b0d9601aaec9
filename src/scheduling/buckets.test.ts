import fc from 'fast-check';
import { DateTime } from 'luxon';
import { describe, expect, it } from 'vitest';
import { bucketKey, bucketRange, bucketStart, bucketStarter, nextBucketStart } from './buckets.js';
import type { IntervalUnit } from './interval.js';
import { TRICKY_ZONES } from './tricky-zones.fixture.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

/** Local wall-clock ISO in `zone` to the instant. */
const at = (iso: string, zone: string): Date => DateTime.fromISO(iso, { zone }).toJSDate();
const utc = (iso: string): Date => new Date(iso);

function expectBucket(t: Date, interval: string, zone: string, start: Date, end: Date): void {
  expect(bucketStart(t, interval, zone).toISOString()).toBe(start.toISOString());
  expect(nextBucketStart(t, interval, zone).toISOString()).toBe(end.toISOString());
}

describe('bucketStart / nextBucketStart: examples', () => {
  it('h: UTC hours whatever the zone', () => {
    const t = utc('2024-03-31T01:30:00Z'); // Berlin springs forward at this hour
    expectBucket(t, '1h', 'Europe/Berlin', utc('2024-03-31T01:00:00Z'), utc('2024-03-31T02:00:00Z'));
    // Lord Howe is UTC+10:30, so its buckets start at :30 local.
    expectBucket(t, '1h', 'Australia/Lord_Howe', utc('2024-03-31T01:00:00Z'), utc('2024-03-31T02:00:00Z'));
  });

  it('nh: n-hour groups counted from the Unix epoch', () => {
    const t = utc('2024-03-31T01:30:00Z');
    expectBucket(t, '3h', 'UTC', utc('2024-03-31T00:00:00Z'), utc('2024-03-31T03:00:00Z'));
    // 1711848600000 ms = hour 475513.5 since the epoch; 475510 is the multiple of 5 below it.
    expectBucket(t, '5h', 'Europe/Berlin', new Date(475_510 * HOUR), new Date(475_515 * HOUR));
  });

  it('d: a spring-forward day is 23 hours, a fall-back day 25 (Europe/Berlin)', () => {
    const z = 'Europe/Berlin';
    expectBucket(at('2024-03-31T12:00', z), '1d', z, utc('2024-03-30T23:00:00Z'), utc('2024-03-31T22:00:00Z'));
    expectBucket(at('2024-10-27T02:30', z), '1d', z, utc('2024-10-26T22:00:00Z'), utc('2024-10-27T23:00:00Z'));
  });

  it('d: America/New_York DST days', () => {
    const z = 'America/New_York';
    expectBucket(at('2024-03-10T03:30', z), '1d', z, utc('2024-03-10T05:00:00Z'), utc('2024-03-11T04:00:00Z'));
    expectBucket(at('2024-11-03T23:59', z), '1d', z, utc('2024-11-03T04:00:00Z'), utc('2024-11-04T05:00:00Z'));
  });

  it('d: Australia/Lord_Howe half-hour DST gives a 24.5 h day', () => {
    const z = 'Australia/Lord_Howe';
    expectBucket(at('2024-04-07T12:00', z), '1d', z, utc('2024-04-06T13:00:00Z'), utc('2024-04-07T13:30:00Z'));
    expectBucket(at('2024-10-06T12:00', z), '1d', z, utc('2024-10-05T13:30:00Z'), utc('2024-10-06T13:00:00Z'));
  });

  it('d: a missing midnight starts the day at the first existing instant', () => {
    // America/Havana springs 00:00 -> 01:00; America/Santiago 24:00 -> 01:00.
    expectBucket(utc('2024-03-10T12:00:00Z'), '1d', 'America/Havana', utc('2024-03-10T05:00:00Z'), utc('2024-03-11T04:00:00Z'));
    expectBucket(utc('2024-09-08T12:00:00Z'), '1d', 'America/Santiago', utc('2024-09-08T04:00:00Z'), utc('2024-09-09T03:00:00Z'));
  });

  it('d: a repeated midnight starts the day at its first occurrence (America/Havana falls back 01:00 -> 00:00)', () => {
    // 05:30Z is the second 00:30 of 2024-11-03; luxon's startOf('day') would answer the second midnight.
    expectBucket(utc('2024-11-03T05:30:00Z'), '1d', 'America/Havana', utc('2024-11-03T04:00:00Z'), utc('2024-11-04T05:00:00Z'));
    expectBucket(utc('2024-11-03T04:30:00Z'), '1d', 'America/Havana', utc('2024-11-03T04:00:00Z'), utc('2024-11-04T05:00:00Z'));
  });

  it('d: Pacific/Apia skipped 2011-12-30 entirely', () => {
    const z = 'Pacific/Apia';
    // 2011-12-29 (UTC-10) runs straight into 2011-12-31 (UTC+14).
    expectBucket(at('2011-12-29T23:00', z), '1d', z, utc('2011-12-29T10:00:00Z'), utc('2011-12-30T10:00:00Z'));
    expectBucket(at('2011-12-31T01:00', z), '1d', z, utc('2011-12-30T10:00:00Z'), utc('2011-12-31T10:00:00Z'));
  });

  it('3d: groups of 3 local days counted from 1970-01-01', () => {
    // 2024-01-01 is day 19723 = 3 * 6574 + 1: its group starts on 2023-12-31.
    expectBucket(utc('2024-01-01T12:00:00Z'), '3d', 'UTC', utc('2023-12-31T00:00:00Z'), utc('2024-01-03T00:00:00Z'));
    const z = 'Europe/Berlin';
    expectBucket(at('2024-01-02T23:59', z), '3d', z, at('2023-12-31T00:00', z), at('2024-01-03T00:00', z));
    // 2024-03-30 is day 19812 = 3 * 6604: the group holds the 23-hour day, 71 hours in all.
    const r = bucketRange(at('2024-03-31T12:00', z), '3d', z);
    expect(r.start).toEqual(at('2024-03-30T00:00', z));
    expect(r.end.getTime() - r.start.getTime()).toBe(71 * HOUR);
  });

  it('3d: a group whose first day was skipped starts on the next existing day (Pacific/Apia)', () => {
    const z = 'Pacific/Apia';
    // 2011-12-28 is day 15336 = 3 * 5112: group 28, (29), 30 skipped -> ends at 31 00:00.
    expectBucket(at('2011-12-28T12:00', z), '3d', z, at('2011-12-28T00:00', z), utc('2011-12-30T10:00:00Z'));
    expect(nextBucketStart(at('2011-12-28T12:00', z), '3d', z).getTime() - at('2011-12-28T00:00', z).getTime()).toBe(2 * DAY);
  });

  it('w: ISO weeks from Monday 00:00 local, across a year boundary', () => {
    const z = 'Europe/Berlin';
    // 2020-12-31 (Thu) and 2021-01-03 (Sun) are both in ISO week 2020-W53.
    for (const iso of ['2020-12-28T00:00', '2020-12-31T12:00', '2021-01-03T23:59:59.999']) {
      expectBucket(at(iso, z), '1w', z, at('2020-12-28T00:00', z), at('2021-01-04T00:00', z));
    }
    // 2025-12-29 (Mon) starts 2026-W01, although the calendar year is still 2025.
    expectBucket(at('2025-12-31T12:00', z), '1w', z, at('2025-12-29T00:00', z), at('2026-01-05T00:00', z));
    // The week holding the spring-forward Sunday is 167 hours long.
    const r = bucketRange(at('2024-03-31T12:00', z), '1w', z);
    expect(r.end.getTime() - r.start.getTime()).toBe(167 * HOUR);
  });

  it('2w: pairs of ISO weeks counted from the week of 1970-01-01 (Monday 1969-12-29)', () => {
    expectBucket(utc('1970-01-01T00:00:00Z'), '2w', 'UTC', utc('1969-12-29T00:00:00Z'), utc('1970-01-12T00:00:00Z'));
    // The week of 2020-12-28 is week 2661 since then (odd): its pair began a week earlier,
    // so ISO week 2020-W53 and 2021-W01 fall into different pairs.
    const z = 'America/New_York';
    expectBucket(at('2021-01-03T12:00', z), '2w', z, at('2020-12-21T00:00', z), at('2021-01-04T00:00', z));
    expectBucket(at('2021-01-04T00:00', z), '2w', z, at('2021-01-04T00:00', z), at('2021-01-18T00:00', z));
  });

  it('M: calendar months in the zone', () => {
    const z = 'Europe/Berlin';
    // 22:30Z on March 31 is already April 1 in Berlin.
    expectBucket(utc('2024-03-31T22:30:00Z'), '1M', z, at('2024-04-01T00:00', z), at('2024-05-01T00:00', z));
    expectBucket(utc('2024-03-31T21:30:00Z'), '1M', z, at('2024-03-01T00:00', z), at('2024-04-01T00:00', z));
    expectBucket(utc('2024-02-29T12:00:00Z'), '1M', 'UTC', utc('2024-02-01T00:00:00Z'), utc('2024-03-01T00:00:00Z'));
  });

  it('3M is calendar quarters; 5M counts from January 1970', () => {
    const z = 'Europe/Berlin';
    expectBucket(at('2024-05-15T12:00', z), '3M', z, at('2024-04-01T00:00', z), at('2024-07-01T00:00', z));
    // (2024 - 1970) * 12 + 4 = 652 months; 650 = 5 * 130 is March 2024.
    expectBucket(at('2024-05-15T12:00', z), '5M', z, at('2024-03-01T00:00', z), at('2024-08-01T00:00', z));
  });

  it('y and 2y', () => {
    const z = 'America/New_York';
    expectBucket(at('2025-06-01T12:00', z), '1y', z, at('2025-01-01T00:00', z), at('2026-01-01T00:00', z));
    expectBucket(at('2025-06-01T12:00', z), '2y', z, at('2024-01-01T00:00', z), at('2026-01-01T00:00', z));
    expectBucket(at('1969-06-01T12:00', z), '2y', z, at('1968-01-01T00:00', z), at('1970-01-01T00:00', z));
    // Just before local New Year is still the old year, although it is the new one in UTC.
    expectBucket(at('2024-12-31T23:30', z), '1y', z, at('2024-01-01T00:00', z), at('2025-01-01T00:00', z));
  });

  it('bucketKey is the ISO start, equal within a bucket', () => {
    const z = 'Europe/Berlin';
    expect(bucketKey(at('2024-03-31T00:10', z), '1d', z)).toBe('2024-03-30T23:00:00.000Z');
    expect(bucketKey(at('2024-03-31T23:50', z), '1d', z)).toBe('2024-03-30T23:00:00.000Z');
    expect(bucketStarter('1d', z)(at('2024-03-31T23:50', z).getTime())).toBe(utc('2024-03-30T23:00:00Z').getTime());
  });

  it('throws on an invalid interval, zone or date', () => {
    expect(() => bucketStart(new Date(), '1x', 'UTC')).toThrow(RangeError);
    expect(() => bucketStart(new Date(), '1d', 'Europe/Nowhere')).toThrow(RangeError);
    expect(() => bucketStart(new Date(), '1h', '')).toThrow(RangeError);
    expect(() => bucketStart(new Date(Number.NaN), '1d', 'UTC')).toThrow(RangeError);
  });
});


const UNITS: readonly IntervalUnit[] = ['h', 'd', 'w', 'M', 'y'];
const intervalArb = fc
  .tuple(fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 4 }) }, fc.integer({ min: 1, max: 1000 })), fc.constantFrom(...UNITS))
  .map(([n, unit]) => `${n}${unit}`);
const instantArb = (minYear: number, maxYear: number) =>
  fc.integer({ min: Date.UTC(minYear, 0, 1), max: Date.UTC(maxYear, 0, 1) }).map((ms) => new Date(ms));

// Index of the unit (day, ISO week, month, year) holding a local date, counted
// from the epoch with luxon: an independent check of the grouping arithmetic.
function unitIndex(t: Date, unit: Exclude<IntervalUnit, 'h'>, zone: string): number {
  const local = DateTime.fromJSDate(t, { zone });
  const days = (d: DateTime) => Math.round(DateTime.utc(d.year, d.month, d.day).toMillis() / DAY);
  switch (unit) {
    case 'd':
      return days(local);
    case 'w':
      return Math.round((days(local.startOf('week')) + 3) / 7);
    case 'M':
      return (local.year - 1970) * 12 + local.month - 1;
    case 'y':
      return local.year - 1970;
  }
}

describe('bucket properties', () => {
  it('start <= t < end; both ends are fixed points; buckets tile time', () => {
    fc.assert(
      fc.property(instantArb(1900, 2100), intervalArb, fc.constantFrom(...TRICKY_ZONES), (t, interval, zone) => {
        const { start, end } = bucketRange(t, interval, zone);
        expect(start.getTime()).toBeLessThanOrEqual(t.getTime());
        expect(t.getTime()).toBeLessThan(end.getTime());
        expect(bucketStart(start, interval, zone)).toEqual(start); // idempotent
        expect(bucketStart(new Date(end.getTime() - 1), interval, zone)).toEqual(start);
        expect(bucketStart(end, interval, zone)).toEqual(end);
        expect(nextBucketStart(new Date(start.getTime() - 1), interval, zone)).toEqual(start);
      }),
      { numRuns: 2000 },
    );
  });

  it('bucketStarter agrees with bucketStart for any sequence of instants (newest-first walks included)', () => {
    fc.assert(
      fc.property(
        fc.array(instantArb(1990, 2040), { minLength: 1, maxLength: 40 }),
        fc.boolean(),
        intervalArb,
        fc.constantFrom(...TRICKY_ZONES),
        (ts, walk, interval, zone) => {
          const ms = ts.map((t) => t.getTime());
          if (walk) ms.sort((a, b) => b - a);
          const starter = bucketStarter(interval, zone);
          for (const m of ms) expect(starter(m)).toBe(bucketStart(new Date(m), interval, zone).getTime());
        },
      ),
      { numRuns: 300 },
    );
  });

  it('h buckets are n UTC hours aligned to the epoch, in any zone', () => {
    fc.assert(
      fc.property(instantArb(1900, 2100), fc.integer({ min: 1, max: 1000 }), fc.constantFrom(...TRICKY_ZONES), (t, n, zone) => {
        const { start, end } = bucketRange(t, `${n}h`, zone);
        expect(Math.abs(start.getTime() % (n * HOUR))).toBe(0);
        expect(end.getTime() - start.getTime()).toBe(n * HOUR);
      }),
    );
  });

  it('n-unit buckets start on a local date whose unit index is a multiple of n (luxon cross-check)', () => {
    // Zones with skipped dates are left out: there a group may start on its second day.
    const zones = TRICKY_ZONES.filter((z) => z !== 'Pacific/Apia' && z !== 'Pacific/Kiritimati');
    fc.assert(
      fc.property(
        instantArb(1970, 2100),
        fc.integer({ min: 1, max: 12 }),
        fc.constantFrom('d', 'w', 'M', 'y' as const),
        fc.constantFrom(...zones),
        (t, n, unit, zone) => {
          const { start, end } = bucketRange(t, `${n}${unit}`, zone);
          const first = unitIndex(start, unit, zone);
          expect(((first % n) + n) % n).toBe(0);
          expect(unitIndex(t, unit, zone) - first).toBeLessThan(n);
          expect(unitIndex(end, unit, zone) - first).toBe(n);
          // The start is the first instant of its local date.
          expect(unitIndex(new Date(start.getTime() - 1), 'd', zone)).toBe(unitIndex(start, 'd', zone) - 1);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('1d/1w/1M/1y agree with luxon startOf except on repeated midnights', () => {
    const zones = TRICKY_ZONES.filter((z) => z !== 'America/Havana');
    const luxonUnit = { d: 'day', w: 'week', M: 'month', y: 'year' } as const;
    fc.assert(
      fc.property(instantArb(1980, 2100), fc.constantFrom('d', 'w', 'M', 'y' as const), fc.constantFrom(...zones), (t, unit, zone) => {
        const expected = DateTime.fromJSDate(t, { zone }).startOf(luxonUnit[unit]).toJSDate();
        const ours = bucketStart(t, `1${unit}`, zone);
        if (ours.getTime() === expected.getTime()) return;
        // They may differ only where the clock fell back across midnight shortly before t
        // (St John's before 2011 switched at 00:01): t's local date then repeats an earlier one,
        // luxon goes back to that date's first midnight, and our buckets stay monotone in time.
        expect(ours.getTime()).toBeGreaterThan(expected.getTime());
        expect(ours.getTime()).toBeLessThanOrEqual(t.getTime());
        const localDate = (d: Date) => DateTime.fromJSDate(d, { zone }).toISODate()!;
        const fellBack = Array.from({ length: 180 }, (_, k) => new Date(t.getTime() - (k + 1) * 60_000)).some(
          (s) => localDate(s) > localDate(t),
        );
        expect(fellBack, `${t.toISOString()} ${unit} ${zone}`).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});
