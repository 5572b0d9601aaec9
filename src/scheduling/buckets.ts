import type { IANAZone } from 'luxon';
import { requireInterval, type Interval } from './interval.js';
import {
  HOUR_MS,
  dateOfDayNumber,
  dayNumberOf,
  localDayNumber,
  offsetMs,
  requireZone,
  startOfLocalDay,
} from './zone.js';

export interface BucketRange {
  /** First instant of the bucket (inclusive). */
  readonly start: Date;
  /** First instant of the next bucket (exclusive). */
  readonly end: Date;
}

/** Start of the calendar bucket of `interval` holding `t`, in `timezone`. */
export function bucketStart(t: Date, interval: string | Interval, timezone: string): Date {
  return new Date(bucketRangeMs(toMs(t), requireInterval(interval), requireZone(timezone))[0]);
}

/** Start of the bucket after the one holding `t`. */
export function nextBucketStart(t: Date, interval: string | Interval, timezone: string): Date {
  return new Date(bucketRangeMs(toMs(t), requireInterval(interval), requireZone(timezone))[1]);
}

/** Both ends of the bucket holding `t`: `start <= t < end`. */
export function bucketRange(t: Date, interval: string | Interval, timezone: string): BucketRange {
  const [start, end] = bucketRangeMs(toMs(t), requireInterval(interval), requireZone(timezone));
  return { start: new Date(start), end: new Date(end) };
}

/** A stable identifier of the bucket holding `t` (its start, ISO 8601 UTC), for grouping. */
export function bucketKey(t: Date, interval: string | Interval, timezone: string): string {
  return bucketStart(t, interval, timezone).toISOString();
}

/**
 * Bucket bounds in epoch ms. Buckets of n units are counted from the Unix
 * epoch (hours in UTC; dates, ISO weeks, months, years on the local calendar),
 * so a bucket never depends on when a policy was created or last evaluated.
 */
export function bucketRangeMs(ms: number, interval: Interval, zone: IANAZone): [number, number] {
  const { n, unit } = interval;
  if (unit === 'h') {
    // UTC hours whatever the zone: every zone's offset would otherwise make
    // some local hours 0 or 2 hours long.
    const size = n * HOUR_MS;
    const start = Math.floor(ms / size) * size;
    return [start, start + size];
  }
  const offset = offsetMs(zone, ms);
  const [firstDay, endDay] = localDayRange(localDayNumber(zone, ms, offset), n, unit);
  const end = startOfLocalDay(zone, endDay, offset);
  // Where the clock falls back across midnight (America/St_Johns until 2011 went from 00:01
  // back to 23:01), an instant can carry yesterday's date after today has begun: it belongs to
  // the bucket that began at that first midnight, which keeps start <= t < end.
  if (end <= ms) {
    const [nextFirst, nextEnd] = localDayRange(endDay, n, unit);
    return [startOfLocalDay(zone, nextFirst, offset), startOfLocalDay(zone, nextEnd, offset)];
  }
  return [startOfLocalDay(zone, firstDay, offset), end];
}

/** Start only. */
export function bucketStartMs(ms: number, interval: Interval, zone: IANAZone): number {
  return bucketRangeMs(ms, interval, zone)[0];
}

// The local-day bucket [first, end) holding local day `day`.
function localDayRange(day: number, n: number, unit: 'd' | 'w' | 'M' | 'y'): [number, number] {
  switch (unit) {
    case 'd': {
      const first = Math.floor(day / n) * n;
      return [first, first + n];
    }
    case 'w': {
      // 1970-01-01 was a Thursday: its ISO week began on Monday 1969-12-29 (day -3).
      const week = Math.floor((day + 3) / 7);
      const first = Math.floor(week / n) * n * 7 - 3;
      return [first, first + 7 * n];
    }
    case 'M': {
      const { year, monthIndex } = dateOfDayNumber(day);
      const month = Math.floor(((year - 1970) * 12 + monthIndex) / n) * n;
      return [dayNumberOf(1970, month, 1), dayNumberOf(1970, month + n, 1)];
    }
    case 'y': {
      const { year } = dateOfDayNumber(day);
      const first = Math.floor((year - 1970) / n) * n + 1970;
      return [dayNumberOf(first, 0, 1), dayNumberOf(first + n, 0, 1)];
    }
  }
}

function toMs(t: Date): number {
  const ms = t instanceof Date ? t.getTime() : Number.NaN;
  if (!Number.isFinite(ms)) throw new RangeError(`invalid date: ${String(t)}`);
  return ms;
}

/**
 * A bucket-start function for one interval and zone, validated once, for
 * callers that bucket many instants (retention), in epoch ms. Instants that
 * fall in the bucket just before the previous answer (a walk from newest to
 * oldest) are answered from the memo of day starts, without an Intl call.
 */
export function bucketStarter(interval: string | Interval, timezone: string): (ms: number) => number {
  const parsed = requireInterval(interval);
  const zone = requireZone(timezone);
  const { n, unit } = parsed;
  if (unit === 'h') return (ms) => bucketStartMs(ms, parsed, zone);

  let last: { firstDay: number; start: number; offset: number } | undefined;
  return (ms) => {
    if (last && ms < last.start) {
      const [firstDay] = localDayRange(last.firstDay - 1, n, unit);
      const start = startOfLocalDay(zone, firstDay, last.offset);
      if (start <= ms) {
        last = { firstDay, start, offset: last.offset };
        return start;
      }
    }
    const offset = offsetMs(zone, ms);
    const start = bucketRangeMs(ms, parsed, zone)[0];
    const [firstDay] = localDayRange(localDayNumber(zone, start, offsetMs(zone, start)), n, unit);
    last = { firstDay, start, offset };
    return start;
  };
}
