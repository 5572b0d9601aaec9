import { DateTime } from 'luxon';
import { describe, expect, it } from 'vitest';
import { planRetention, type RetentionBackup, type RetentionPolicy } from './plan.js';

const policy = (overrides: Partial<RetentionPolicy> = {}): RetentionPolicy => ({
  timezone: 'UTC',
  schedule: [{ interval: '1d', count: 2 }],
  max_backups: 10,
  manual_count: 3,
  failed_count: 3,
  ...overrides,
});

let seq = 0;
function backup(iso: string, overrides: Partial<RetentionBackup> = {}): RetentionBackup {
  seq += 1;
  return { id: `b${String(seq).padStart(3, '0')}`, trigger: 'scheduled', status: 'completed', created_at: new Date(iso), ...overrides };
}

/** id -> reasons of the kept backups only. */
function kept(backups: readonly RetentionBackup[], p: RetentionPolicy): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const d of planRetention(backups, p)) if (d.keep) out[d.id] = d.reasons;
  return out;
}

const days = (n: number, from = '2024-05-01T03:00:00Z', extra: Partial<RetentionBackup> = {}) =>
  Array.from({ length: n }, (_, i) => backup(DateTime.fromISO(from, { zone: 'utc' }).plus({ days: i }).toISO()!, extra));

