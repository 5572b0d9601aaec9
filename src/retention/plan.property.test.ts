import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bucketKey, subtractInterval } from '../scheduling/index.js';
import { planRetention, recoveryWindowStart, type RetentionBackup, type RetentionDecision, type RetentionPolicy } from './plan.js';

const T0 = Date.UTC(2024, 0, 1);
const DAY = 86_400_000;

// Instants over ~100 days around two DST changes, with a few fixed ones so
// that created_at ties happen often.
const instantArb = fc.oneof(
  { weight: 5, arbitrary: fc.integer({ min: T0, max: T0 + 100 * DAY }) },
  { weight: 1, arbitrary: fc.constantFrom(T0 + 10 * DAY, T0 + 10 * DAY + 1, T0 + 50 * DAY) },
);

const backupsArb: fc.Arbitrary<RetentionBackup[]> = fc
  .array(
    fc.record({
      tag: fc.constantFrom('a', 'b', 'c', 'd'),
      trigger: fc.constantFrom('manual' as const, 'scheduled' as const),
      status: fc.constantFrom('completed' as const, 'completed' as const, 'failed' as const),
      ms: instantArb,
      in_use: fc.integer({ min: 0, max: 11 }).map((x) => x === 0),
    }),
    { maxLength: 60 },
  )
  // Unique ids whose order is unrelated to the input order.
  .map((rows) => rows.map(({ tag, ms, ...b }, i) => ({ id: `${tag}${i}`, created_at: new Date(ms), ...b })));

const intervalArb = fc
  .tuple(fc.integer({ min: 1, max: 3 }), fc.constantFrom('h', 'd', 'w', 'M', 'y'))
  .map(([n, u]) => `${n}${u}`);

const policyArb: fc.Arbitrary<RetentionPolicy> = fc
  .record({
    timezone: fc.constantFrom('UTC', 'Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe'),
    schedule: fc.uniqueArray(fc.record({ interval: intervalArb, count: fc.integer({ min: 1, max: 6 }) }), {
      maxLength: 3,
      selector: (e) => e.interval,
    }),
    max_backups: fc.integer({ min: 0, max: 15 }),
    manual_share: fc.double({ min: 0, max: 1, noNaN: true }),
    failed_count: fc.integer({ min: 0, max: 4 }),
  })
  .map(({ manual_share, ...p }) => ({ ...p, manual_count: Math.floor(manual_share * p.max_backups) }));

const UNLIMITED = 1_000_000;
const byAge = (a: RetentionBackup, b: RetentionBackup) =>
  a.created_at.getTime() - b.created_at.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const newestFirst = (bs: readonly RetentionBackup[]) => [...bs].sort(byAge).reverse();

function decisionsById(plan: readonly RetentionDecision[]): Map<string, RetentionDecision> {
  return new Map(plan.map((d) => [d.id, d]));
}
const isForced = (b: RetentionBackup, newestCompletedId: string | undefined) => b.in_use === true || b.id === newestCompletedId;

const run = (prop: fc.IProperty<[RetentionBackup[], RetentionPolicy]>) => fc.assert(prop, { numRuns: 500 });

