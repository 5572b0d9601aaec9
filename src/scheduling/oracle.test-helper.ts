/**
 * An independent reference for schedule buckets (test only). It shares no code with buckets.ts,
 * zone.ts or luxon: local dates come from the platform's Intl.DateTimeFormat, day numbers from
 * Howard Hinnant's civil-date algorithm, ISO weekdays from Intl's `weekday` field, and the first
 * instant of a local date is found by scanning the zone's UTC offset (every 30 minutes across
 * the 36 hours around the date's midnight read as UTC) and bisecting each offset change to the
 * millisecond. Slow (hundreds of Intl calls per bucket, memoised) and simple, on purpose.
 *
 * The contract it encodes (SPEC rule 5, src/scheduling/README.md):
 * - `nh`: n UTC hours, counted from the Unix epoch, in every zone;
 * - `nd`, `nw`, `nM`, `ny`: groups of n local days / ISO weeks (Monday first) / months / years,
 *   counted from the local 1970-01-01 / the ISO week holding it / January 1970 / 1970;
 * - a group starts at the first instant whose local date is its first day or later (a skipped
 *   first day starts it on the next existing day; a repeated midnight at its first occurrence;
 *   an instant that carries yesterday's date after today began stays in today's group).
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const SCAN_STEP = 30 * MINUTE;
const SCAN_HALF_WIDTH = 18 * HOUR; // UTC offsets stay within -12 h .. +14 h

export type OracleUnit = 'h' | 'd' | 'w' | 'M' | 'y';

export function parseOracleInterval(s: string): { n: number; unit: OracleUnit } {
  const m = /^(\d+)([hdwMy])$/.exec(s);
  if (!m) throw new Error(`oracle: bad interval ${s}`);
  return { n: Number(m[1]), unit: m[2] as OracleUnit };
}

// --- civil dates (proleptic Gregorian), after http://howardhinnant.github.io/date_algorithms.html

export function daysFromCivil(y: number, m: number, d: number): number {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

export function civilFromDays(z0: number): { y: number; m: number; d: number } {
  const z = z0 + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return { y: yoe + era * 400 + (m <= 2 ? 1 : 0), m, d };
}

// --- the zone's wall clock, from Intl

const formatters = new Map<string, Intl.DateTimeFormat>();
function formatter(zone: string): Intl.DateTimeFormat {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', {
      timeZone: zone,
      calendar: 'gregory',
      numberingSystem: 'latn',
      era: 'short',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
      hourCycle: 'h23',
    });
    formatters.set(zone, f);
  }
  return f;
}

/** Local wall-clock fields of instant `ms` in `zone`, to the second. */
export function wallClock(ms: number, zone: string): { y: number; m: number; d: number; h: number; mi: number; s: number } {
  const parts: Record<string, string> = {};
  for (const p of formatter(zone).formatToParts(new Date(ms))) parts[p.type] = p.value;
  const year = Number(parts.year);
  return {
    y: parts.era === 'BC' ? 1 - year : year,
    m: Number(parts.month),
    d: Number(parts.day),
    h: Number(parts.hour),
    mi: Number(parts.minute),
    s: Number(parts.second),
  };
}

/** UTC offset (ms) of `zone` at `ms`: wall clock minus UTC, both at whole seconds. */
export function oracleOffset(ms: number, zone: string): number {
  const w = wallClock(ms, zone);
  const wallSeconds = daysFromCivil(w.y, w.m, w.d) * 86_400 + w.h * 3600 + w.mi * 60 + w.s;
  return wallSeconds * 1000 - Math.floor(ms / 1000) * 1000;
}

/** Local date of `ms` in `zone` as days since 1970-01-01 (on that zone's calendar). */
export function oracleLocalDay(ms: number, zone: string): number {
  const w = wallClock(ms, zone);
  return daysFromCivil(w.y, w.m, w.d);
}

/** Pieces [from, to) of constant UTC offset covering [lo, hi]. Assumes at most one change per SCAN_STEP. */
export function offsetPieces(lo: number, hi: number, zone: string): { from: number; to: number; offset: number }[] {
  const pieces: { from: number; to: number; offset: number }[] = [];
  let from = lo;
  let offset = oracleOffset(lo, zone);
  for (let a = lo; a < hi; a += SCAN_STEP) {
    const b = Math.min(a + SCAN_STEP, hi);
    const ob = oracleOffset(b, zone);
    if (ob === offset) continue;
    // Bisect to the first millisecond of the new offset.
    let x = a;
    let y = b;
    while (y - x > 1) {
      const mid = Math.floor((x + y) / 2);
      if (oracleOffset(mid, zone) === offset) x = mid;
      else y = mid;
    }
    pieces.push({ from, to: y, offset });
    from = y;
    offset = ob;
  }
  pieces.push({ from, to: hi + 1, offset });
  return pieces;
}

const reachCache = new Map<string, number>();

/** The first instant whose local date in `zone` is day `day` or later. */
export function firstInstantOfDayOrLater(day: number, zone: string): number {
  const key = `${zone} ${day}`;
  const hit = reachCache.get(key);
  if (hit !== undefined) return hit;
  const midnight = day * DAY; // local midnight read as UTC
  const lo = midnight - SCAN_HALF_WIDTH;
  if (oracleLocalDay(lo, zone) >= day) throw new Error(`oracle: ${zone} is already on day ${day} at ${new Date(lo).toISOString()}`);
  let answer: number | undefined;
  for (const p of offsetPieces(lo, midnight + SCAN_HALF_WIDTH, zone)) {
    // In this piece the wall clock reads ms + offset: it reaches the day at midnight - offset.
    const candidate = Math.max(p.from, midnight - p.offset);
    if (candidate < p.to) {
      answer = candidate;
      break;
    }
  }
  if (answer === undefined) throw new Error(`oracle: ${zone} never reaches day ${day} near its midnight`);
  if (reachCache.size > 200_000) reachCache.clear();
  reachCache.set(key, answer);
  return answer;
}