describe('planRetention: examples', () => {
  it('default policy keeps the two newest daily backups', () => {
    const bs = days(5);
    expect(kept(bs, policy())).toEqual({
      [bs[3]!.id]: ['1d x 2'],
      [bs[4]!.id]: ['1d x 2', 'newest'],
    });
  });

  it('answers one decision per input, in input order, reasons empty iff dropped', () => {
    const bs = days(4).reverse();
    const plan = planRetention(bs, policy());
    expect(plan.map((d) => d.id)).toEqual(bs.map((b) => b.id));
    expect(plan.map((d) => d.keep)).toEqual([true, true, false, false]);
    expect(plan[2]).toEqual({ id: bs[2]!.id, keep: false, reasons: [] });
  });

  it('counts buckets that hold a backup, not calendar buckets: an idle cluster keeps its history', () => {
    const bs = [backup('2024-01-01T10:00:00Z'), backup('2024-01-02T10:00:00Z'), backup('2024-03-01T10:00:00Z')];
    expect(Object.keys(kept(bs, policy({ schedule: [{ interval: '1d', count: 3 }] })))).toEqual(bs.map((b) => b.id));
  });

  it('keeps the newest backup of each bucket', () => {
    const early = backup('2024-05-01T01:00:00Z');
    const late = backup('2024-05-01T23:00:00Z');
    const next = backup('2024-05-02T01:00:00Z');
    expect(kept([late, early, next], policy())).toEqual({ [late.id]: ['1d x 2'], [next.id]: ['1d x 2', 'newest'] });
  });

  it('buckets in the policy time zone', () => {
    // All on May 1 in UTC; in Berlin (UTC+2) a is at 23:30 on May 1, b and c on May 2.
    const a = backup('2024-05-01T21:30:00Z');
    const b = backup('2024-05-01T22:30:00Z');
    const c = backup('2024-05-01T23:30:00Z');
    expect(Object.keys(kept([a, b, c], policy()))).toEqual([c.id]);
    expect(Object.keys(kept([a, b, c], policy({ timezone: 'Europe/Berlin' })))).toEqual([a.id, c.id]);
  });

  it('combines entries: daily and weekly, with every reason listed', () => {
    const bs = days(21, '2024-04-01T03:00:00Z'); // Monday 2024-04-01 .. Sunday 2024-04-21
    const k = kept(bs, policy({ schedule: [{ interval: '1d', count: 3 }, { interval: '1w', count: 4 }], max_backups: 20 }));
    expect(k).toEqual({
      [bs[6]!.id]: ['1w x 4'], // Sunday 04-07
      [bs[13]!.id]: ['1w x 4'], // Sunday 04-14
      [bs[18]!.id]: ['1d x 3'],
      [bs[19]!.id]: ['1d x 3'],
      [bs[20]!.id]: ['1d x 3', '1w x 4', 'newest'],
    });
  });

  it('drops the oldest kept ones beyond max_backups, whichever rule kept them', () => {
    const bs = days(10);
    const manual = backup('2024-04-01T00:00:00Z', { trigger: 'manual' });
    const k = kept([manual, ...bs], policy({ schedule: [{ interval: '1d', count: 10 }], max_backups: 4 }));
    expect(Object.keys(k)).toEqual(bs.slice(6).map((b) => b.id));
  });

  it('never drops the newest or an in-use backup; they count toward max_backups', () => {
    const bs = days(6);
    const inUse = { ...bs[0]!, in_use: true };
    const k = kept([inUse, ...bs.slice(1)], policy({ schedule: [{ interval: '1d', count: 6 }], max_backups: 3 }));
    expect(k).toEqual({
      [bs[0]!.id]: ['1d x 6', 'in use'],
      [bs[4]!.id]: ['1d x 6'],
      [bs[5]!.id]: ['1d x 6', 'newest'],
    });
    // Forced ones alone may exceed max_backups; nothing else is kept then.
    expect(kept([inUse, ...bs.slice(1)], policy({ max_backups: 0 }))).toEqual({
      [bs[0]!.id]: ['in use'],
      [bs[5]!.id]: ['1d x 2', 'newest'],
    });
  });

  it('keeps the newest manual_count completed manual backups', () => {
    const manual = days(5, '2024-05-01T12:00:00Z', { trigger: 'manual' });
    const k = kept(manual, policy({ manual_count: 2, schedule: [] }));
    expect(k).toEqual({ [manual[3]!.id]: ['manual_count'], [manual[4]!.id]: ['manual_count', 'newest'] });
    // manual_count 0: only the newest survives, as the newest.
    expect(kept(manual, policy({ manual_count: 0 }))).toEqual({ [manual[4]!.id]: ['newest'] });
  });

  it('keeps failed backups per trigger, apart from completed ones', () => {
    const completed = days(3);
    const failedScheduled = days(4, '2024-05-10T03:00:00Z', { status: 'failed' });
    const failedManual = days(2, '2024-05-10T04:00:00Z', { status: 'failed', trigger: 'manual' });
    const inUseFailed = backup('2024-04-01T00:00:00Z', { status: 'failed', in_use: true });
    const k = kept([...completed, ...failedScheduled, ...failedManual, inUseFailed], policy({ failed_count: 2, max_backups: 1 }));
    expect(k).toEqual({
      // The failed ones are newer, yet the completed newest stays "newest" and within max_backups.
      [completed[2]!.id]: ['1d x 2', 'newest'],
      [failedScheduled[2]!.id]: ['failed_count'],
      [failedScheduled[3]!.id]: ['failed_count'],
      [failedManual[0]!.id]: ['failed_count'],
      [failedManual[1]!.id]: ['failed_count'],
      [inUseFailed.id]: ['in use'],
    });
  });

  it('breaks created_at ties by id, whatever the input order', () => {
    const t = '2024-05-01T12:00:00Z';
    const a = { ...backup(t), id: 'a' };
    const b = { ...backup(t), id: 'b' };
    for (const input of [[a, b], [b, a]]) {
      expect(kept(input, policy({ schedule: [{ interval: '1d', count: 1 }] }))).toEqual({ b: ['1d x 1', 'newest'] });
    }
  });

  describe('recovery_window', () => {
    // Daily base backups at 03:00, each stopping ten minutes after it started.
    const continuous = (n: number, from = '2024-05-01T03:00:00Z') =>
      days(n, from).map((b) => ({ ...b, base_backup_stop: new Date(b.created_at.getTime() + 600_000) }));

    it('keeps every base backup that stopped within the window and the newest one before it', () => {
      const bs = continuous(10); // 05-01 .. 05-10; R = 05-10T03:00, R - 3d = 05-07T03:00
      const k = kept(bs, policy({ recovery_window: '3d' }));
      expect(k).toEqual({
        [bs[5]!.id]: ['recovery_window'], // stopped 05-06T03:10, before the window: a restore to 05-07T03:00 starts here
        [bs[6]!.id]: ['recovery_window'], // stopped 05-07T03:10
        [bs[7]!.id]: ['recovery_window'],
        [bs[8]!.id]: ['1d x 2', 'recovery_window'],
        [bs[9]!.id]: ['1d x 2', 'recovery_window', 'newest'],
      });
    });

    it('a base backup that stopped exactly at the window start is the one a restore starts from', () => {
      const bs = continuous(5);
      const exact = { ...bs[2]!, base_backup_stop: new Date('2024-05-03T03:00:00Z') }; // R - 2d exactly
      const k = kept([bs[0]!, bs[1]!, exact, bs[3]!, bs[4]!], policy({ recovery_window: '2d', max_backups: 3 }));
      // max_backups 3 trims the older of the two at or before the start, never the one at the start.
      expect(k).toEqual({
        [exact.id]: ['recovery_window'],
        [bs[3]!.id]: ['1d x 2', 'recovery_window'],
        [bs[4]!.id]: ['1d x 2', 'recovery_window', 'newest'],
      });
    });

    it('max_backups trims the newer base backups of the window before the one its start needs', () => {
      const bs = continuous(10);
      const k = kept(bs, policy({ recovery_window: '5d', max_backups: 3, schedule: [{ interval: '1d', count: 1 }] }));
      // bs[3] stopped before R - 5d = 05-05T03:00, the newest such: forced, like the newest.
      expect(k).toEqual({
        [bs[3]!.id]: ['recovery_window'],
        [bs[8]!.id]: ['recovery_window'],
        [bs[9]!.id]: ['1d x 1', 'recovery_window', 'newest'],
      });
      // Forced ones alone may exceed max_backups.
      expect(Object.keys(kept(bs, policy({ recovery_window: '5d', max_backups: 1 })))).toEqual([bs[3]!.id, bs[9]!.id]);
    });

    it('is measured from the newest backup, not a clock: an idle cluster keeps its window', () => {
      const bs = continuous(4, '2020-01-01T03:00:00Z');
      // R - 1d = 01-03T03:00: bs[2] stopped after it, bs[1] is the newest before it.
      expect(Object.keys(kept(bs, policy({ recovery_window: '1d', schedule: [] })))).toEqual([bs[1]!.id, bs[2]!.id, bs[3]!.id]);
    });

    it('counts the window in the policy time zone (a local day across DST)', () => {
      // Berlin's clocks go forward on 2024-03-31: R - 1d local is 23 hours before R.
      const r = backup('2024-03-31T12:00:00Z', { base_backup_stop: new Date('2024-03-31T12:10:00Z') });
      const at = (iso: string) => backup(iso, { base_backup_stop: new Date(iso) });
      const inside = at('2024-03-30T13:00:00Z'); // R - 23h
      const outside = at('2024-03-30T12:30:00Z'); // R - 23.5h: before the local window's start, the newest such
      const older = at('2024-03-30T12:00:00Z');
      const p = policy({ recovery_window: '1d', schedule: [], manual_count: 0 });
      expect(Object.keys(kept([older, outside, inside, r], { ...p, timezone: 'Europe/Berlin' }))).toEqual([outside.id, inside.id, r.id]);
      // In UTC the window starts at 03-30T12:00, which `older` reaches exactly.
      expect(Object.keys(kept([older, outside, inside, r], p))).toEqual([older.id, outside.id, inside.id, r.id]);
    });

    it('ignores backups without a base backup, and failed ones', () => {
      const plain = days(3);
      const failed = backup('2024-05-02T12:00:00Z', { status: 'failed', base_backup_stop: new Date('2024-05-02T12:10:00Z') });
      const p = policy({ recovery_window: '7d', schedule: [{ interval: '1d', count: 1 }], failed_count: 0 });
      expect(kept([...plain, failed], p)).toEqual({ [plain[2]!.id]: ['1d x 1', 'newest'] });
    });

    it('null or absent: no window', () => {
      const bs = continuous(5);
      expect(kept(bs, policy({ recovery_window: null }))).toEqual(kept(bs, policy()));
    });
  });

  it('is empty for no backups', () => {
    expect(planRetention([], policy())).toEqual([]);
  });

  it('rejects what it cannot plan rather than deleting it', () => {
    const b = backup('2024-05-01T00:00:00Z');
    expect(() => planRetention([b], policy({ timezone: 'Nowhere' }))).toThrow(RangeError);
    expect(() => planRetention([b], policy({ schedule: [{ interval: 'daily', count: 1 }] }))).toThrow(RangeError);
    expect(() => planRetention([b], policy({ max_backups: -1 }))).toThrow(RangeError);
    expect(() => planRetention([b], policy({ recovery_window: '2 weeks' }))).toThrow(RangeError);
    expect(() => planRetention([{ ...b, base_backup_stop: new Date(Number.NaN) }], policy())).toThrow(RangeError);
    expect(() => planRetention([{ ...b, created_at: new Date(Number.NaN) }], policy())).toThrow(RangeError);
    const running = { ...b, status: 'running' } as unknown as RetentionBackup;
    expect(() => planRetention([running], policy())).toThrow(RangeError);
  });

  it('plans 10,000 backups quickly', () => {
    const start = Date.UTC(2023, 0, 1);
    const bs: RetentionBackup[] = Array.from({ length: 10_000 }, (_, i) => ({
      id: `b${i}`,
      trigger: i % 10 === 0 ? 'manual' : 'scheduled',
      status: i % 17 === 0 ? 'failed' : 'completed',
      created_at: new Date(start + i * 3_600_000),
      in_use: i === 5000,
    }));
    const p = policy({
      timezone: 'Europe/Berlin',
      schedule: [{ interval: '1h', count: 24 }, { interval: '1d', count: 7 }, { interval: '1w', count: 4 }, { interval: '1M', count: 12 }],
      max_backups: 40,
    });
    planRetention(bs, p); // warm-up
    const t0 = performance.now();
    const plan = planRetention(bs, p);
    const elapsed = performance.now() - t0;
    expect(plan.filter((d) => d.keep).length).toBeGreaterThan(30);
    // Generous bound against a loaded CI machine; typically a few milliseconds.
    expect(elapsed).toBeLessThan(250);
  });
});