describe('planRetention properties', () => {
  it('one decision per input in input order; reasons are non-empty iff kept', () => {
    run(
      fc.property(backupsArb, policyArb, (bs, p) => {
        const plan = planRetention(bs, p);
        expect(plan.map((d) => d.id)).toEqual(bs.map((b) => b.id));
        for (const d of plan) expect(d.keep).toBe(d.reasons.length > 0);
      }),
    );
  });

  it('does not depend on input order', () => {
    fc.assert(
      fc.property(backupsArb, policyArb, fc.infiniteStream(fc.double({ min: 0, max: 1, noNaN: true })), (bs, p, keys) => {
        const shuffled = bs.map((b) => ({ b, k: keys.next().value as number })).sort((x, y) => x.k - y.k).map((x) => x.b);
        expect(decisionsById(planRetention(shuffled, p))).toEqual(decisionsById(planRetention(bs, p)));
      }),
      { numRuns: 300 },
    );
  });

  it('always keeps the newest completed backup', () => {
    run(
      fc.property(backupsArb, policyArb, (bs, p) => {
        const newest = newestFirst(bs.filter((b) => b.status === 'completed'))[0];
        fc.pre(newest !== undefined);
        const d = decisionsById(planRetention(bs, p)).get(newest!.id)!;
        expect(d.keep).toBe(true);
        expect(d.reasons).toContain('newest');
      }),
    );
  });

  it('always keeps in-use backups', () => {
    run(
      fc.property(backupsArb, policyArb, (bs, p) => {
        const plan = decisionsById(planRetention(bs, p));
        for (const b of bs.filter((x) => x.in_use)) expect(plan.get(b.id)?.reasons).toContain('in use');
      }),
    );
  });

  it('keeps at most max_backups completed backups, unless forced ones alone exceed it', () => {
    run(
      fc.property(backupsArb, policyArb, (bs, p) => {
        const plan = decisionsById(planRetention(bs, p));
        const completed = bs.filter((b) => b.status === 'completed');
        const newestId = newestFirst(completed)[0]?.id;
        const kept = completed.filter((b) => plan.get(b.id)!.keep);
        const forced = completed.filter((b) => isForced(b, newestId)).length;
        expect(kept.length).toBeLessThanOrEqual(Math.max(p.max_backups, forced));
      }),
    );
  });

  it('max_backups only trims the oldest of the otherwise-kept set C, and only when |C| > max_backups', () => {
    run(
      fc.property(backupsArb, policyArb, (bs, p) => {
        const unlimited = decisionsById(planRetention(bs, { ...p, max_backups: UNLIMITED }));
        const plan = decisionsById(planRetention(bs, p));
        const completed = bs.filter((b) => b.status === 'completed');
        const newestId = newestFirst(completed)[0]?.id;
        const candidates = completed.filter((b) => unlimited.get(b.id)!.keep);
        if (candidates.length <= p.max_backups) {
          expect(plan).toEqual(unlimited);
          return;
        }
        const kept = candidates.filter((b) => plan.get(b.id)!.keep);
        expect(completed.filter((b) => plan.get(b.id)!.keep)).toEqual(kept); // kept is a subset of C
        const forced = candidates.filter((b) => isForced(b, newestId));
        expect(kept.length).toBe(Math.max(p.max_backups, forced.length));
        // Every dropped candidate is older than every kept non-forced one.
        const keptFree = kept.filter((b) => !isForced(b, newestId));
        const dropped = candidates.filter((b) => !plan.get(b.id)!.keep);
        for (const d of dropped) for (const k of keptFree) expect(byAge(d, k)).toBeLessThan(0);
        // Decisions of failed backups are untouched by max_backups.
        for (const b of bs.filter((x) => x.status === 'failed')) expect(plan.get(b.id)).toEqual(unlimited.get(b.id));
      }),
    );
  });

  // Precisely: let C be the completed backups kept when max_backups is unlimited.
  // If |C| <= max_backups, each of the newest manual_count completed manual
  // backups is kept with reason manual_count. (When |C| > max_backups the
  // oldest of C are dropped, manual or not: the previous property.)
  it('keeps the newest manual_count completed manual backups whenever max_backups allows all of C', () => {
    run(
      fc.property(backupsArb, policyArb, (bs, p) => {
        const unlimited = planRetention(bs, { ...p, max_backups: UNLIMITED });
        const candidates = unlimited.filter((d, i) => d.keep && bs[i]!.status === 'completed').length;
        fc.pre(candidates <= p.max_backups);
        const plan = decisionsById(planRetention(bs, p));
        const manual = newestFirst(bs.filter((b) => b.status === 'completed' && b.trigger === 'manual'));
        for (const b of manual.slice(0, p.manual_count)) expect(plan.get(b.id)?.reasons).toContain('manual_count');
        for (const b of manual.slice(p.manual_count)) expect(plan.get(b.id)?.reasons ?? []).not.toContain('manual_count');
      }),
    );
  });

  it('with only manual backups, keeps exactly the newest manual_count (and the newest), as manual_count <= max_backups', () => {
    run(
      fc.property(backupsArb, policyArb, (bs, p) => {
        const manual = bs.filter((b) => b.trigger === 'manual' && b.status === 'completed').map((b) => ({ ...b, in_use: false }));
        const plan = decisionsById(planRetention(manual, p));
        const expected = new Set(newestFirst(manual).slice(0, Math.max(1, p.manual_count)).map((b) => b.id));
        for (const b of manual) expect(plan.get(b.id)!.keep).toBe(expected.has(b.id));
      }),
    );
  });

  it('failed backups never change the decision for a completed one', () => {
    run(
      fc.property(backupsArb, policyArb, (bs, p) => {
        const completedOnly = bs.filter((b) => b.status === 'completed');
        const withFailed = decisionsById(planRetention(bs, p));
        const without = decisionsById(planRetention(completedOnly, p));
        for (const b of completedOnly) expect(withFailed.get(b.id)).toEqual(without.get(b.id));
      }),
    );
  });

  it('keeps the newest failed_count failed backups of each trigger and no more (in-use aside)', () => {
    run(
      fc.property(backupsArb, policyArb, (bs, p) => {
        const plan = decisionsById(planRetention(bs, p));
        for (const trigger of ['manual', 'scheduled'] as const) {
          const failed = newestFirst(bs.filter((b) => b.status === 'failed' && b.trigger === trigger));
          failed.forEach((b, rank) => {
            const d = plan.get(b.id)!;
            expect(d.reasons.includes('failed_count')).toBe(rank < p.failed_count);
            expect(d.keep).toBe(rank < p.failed_count || b.in_use === true);
          });
        }
      }),
    );
  });

  it('is idempotent: planning again over the kept set keeps all of it', () => {
    run(
      fc.property(backupsArb, policyArb, (bs, p) => {
        const plan = planRetention(bs, p);
        const keptSet = bs.filter((_, i) => plan[i]!.keep);
        for (const d of planRetention(keptSet, p)) expect(d.keep).toBe(true);
      }),
    );
  });

  it('each schedule entry keeps the newest backup of the count most recent non-empty buckets (naive model)', () => {
    run(
      fc.property(backupsArb, policyArb, (bs, p) => {
        const plan = decisionsById(planRetention(bs, { ...p, max_backups: UNLIMITED }));
        const scheduled = newestFirst(bs.filter((b) => b.status === 'completed' && b.trigger === 'scheduled'));
        for (const { interval, count } of p.schedule) {
          const newestPerBucket = new Map<string, string>(); // key -> id, newest first
          for (const b of scheduled) {
            const key = bucketKey(b.created_at, interval, p.timezone);
            if (!newestPerBucket.has(key)) newestPerBucket.set(key, b.id);
          }
          const expected = new Set([...newestPerBucket.values()].slice(0, count));
          const reason = `${interval} x ${count}`;
          for (const b of bs) expect(plan.get(b.id)!.reasons.includes(reason)).toBe(expected.has(b.id));
        }
      }),
    );
  });
});

