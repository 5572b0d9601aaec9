import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bucketKey } from '../scheduling/index.js';
import { planRetention, type RetentionBackup, type RetentionDecision, type RetentionPolicy } from './plan.js';

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
