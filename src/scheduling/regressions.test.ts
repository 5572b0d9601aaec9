import { it, expect } from 'vitest';
import { bucketStart, nextBucketStart, bucketRange } from './buckets.js';
import { nextRunAt, offsetSeconds, smallestInterval } from './next-run.js';
it('keeps start <= t < end where the clock falls back across midnight (America/St_Johns 2003), found by the nextRunAt property', () => {
  const after = new Date('2003-10-23T02:31:30.000Z'); const interval = '3d'; const tz = 'America/St_Johns'; const id = '0000000b-c04b-8df0-bfff-fff295dc49b1';
  const run = nextRunAt({ timezone: tz, schedule: [{ interval, count: 1 }] }, id, after)!;
  expect(run.getTime()).toBeGreaterThan(after.getTime());
  const start = bucketStart(run, interval, tz);
  const length = (nextBucketStart(run, interval, tz).getTime() - start.getTime()) / 1000;
  expect(run.getTime() - start.getTime()).toBe(offsetSeconds(id, length) * 1000);
  // the invariant start <= t < end for every minute around the repeated midnight
  for (let t = Date.parse('2003-10-26T00:00:00Z'); t < Date.parse('2003-10-27T12:00:00Z'); t += 60_000) {
    for (const iv of ['1d', '3d', '1w', '1M']) {
      const r = bucketRange(new Date(t), iv, tz);
      expect(r.start.getTime() <= t && t < r.end.getTime(), `${iv} ${new Date(t).toISOString()}`).toBe(true);
    }
  }
});
it('drives the schedule by the interval that is shorter on the calendar: 104w (728 days) before 24M (730-731 days), 364d before 12M; found by the oracle property', () => {
  expect(smallestInterval([{ interval: '24M', count: 1 }, { interval: '104w', count: 1 }])).toBe('104w');
  expect(smallestInterval([{ interval: '12M', count: 1 }, { interval: '364d', count: 1 }])).toBe('364d');
  expect(smallestInterval([{ interval: '13M', count: 1 }, { interval: '56w', count: 1 }])).toBe('56w');
  // Still: 1M before 31d, 1y before 366d, and equal lengths by the smaller unit.
  expect(smallestInterval([{ interval: '31d', count: 1 }, { interval: '1M', count: 1 }])).toBe('1M');
  expect(smallestInterval([{ interval: '366d', count: 1 }, { interval: '1y', count: 1 }])).toBe('1y');
  expect(smallestInterval([{ interval: '1y', count: 1 }, { interval: '12M', count: 1 }])).toBe('12M');
  const after = new Date('1990-01-01T00:00:00Z');
  const run = nextRunAt({ timezone: 'Africa/Abidjan', schedule: [{ interval: '24M', count: 1 }, { interval: '104w', count: 1 }] }, '00000000-0000-1000-8000-000000000000', after)!;
  expect(run.toISOString()).toBe('1991-12-02T00:00:29.000Z'); // the slot of the 104w bucket after 1990-01-01, not 24M's
});
it('starts America/St_Johns 2005-10-30 at its first midnight (02:30Z) whichever instant asks first; found by the oracle, walking newest first', () => {
  // 00:00 NDT at 02:30Z, back to 23:01 of the 29th at 02:31Z, 00:00 NST at 03:30Z: the day began at 02:30Z.
  // (A year no other test touches: day starts are memoised, and the first instant to ask decides.)
  const tz = 'America/St_Johns';
  for (const t of ['2005-10-31T03:29:59.999Z', '2005-10-30T12:00:00Z', '2005-10-30T03:30:00Z', '2005-10-30T02:30:00Z']) {
    expect(bucketStart(new Date(t), '1d', tz).toISOString(), t).toBe('2005-10-30T02:30:00.000Z');
  }
  expect(bucketStart(new Date('2005-10-30T02:29:59.999Z'), '1d', tz).toISOString()).toBe('2005-10-29T02:30:00.000Z');
});
it('differs from luxon startOf only where the date repeats: 2009-11-01T02:31Z in St_Johns is local Oct 31 23:01 after a fall-back at 00:01; found by the luxon property in CI', () => {
  const t = new Date('2009-11-01T02:31:00.000Z'); const tz = 'America/St_Johns';
  // luxon goes back to Oct 31's midnight; our day bucket is the one begun at Nov 1's first midnight, so buckets stay monotone.
  expect(bucketStart(t, '1d', tz).toISOString()).toBe('2009-11-01T02:30:00.000Z');
  expect(bucketStart(new Date(t.getTime() - 60_000), '1d', tz).toISOString()).toBe('2009-11-01T02:30:00.000Z');
  expect(bucketStart(new Date('2009-11-01T02:29:00.000Z'), '1d', tz).toISOString()).toBe('2009-10-31T02:30:00.000Z');
});