// recovery_window (SPEC section 13). Some backups hold a base backup that stopped a while after
// the backup began (or at one of a few fixed instants, so that stops tie); the window is measured
// back from the newest completed backup R: it starts at W = R - window in the policy's zone.
const HOUR = 3_600_000;
const continuousArb: fc.Arbitrary<RetentionBackup[]> = fc
  .tuple(
    backupsArb,
    // One per backup (backupsArb makes at most 60); not an infinite stream, whose cloning
    // confuses the tuples built on this one.
    fc.array(
      fc.oneof(
        { weight: 2, arbitrary: fc.constant(null) },
        { weight: 4, arbitrary: fc.integer({ min: 0, max: 6 * HOUR }).map((d) => ({ after: d })) },
        { weight: 1, arbitrary: fc.constantFrom(T0 + 20 * DAY, T0 + 60 * DAY).map((at) => ({ at })) },
      ),
      { minLength: 60, maxLength: 60 },
    ),
  )
  .map(([bs, stops]) =>
    bs.map((b, i) => {
      const s = stops[i]!;
      const stop = s === null ? null : 'after' in s ? b.created_at.getTime() + s.after : s.at;
      return { ...b, base_backup_stop: stop === null ? null : new Date(stop) };
    }),
  );

const windowArb = fc
  .tuple(fc.integer({ min: 1, max: 3 }), fc.constantFrom('h', 'd', 'd', 'w', 'M'))
  .map(([n, u]) => `${n}${u}`);

