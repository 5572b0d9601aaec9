import { IANAZone } from 'luxon';

export const HOUR_MS = 3_600_000;
export const DAY_MS = 86_400_000;

const zones = new Map<string, IANAZone>();

/** The IANA zone named `timezone`, or a RangeError: a typo must not silently mean UTC. */
export function requireZone(timezone: string): IANAZone {
  const cached = zones.get(timezone);
  if (cached) return cached;
  if (typeof timezone !== 'string' || !IANAZone.isValidZone(timezone)) {
    throw new RangeError(`unknown time zone: ${JSON.stringify(timezone)}`);
  }
  const zone = IANAZone.create(timezone);
  zones.set(timezone, zone);
  return zone;
}

/** UTC offset in ms at instant `ms` (whole ms; historical LMT offsets have seconds). */
export function offsetMs(zone: IANAZone, ms: number): number {
  return Math.round(zone.offset(ms) * 60_000);
}

/**
 * Local calendar date of `ms` as a day number: days since 1970-01-01, counted
 * on the wall calendar of the zone (so 1970-01-01 local is 0 in every zone).
 */
export function localDayNumber(zone: IANAZone, ms: number, offset = offsetMs(zone, ms)): number {
  return Math.floor((ms + offset) / DAY_MS);
}

// Start instants of local days, by zone and day number. Filling it costs Intl
// calls (~10 µs each); retention is re-planned after every backup over the same
// days, so a bounded memo turns that into map lookups. Values never change.
const dayStarts = new Map<string, Map<number, number>>();
const DAY_STARTS_LIMIT = 100_000; // per zone

/**
 * The first instant whose local date is day `day` or later. Usually local
 * midnight; when midnight does not exist (spring forward at 00:00, a skipped
 * day such as Pacific/Apia 2011-12-30) the first instant that does; when
 * midnight happens twice (America/Havana falls back 01:00 -> 00:00) the first.
 * `hint` is an offset likely to hold at that instant (saves an Intl call).
 */
export function startOfLocalDay(zone: IANAZone, day: number, hint?: number): number {
  let starts = dayStarts.get(zone.name);
  if (!starts) {
    starts = new Map();
    dayStarts.set(zone.name, starts);
  }
  const cached = starts.get(day);
  if (cached !== undefined) return cached;
  const start = computeStartOfLocalDay(zone, day, hint);
  if (starts.size >= DAY_STARTS_LIMIT) starts.clear();
  starts.set(day, start);
  return start;
}

function computeStartOfLocalDay(zone: IANAZone, day: number, hint?: number): number {
  const midnight = day * DAY_MS; // local midnight, read as if it were UTC
  // Fast path: local midnight exists at offset o iff offset(midnight - o) = o.
  let guess = hint ?? offsetMs(zone, midnight);
  for (let i = 0; i < 2; i++) {
    const candidate = midnight - guess;
    const actual = offsetMs(zone, candidate);
    if (actual === guess) {
      // It is local midnight; it starts the day unless the day was reached earlier: an ambiguous
      // midnight (this is the second occurrence), or a fall-back that crossed midnight backwards
      // (America/St_Johns 2003-10-26: 00:00 NDT at 02:30Z, back to 23:01 at 02:31Z, 00:00 NST at
      // 03:30Z). Both need a change of offset shortly before; without one this is the first.
      if (offsetMs(zone, candidate - EARLIER_REACH_MS) === guess && localDayNumber(zone, candidate - 1) < day) return candidate;
      break;
    }
    guess = actual;
  }
  return slowStartOfLocalDay(zone, day);
}

// A fall-back moves the wall clock back by at most a few hours.
const EARLIER_REACH_MS = 12 * HOUR_MS;

// Rare path (gaps at midnight, repeated midnights, dates going back): the smallest instant whose
// local date is >= day. Bisection finds an instant where the date reaches the day; where a
// fall-back took the date back across midnight it may be the second time, so the midnights of
// the offsets in force shortly before are tried too and the earliest one wins.
function slowStartOfLocalDay(zone: IANAZone, day: number): number {
  const reached = (ms: number): boolean => localDayNumber(zone, ms) >= day;
  const midnight = day * DAY_MS;
  let lo = midnight - 16 * HOUR_MS; // offsets stay within -12 h .. +14 h
  let hi = midnight + 16 * HOUR_MS;
  while (reached(lo)) lo -= DAY_MS;
  while (!reached(hi)) hi += DAY_MS;
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (reached(mid)) hi = mid;
    else lo = mid;
  }
  let first = hi;
  for (const back of [HOUR_MS, 3 * HOUR_MS, 6 * HOUR_MS, EARLIER_REACH_MS]) {
    const o = offsetMs(zone, hi - back);
    const earlier = midnight - o;
    if (earlier < first && offsetMs(zone, earlier) === o) first = earlier;
  }
  return first;
}

/** Day number of a calendar date; month overflow is normalised (month 13 = next January). */
export function dayNumberOf(year: number, monthIndex: number, dayOfMonth: number): number {
  const d = new Date(0);
  d.setUTCFullYear(year, monthIndex, dayOfMonth); // unlike Date.UTC, years 0-99 stay literal
  return Math.round(d.getTime() / DAY_MS);
}

/** Calendar fields of a day number. */
export function dateOfDayNumber(day: number): { year: number; monthIndex: number; dayOfMonth: number } {
  const d = new Date(day * DAY_MS);
  return { year: d.getUTCFullYear(), monthIndex: d.getUTCMonth(), dayOfMonth: d.getUTCDate() };
}
