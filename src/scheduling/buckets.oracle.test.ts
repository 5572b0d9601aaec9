/**
 * Buckets and next runs checked against an independent reference (oracle.test-helper.ts: Intl,
 * not luxon; no code shared with buckets.ts or zone.ts), over random zones (the tricky ones and
 * every zone the platform knows), instants, intervals and schedules.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bucketKey, bucketRange } from './buckets.js';
import { nextRunAt, offsetSeconds } from './next-run.js';
import {
  oracleBucket,
  oracleLocalDay,
  oracleNextBucket,
  oracleOffset,
  firstInstantOfDayOrLater,
  offsetPieces,
  smallestCandidates,
  type OracleBucket,
} from './oracle.test-helper.js';
import { TRICKY_ZONES } from './tricky-zones.fixture.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const ALL_ZONES = Intl.supportedValuesOf('timeZone');

const zoneArb = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...TRICKY_ZONES) }, { weight: 1, arbitrary: fc.constantFrom(...ALL_ZONES) });
const unitArb = fc.constantFrom('h', 'd', 'w', 'M', 'y' as const);
const intervalArb = fc
  .tuple(fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 4 }) }, { weight: 2, arbitrary: fc.integer({ min: 5, max: 60 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 1000 }) }), unitArb)
  .map(([n, u]) => `${n}${u}`);
const msArb = (fromYear: number, toYear: number) => fc.integer({ min: Date.UTC(fromYear, 0, 1), max: Date.UTC(toYear, 0, 1) });

function implBucket(ms: number, interval: string, zone: string): { start: number; end: number } {
  const r = bucketRange(new Date(ms), interval, zone);
  return { start: r.start.getTime(), end: r.end.getTime() };
}

const show = (ms: number) => new Date(ms).toISOString();
function expectSameBucket(ms: number, interval: string, zone: string): OracleBucket {
  const want = oracleBucket(ms, interval, zone);
  const got = implBucket(ms, interval, zone);
  expect(
    { start: show(got.start), end: show(got.end) },
    `${interval} in ${zone} at ${show(ms)} (local day ${oracleLocalDay(ms, zone)}, offset ${oracleOffset(ms, zone) / 60_000} min)`,
  ).toEqual({ start: show(want.start), end: show(want.end) });
  return want;
}

/**
 * Instants where bucket bugs live, in one random year of one zone: every UTC-offset change of the
 * year and the local midnights around it, each probed at -1 min, -1 ms, 0, +1 ms, +1 min.
 */
function edgesOfYear(zone: string, year: number): number[] {
  const out: number[] = [];
  const from = Date.UTC(year, 0, 1);
  let prev = oracleOffset(from, zone);
  for (let day = from + DAY; day <= Date.UTC(year + 1, 0, 1); day += DAY) {
    const o = oracleOffset(day, zone);
    if (o === prev) continue;
    prev = o;
    for (const p of offsetPieces(day - DAY, day, zone).slice(1)) out.push(p.from);
    const local = oracleLocalDay(day, zone);
    for (const d of [local - 1, local, local + 1]) out.push(firstInstantOfDayOrLater(d, zone));
  }
  if (!out.length) out.push(firstInstantOfDayOrLater(oracleLocalDay(from + 180 * DAY, zone), zone));
  return out.flatMap((t) => [t - 60_000, t - 1, t, t + 1, t + 60_000]);
}

