import { DateTime } from 'luxon';
import { requireZone } from './zone.js';

/** `h` hour, `d` day, `w` ISO week, `M` month, `y` year. */
export type IntervalUnit = 'h' | 'd' | 'w' | 'M' | 'y';

export interface Interval {
  readonly n: number;
  readonly unit: IntervalUnit;
}

/** Largest n accepted in `<n><unit>`; bigger values are typos, not policies. */
export const MAX_INTERVAL_N = 1000;

// No sign, no leading zero, at most four digits (the bound is checked below).
const INTERVAL_RE = /^([1-9][0-9]{0,3})([hdwMy])$/;

const UNIT_SECONDS: Readonly<Record<IntervalUnit, number>> = {
  h: 3600,
  d: 86_400,
  w: 7 * 86_400,
  M: 30 * 86_400,
  y: 365 * 86_400,
};

// Mean lengths on the Gregorian calendar (a 400-year cycle is 146,097 days): n months or years
// compare with days and weeks the way the calendar does. With 30-day months, 24M (730-731 days)
// sorted before 104w (728 days) and drove a schedule whose smallest interval is 104w.
const MEAN_UNIT_SECONDS: Readonly<Record<IntervalUnit, number>> = {
  h: 3600,
  d: 86_400,
  w: 7 * 86_400,
  M: (146_097 * 86_400) / 4800, // 2,629,746
  y: (146_097 * 86_400) / 400, // 31,556,952
};

const UNIT_RANK: Readonly<Record<IntervalUnit, number>> = { h: 0, d: 1, w: 2, M: 3, y: 4 };

const LUXON_UNIT = {
  h: 'hours',
  d: 'days',
  w: 'weeks',
  M: 'months',
  y: 'years',
} as const satisfies Record<IntervalUnit, string>;

export function parseInterval(s: string): Interval | null {
  if (typeof s !== 'string') return null;
  const m = INTERVAL_RE.exec(s);
  if (!m) return null;
  const n = Number(m[1]);
  if (n > MAX_INTERVAL_N) return null;
  return { n, unit: m[2] as IntervalUnit };
}

export function isInterval(s: unknown): s is string {
  return typeof s === 'string' && parseInterval(s) !== null;
}

/** Parses or throws a RangeError; for callers whose input was validated upstream. */
export function requireInterval(s: string | Interval): Interval {
  if (typeof s !== 'string') return s;
  const parsed = parseInterval(s);
  if (!parsed) throw new RangeError(`invalid interval: ${JSON.stringify(s)}`);
  return parsed;
}

export function formatInterval(interval: Interval): string {
  return `${interval.n}${interval.unit}`;
}

/** Nominal length (M = 30 d, y = 365 d): a rough size, never for calendar math nor ordering (intervalOrder uses mean calendar lengths). */
export function nominalSeconds(interval: string | Interval): number {
  const { n, unit } = requireInterval(interval);
  return n * UNIT_SECONDS[unit];
}

/**
 * Total order by mean calendar length, so that an interval certainly shorter than another on the
 * calendar (`104w` against `24M`) sorts first; equal lengths (`24h`/`1d`, `7d`/`1w`, `12M`/`1y`)
 * order the smaller unit first so that "the smallest interval" is deterministic.
 */
export function intervalOrder(a: string | Interval, b: string | Interval): number {
  const pa = requireInterval(a);
  const pb = requireInterval(b);
  return (
    pa.n * MEAN_UNIT_SECONDS[pa.unit] - pb.n * MEAN_UNIT_SECONDS[pb.unit] ||
    UNIT_RANK[pa.unit] - UNIT_RANK[pb.unit] ||
    pa.n - pb.n
  );
}

/** Calendar-correct `t + interval` in `timezone` (a day keeps the wall-clock time across DST). */
export function addInterval(t: Date, interval: string | Interval, timezone: string): Date {
  return shift(t, interval, timezone, 1);
}

/** Calendar-correct `t - interval`, e.g. the start of the manual rate-limit window. */
export function subtractInterval(t: Date, interval: string | Interval, timezone: string): Date {
  return shift(t, interval, timezone, -1);
}

function shift(t: Date, interval: string | Interval, timezone: string, sign: 1 | -1): Date {
  const { n, unit } = requireInterval(interval);
  const zone = requireZone(timezone);
  const dt = DateTime.fromJSDate(t, { zone });
  if (!dt.isValid) throw new RangeError(`invalid date: ${String(t)}`);
  const duration = { [LUXON_UNIT[unit]]: n };
  return (sign === 1 ? dt.plus(duration) : dt.minus(duration)).toJSDate();
}