type Case = { bs: RetentionBackup[]; p: RetentionPolicy & { recovery_window: string }; w: number };
/** The backups, a policy with a window, and where the window starts (W, null without a completed backup). */
const windowCaseArb: fc.Arbitrary<Case> = fc
  .tuple(continuousArb, policyArb, windowArb, fc.boolean())
  .map(([bs0, p0, recovery_window, pinOne]) => {
    const p = { ...p0, recovery_window };
    const newest = newestFirst(bs0.filter((b) => b.status === 'completed'))[0];
    const w = newest ? subtractInterval(newest.created_at, recovery_window, p.timezone).getTime() : Number.NaN;
    // Often one base backup stops exactly at W, the boundary a restore to W starts from.
    const withStop = bs0.findIndex((b) => b.base_backup_stop && b.status === 'completed' && b !== newest);
    const bs = pinOne && newest && withStop >= 0 ? bs0.map((b, i) => (i === withStop ? { ...b, base_backup_stop: new Date(w) } : b)) : bs0;
    return { bs, p, w };
  })
  .filter((c) => Number.isFinite(c.w));

const stopMs = (b: RetentionBackup) => b.base_backup_stop?.getTime() ?? null;
const completedWithStop = (bs: readonly RetentionBackup[]) => bs.filter((b) => b.status === 'completed' && stopMs(b) !== null);
/** The base backup a restore to W replays (as planRetention breaks ties: the latest stop, then the newest). */
function replayedAt(bs: readonly RetentionBackup[], w: number): RetentionBackup | undefined {
  const before = completedWithStop(bs).filter((b) => stopMs(b)! <= w);
  const latest = Math.max(...before.map((b) => stopMs(b)!));
  return newestFirst(before.filter((b) => stopMs(b) === latest))[0];
}
/** Never dropped by max_backups under a window: in use, the newest completed, the one W replays. */
function forcedUnderWindow(bs: readonly RetentionBackup[], w: number): Set<string> {
  const completed = bs.filter((b) => b.status === 'completed');
  const ids = completed.filter((b) => b.in_use).map((b) => b.id);
  const newest = newestFirst(completed)[0];
  if (newest) ids.push(newest.id);
  const replayed = replayedAt(bs, w);
  if (replayed) ids.push(replayed.id);
  return new Set(ids);
}
const runWindow = (prop: fc.IProperty<[Case]>) => fc.assert(prop, { numRuns: 500 });