describe('buckets against the oracle', () => {
  // First in the file, newest instant first: the implementation memoises day starts, so the
  // instant that first asks for a day decides which offset hint it starts from (an instant after
  // a repeated midnight hints the second occurrence).
  it('bucketRange equals the oracle in the years whose midnights are skipped, repeated, or followed by the date going back', () => {
    for (const [zone, year] of [['America/Havana', 2024], ['America/Havana', 2012], ['Pacific/Apia', 2011], ['Pacific/Kiritimati', 1994], ['America/Santiago', 2024], ['America/St_Johns', 2003], ['Asia/Beirut', 2023], ['America/Sao_Paulo', 2018]] as const) {
      const edges = edgesOfYear(zone, year).sort((a, b) => b - a);
      for (const interval of ['1d', '3d', '1w', '1M', '1y']) for (const ms of edges) expectSameBucket(ms, interval, zone);
    }
  });

  it('bucketRange equals the oracle bucket for random instants, intervals and zones (1900-2100)', () => {
    fc.assert(
      fc.property(msArb(1900, 2100), intervalArb, zoneArb, (ms, interval, zone) => {
        expectSameBucket(ms, interval, zone);
      }),
      { numRuns: 800 },
    );
  });

  it('bucketRange equals the oracle at every DST change and the local midnights around it', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...TRICKY_ZONES, 'Asia/Gaza', 'America/Godthab', 'Antarctica/Troll', 'Africa/Juba', 'Pacific/Norfolk', 'America/Caracas', 'Asia/Pyongyang'),
        fc.integer({ min: 1905, max: 2045 }),
        fc.constantFrom('1d', '2d', '3d', '7d', '1w', '2w', '1M', '3M', '1y', '1h', '5h'),
        (zone, year, interval) => {
          for (const ms of edgesOfYear(zone, year)) expectSameBucket(ms, interval, zone);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('two instants share an implementation bucket exactly when they share an oracle bucket', () => {
    fc.assert(
      fc.property(msArb(1950, 2080), fc.integer({ min: -40 * DAY, max: 40 * DAY }), fc.constantFrom('1h', '3h', '1d', '2d', '3d', '1w', '2w', '1M', '2M'), zoneArb, (a, delta, interval, zone) => {
        const b = a + delta;
        const sameOracle = oracleBucket(a, interval, zone).index === oracleBucket(b, interval, zone).index;
        const sameImpl = bucketKey(new Date(a), interval, zone) === bucketKey(new Date(b), interval, zone);
        expect(sameImpl, `${interval} ${zone} ${show(a)} ${show(b)}`).toBe(sameOracle);
      }),
      { numRuns: 400 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Next runs
// ---------------------------------------------------------------------------------------------

/** The run of a (non-empty) oracle bucket: its start plus the cluster's stable offset. */
const slotOf = (b: OracleBucket, id: string) => b.start + offsetSeconds(id, (b.end - b.start) / 1000) * 1000;

/** What SPEC rule 5 says the next run after `now` is, when `interval` drives the schedule. */
function expectedNextRun(interval: string, zone: string, id: string, now: number): number {
  let b = oracleBucket(now, interval, zone);
  // One run per bucket, at its slot: the first slot strictly after now (now's bucket, or the next).
  while (slotOf(b, id) <= now) b = oracleNextBucket(b, interval, zone);
  return slotOf(b, id);
}

// Schedules whose smallest entry is unambiguous or nearly so: random entries, plus pairs of
// months or years against days or weeks whose lengths are close (12M vs 364d, 13M vs 56w).
const scheduleArb = fc.oneof(
  fc.uniqueArray(intervalArb, { minLength: 1, maxLength: 3 }),
  fc
    .tuple(fc.integer({ min: 1, max: 40 }), fc.integer({ min: -6, max: 6 }), fc.constantFrom('d', 'w'), fc.boolean())
    .map(([months, delta, unit, years]) => {
      const days = Math.round((years ? months * 365.2425 : months * 30.436875) + delta);
      const other = unit === 'w' ? `${Math.max(1, Math.round(days / 7))}w` : `${Math.min(1000, Math.max(1, days))}d`;
      return [`${months}${years ? 'y' : 'M'}`, other].filter((v, i, xs) => xs.indexOf(v) === i);
    })
    .filter((xs) => xs.every((x) => Number.parseInt(x, 10) <= 1000)),
);

describe('nextRunAt against the oracle', () => {
  it('is the first slot strictly after now, one per bucket of the smallest interval, at the stable offset', () => {
    fc.assert(
      fc.property(msArb(1990, 2060), scheduleArb, zoneArb, fc.uuid(), (now, intervals, zone, id) => {
        const policy = { timezone: zone, schedule: intervals.map((interval) => ({ interval, count: 1 })) };
        const run = nextRunAt(policy, id, new Date(now))!.getTime();
        expect(run).toBeGreaterThan(now);
        const candidates = smallestCandidates(intervals);
        const expected = candidates.map((c) => expectedNextRun(c, zone, id, now));
        expect(expected.map(show), `${JSON.stringify(intervals)} in ${zone} after ${show(now)}: smallest is one of ${candidates}`).toContain(show(run));
      }),
      { numRuns: 400 },
    );
  });

  it('from the start of a bucket, just before and just after its slot, it picks that slot or the next bucket\'s', () => {
    fc.assert(
      fc.property(msArb(1990, 2060), fc.constantFrom('1h', '2h', '1d', '3d', '1w', '1M', '1y'), zoneArb, fc.uuid(), fc.constantFrom(-1, 0, 1), (ms, interval, zone, id, edge) => {
        const b = oracleBucket(ms, interval, zone);
        const slot = slotOf(b, id);
        const policy = { timezone: zone, schedule: [{ interval, count: 1 }] };
        for (const now of [b.start, b.start - 1, slot + edge]) {
          expect(show(nextRunAt(policy, id, new Date(now))!.getTime()), `${interval} ${zone} after ${show(now)}`).toBe(show(expectedNextRun(interval, zone, id, now)));
        }
      }),
      { numRuns: 250 },
    );
  });

  it('chained runs (what a scheduler that was down resumes with: one catch-up, then one per bucket) fill consecutive oracle buckets', () => {
    fc.assert(
      fc.property(msArb(1990, 2060), fc.constantFrom('1h', '1d', '2d', '3d', '1w', '1M'), zoneArb, fc.uuid(), fc.integer({ min: 0, max: 400 }), (lastRun, interval, zone, id, missedBuckets) => {
        const policy = { timezone: zone, schedule: [{ interval, count: 1 }] };
        // The scheduler was down for `missedBuckets` buckets: its catch-up run happens at `now`,
        // and the next one is in now's bucket or the next, never in a missed one.
        const now = lastRun + missedBuckets * (interval.endsWith('h') ? HOUR : DAY);
        let t = nextRunAt(policy, id, new Date(now))!.getTime();
        let b = oracleBucket(t, interval, zone);
        expect([oracleBucket(now, interval, zone).index, oracleNextBucket(oracleBucket(now, interval, zone), interval, zone).index]).toContain(b.index);
        for (let i = 0; i < 8; i++) {
          expect(t - slotOf(b, id), `${interval} ${zone} run ${show(t)}`).toBe(0);
          const next = nextRunAt(policy, id, new Date(t))!.getTime();
          const nb = oracleBucket(next, interval, zone);
          expect(nb.index, `${interval} ${zone} after ${show(t)}`).toBe(oracleNextBucket(b, interval, zone).index);
          t = next;
          b = nb;
        }
      }),
      { numRuns: 100 },
    );
  });
});
