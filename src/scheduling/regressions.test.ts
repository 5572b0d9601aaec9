import { it, expect } from 'vitest';
import { bucketStart, nextBucketStart, bucketRange } from './buckets.js';
import { nextRunAt, offsetSeconds } from './next-run.js';
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