describe('planRetention properties: recovery_window', () => {
  it('(i) the window start stays restorable: if a base backup stopped at or before W, the latest such is kept, whatever max_backups', () => {
    runWindow(
      fc.property(windowCaseArb, ({ bs, p, w }) => {
        const replayed = replayedAt(bs, w);
        const start = recoveryWindowStart(bs, p);
        expect(start).toEqual({ start: new Date(w), replayed_backup_id: replayed?.id ?? null });
        fc.pre(replayed !== undefined);
        const plan = decisionsById(planRetention(bs, p));
        expect(plan.get(replayed!.id)!.reasons).toContain('recovery_window');
        // Hence the kept set holds a base backup that stopped at or before W.
        expect(completedWithStop(bs).some((b) => stopMs(b)! <= w && plan.get(b.id)!.keep)).toBe(true);
      }),
    );
  });

  it('(ii) every base backup that stopped at or after W is kept with reason recovery_window, unless max_backups trims it as the oldest of a full plan', () => {
    runWindow(
      fc.property(windowCaseArb, ({ bs, p, w }) => {
        const inWindow = completedWithStop(bs).filter((b) => stopMs(b)! >= w);
        const unlimited = decisionsById(planRetention(bs, { ...p, max_backups: UNLIMITED }));
        for (const b of inWindow) expect(unlimited.get(b.id)!.reasons).toContain('recovery_window');
        const plan = decisionsById(planRetention(bs, p));
        const forced = forcedUnderWindow(bs, w);
        const kept = bs.filter((b) => b.status === 'completed' && plan.get(b.id)!.keep);
        const keptFree = kept.filter((b) => !forced.has(b.id));
        for (const b of inWindow) {
          if (plan.get(b.id)!.keep) {
            expect(plan.get(b.id)!.reasons).toContain('recovery_window');
            continue;
          }
          expect(kept.length).toBe(Math.max(p.max_backups, forced.size));
          for (const k of keptFree) expect(byAge(b, k)).toBeLessThan(0);
        }
      }),
    );
  });

  it('recovery_window is given only to completed base backups at or after W, and to the latest that stopped before it', () => {
    runWindow(
      fc.property(windowCaseArb, ({ bs, p, w }) => {
        const plan = decisionsById(planRetention(bs, { ...p, max_backups: UNLIMITED }));
        const before = completedWithStop(bs).filter((b) => stopMs(b)! < w);
        const latestBefore = Math.max(...before.map((b) => stopMs(b)!));
        for (const b of bs) {
          const stop = stopMs(b);
          const eligible = b.status === 'completed' && stop !== null && (stop >= w || stop === latestBefore);
          if (!eligible) expect(plan.get(b.id)!.reasons).not.toContain('recovery_window');
        }
        // Of the latest before W (ties on the stop), exactly one is kept for the window.
        const tied = before.filter((b) => stopMs(b) === latestBefore);
        if (tied.length) expect(tied.filter((b) => plan.get(b.id)!.reasons.includes('recovery_window'))).toHaveLength(1);
      }),
    );
  });

  it('(iii) with recovery_window null or absent, the plan is the plan of the same backups without base_backup_stop', () => {
    runWindow(
      fc.property(windowCaseArb, ({ bs, p }) => {
        const plain = bs.map(({ base_backup_stop: _s, ...b }) => b);
        const expected = planRetention(plain, { ...p, recovery_window: null });
        expect(planRetention(bs, { ...p, recovery_window: null })).toEqual(expected);
        const { recovery_window: _w, ...absent } = p;
        expect(planRetention(bs, absent)).toEqual(expected);
      }),
    );
  });

  // Precisely: with max_backups unlimited, the window only adds: every backup keeps the reasons it
  // has without the window, plus perhaps recovery_window. With max_backups, a backup kept without
  // the window may be dropped with it only because the window's plan is full: it then keeps
  // exactly max(max_backups, forced) completed backups, and every dropped one is older than every
  // kept one that is not forced (in use, the newest, the one W replays).
  it('(iv) the window keeps a superset of what the plan without it keeps, except what max_backups trims as the oldest of a full plan', () => {
    runWindow(
      fc.property(windowCaseArb, ({ bs, p, w }) => {
        const noWindow = { ...p, recovery_window: null };
        const unlimitedWith = decisionsById(planRetention(bs, { ...p, max_backups: UNLIMITED }));
        const unlimitedWithout = decisionsById(planRetention(bs, { ...noWindow, max_backups: UNLIMITED }));
        for (const b of bs) {
          expect(unlimitedWith.get(b.id)!.reasons.filter((r) => r !== 'recovery_window')).toEqual(unlimitedWithout.get(b.id)!.reasons);
        }
        const withW = decisionsById(planRetention(bs, p));
        const without = decisionsById(planRetention(bs, noWindow));
        const forced = forcedUnderWindow(bs, w);
        const kept = bs.filter((b) => b.status === 'completed' && withW.get(b.id)!.keep);
        const keptFree = kept.filter((b) => !forced.has(b.id));
        for (const b of bs) {
          if (!without.get(b.id)!.keep || withW.get(b.id)!.keep) continue;
          expect(b.status).toBe('completed'); // failed ones are untouched by the window
          expect(kept.length).toBe(Math.max(p.max_backups, forced.size));
          for (const k of keptFree) expect(byAge(b, k)).toBeLessThan(0);
        }
        for (const b of bs.filter((x) => x.status === 'failed')) expect(withW.get(b.id)).toEqual(without.get(b.id));
      }),
    );
  });

  it('keeps at most max_backups completed backups, unless the forced ones (the one W replays among them) alone exceed it', () => {
    runWindow(
      fc.property(windowCaseArb, ({ bs, p, w }) => {
        const plan = decisionsById(planRetention(bs, p));
        const kept = bs.filter((b) => b.status === 'completed' && plan.get(b.id)!.keep);
        expect(kept.length).toBeLessThanOrEqual(Math.max(p.max_backups, forcedUnderWindow(bs, w).size));
      }),
    );
  });

  it('is idempotent and independent of input order under a window too', () => {
    runWindow(
      fc.property(windowCaseArb, ({ bs, p }) => {
        const plan = planRetention(bs, p);
        const keptSet = bs.filter((_, i) => plan[i]!.keep);
        for (const d of planRetention(keptSet, p)) expect(d.keep).toBe(true);
        expect(decisionsById(planRetention([...bs].reverse(), p))).toEqual(decisionsById(plan));
      }),
    );
  });
});