// --- groups of local days

const weekdayFormat = new Intl.DateTimeFormat('en-US', { timeZone: 'UTC', weekday: 'short' });
const ISO_WEEKDAY: Record<string, number> = { Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6, Sun: 7 };

/** ISO weekday (Monday 1 .. Sunday 7) of a calendar day number, as Intl names it. */
export function isoWeekday(day: number): number {
  const name = weekdayFormat.format(new Date(day * DAY + 12 * HOUR));
  const wd = ISO_WEEKDAY[name];
  if (wd === undefined) throw new Error(`oracle: weekday ${name}`);
  return wd;
}

const mondayOf = (day: number) => day - (isoWeekday(day) - 1);
const EPOCH_MONDAY = mondayOf(0);

/** Index of the group of `n` units holding calendar day `day`. */
export function groupOfDay(day: number, n: number, unit: Exclude<OracleUnit, 'h'>): number {
  switch (unit) {
    case 'd':
      return Math.floor(day / n);
    case 'w':
      return Math.floor((mondayOf(day) - EPOCH_MONDAY) / 7 / n);
    case 'M': {
      const { y, m } = civilFromDays(day);
      return Math.floor(((y - 1970) * 12 + (m - 1)) / n);
    }
    case 'y':
      return Math.floor((civilFromDays(day).y - 1970) / n);
  }
}

/** First calendar day of group `g`. */
export function firstDayOfGroup(g: number, n: number, unit: Exclude<OracleUnit, 'h'>): number {
  switch (unit) {
    case 'd':
      return g * n;
    case 'w':
      return EPOCH_MONDAY + 7 * n * g;
    case 'M': {
      const months = g * n;
      return daysFromCivil(1970 + Math.floor(months / 12), (((months % 12) + 12) % 12) + 1, 1);
    }
    case 'y':
      return daysFromCivil(1970 + g * n, 1, 1);
  }
}

/** First instant of group `g` of `interval` in `zone`. */
export function oracleGroupStart(g: number, interval: string, zone: string): number {
  const { n, unit } = parseOracleInterval(interval);
  if (unit === 'h') return g * n * HOUR;
  return firstInstantOfDayOrLater(firstDayOfGroup(g, n, unit), zone);
}

export interface OracleBucket {
  /** Group index (hours, days, weeks, months or years since the epoch, divided by n). */
  index: number;
  start: number;
  end: number;
}

/** The bucket holding `ms`: the group g with start(g) <= ms < start(g + 1). */
export function oracleBucket(ms: number, interval: string, zone: string): OracleBucket {
  const { n, unit } = parseOracleInterval(interval);
  let g = unit === 'h' ? Math.floor(ms / (n * HOUR)) : groupOfDay(oracleLocalDay(ms, zone), n, unit);
  while (oracleGroupStart(g, interval, zone) > ms) g--;
  while (oracleGroupStart(g + 1, interval, zone) <= ms) g++;
  return { index: g, start: oracleGroupStart(g, interval, zone), end: oracleGroupStart(g + 1, interval, zone) };
}

/** The non-empty bucket after `b` (a group whose days were all skipped holds no instant). */
export function oracleNextBucket(b: OracleBucket, interval: string, zone: string): OracleBucket {
  return oracleBucket(b.end, interval, zone);
}

// --- which interval drives a schedule

/** Shortest and longest span, in days (hours for `h`, as fractions), that n units can cover on the calendar. */
export function calendarSpanDays(interval: string): [number, number] {
  const { n, unit } = parseOracleInterval(interval);
  switch (unit) {
    case 'h':
      return [n / 24, n / 24];
    case 'd':
      return [n, n];
    case 'w':
      return [7 * n, 7 * n];
    case 'M':
    case 'y': {
      // Over one 400-year Gregorian cycle (which repeats), the shortest and longest run of n
      // consecutive months (years), by brute force.
      const months = unit === 'M' ? n : 12 * n;
      let min = Infinity;
      let max = -Infinity;
      for (let k = 0; k < 4800; k += unit === 'M' ? 1 : 12) {
        const y = 2000 + Math.floor(k / 12);
        const m = (k % 12) + 1;
        const from = daysFromCivil(y, m, 1);
        const to = daysFromCivil(y + Math.floor((m - 1 + months) / 12), ((m - 1 + months) % 12) + 1, 1);
        min = Math.min(min, to - from);
        max = Math.max(max, to - from);
      }
      return [min, max];
    }
  }
}

/**
 * The entries that may drive the schedule: those not certainly longer than another one (an
 * interval is certainly longer when its shortest calendar span exceeds another's longest).
 * `1M` against `30d` may go either way; `12M` against `364d` may not.
 */
export function smallestCandidates(intervals: readonly string[]): string[] {
  const spans = intervals.map(calendarSpanDays);
  return intervals.filter((_, i) => !spans.some((s, j) => j !== i && s[1] < spans[i]![0]));
}
