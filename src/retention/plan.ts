import { bucketStarter, requireInterval, requireZone, subtractInterval, type Interval } from '../scheduling/index.js';

export type BackupTrigger = 'manual' | 'scheduled';

export interface RetentionBackup {
  readonly id: string;
  readonly trigger: BackupTrigger;
  readonly status: 'completed' | 'failed';
  readonly created_at: Date;
  /** A running restore reads it. */
  readonly in_use?: boolean;
  /**
   * When the backup holds a base backup of a continuously archived database: its stop time, from
   * which on a point-in-time restore can start from it. Absent or null otherwise.
   */
  readonly base_backup_stop?: Date | null;
}

export interface RetentionPolicy {
  readonly timezone: string;
  readonly schedule: readonly { readonly interval: string; readonly count: number }[];
  readonly max_backups: number;
  readonly manual_count: number;
  readonly failed_count: number;
  /** An interval (`"14d"`): point-in-time restores must reach this far back from the newest backup; absent or null: no window. */
  readonly recovery_window?: string | null;
}

export interface RetentionDecision {
  id: string;
  keep: boolean;
  /** Every rule that keeps the backup; empty iff it is not kept. */
  reasons: string[];
}

export const RETENTION_REASON = {
  manualCount: 'manual_count',
  failedCount: 'failed_count',
  newest: 'newest',
  inUse: 'in use',
  recoveryWindow: 'recovery_window',
} as const;

/** `"1d x 7"`: the reason a schedule entry gives for keeping a backup. */
export function scheduleReason(entry: { readonly interval: string; readonly count: number }): string {
  return `${entry.interval} x ${entry.count}`;
}

interface Item {
  readonly backup: RetentionBackup;
  readonly index: number;
  readonly ms: number;
  /** base_backup_stop in ms; null when the backup holds no base backup. */
  readonly stopMs: number | null;
  readonly reasons: string[];
  /** Never dropped by max_backups. */
  forced: boolean;
}

/**
 * Which backups retention keeps, and why (SPEC rule 6). One decision per
 * input, in input order. There is no clock: the decision depends only on the
 * backups themselves, so time passing alone never deletes anything.
 */
export function planRetention(
  backups: readonly RetentionBackup[],
  policy: RetentionPolicy,
): RetentionDecision[] {
  requireZone(policy.timezone);
  const maxBackups = requireCount(policy.max_backups, 'max_backups');
  const manualCount = requireCount(policy.manual_count, 'manual_count');
  const failedCount = requireCount(policy.failed_count, 'failed_count');
  const recoveryWindow = policy.recovery_window == null ? null : requireInterval(policy.recovery_window);
  const entries = policy.schedule.map((entry) => ({
    reason: scheduleReason(entry),
    count: requireCount(entry.count, 'schedule count'),
    bucketStart: bucketStarter(entry.interval, policy.timezone),
  }));

  const { items, completed, completedManual, completedScheduled, failedManual, failedScheduled } = sortItems(backups);

  for (const item of newest(completedManual, manualCount)) addReason(item, RETENTION_REASON.manualCount);
  for (const entry of entries) {
    for (const item of newestPerBucket(completedScheduled, entry.count, entry.bucketStart)) {
      addReason(item, entry.reason);
    }
  }
  // Failed backups live in their own lists: they can neither count toward
  // max_backups nor take a bucket from a completed backup.
  for (const list of [failedManual, failedScheduled]) {
    for (const item of newest(list, failedCount)) addReason(item, RETENTION_REASON.failedCount);
  }

  const newestCompleted = completed.at(-1);
  if (newestCompleted && recoveryWindow) {
    const cutoff = windowStartMs(newestCompleted, recoveryWindow, policy.timezone);
    const w = recoveryWindowItems(completed, cutoff);
    for (const item of w.kept) addReason(item, RETENTION_REASON.recoveryWindow);
    // Only the base backup a restore to the window's start replays is forced past max_backups:
    // with the WAL after it, it alone makes every point of the window restorable. The newer
    // ones in the window only shorten the replay, and yield to max_backups like any kept backup.
    if (w.start) w.start.forced = true;
  }
  if (newestCompleted) {
    addReason(newestCompleted, RETENTION_REASON.newest);
    newestCompleted.forced = true;
  }
  for (const item of items) {
    if (item.backup.in_use === true) {
      addReason(item, RETENTION_REASON.inUse);
      item.forced = true;
    }
  }

  // Forced backups count toward max_backups but are never dropped, so the
  // kept total exceeds max_backups only by forced ones.
  let kept = completed.reduce((n, item) => n + (item.reasons.length > 0 ? 1 : 0), 0);
  for (const item of completed) {
    if (kept <= maxBackups) break;
    if (item.reasons.length > 0 && !item.forced) {
      item.reasons.length = 0;
      kept--;
    }
  }

  return items.map((item) => ({
    id: item.backup.id,
    keep: item.reasons.length > 0,
    reasons: item.reasons,
  }));
}

/** Where a recovery window starts, and the base backup a restore to that instant replays. */
export interface RecoveryWindowStart {
  /** The newest completed backup's created_at minus the window, counted in the policy's time zone. */
  readonly start: Date;
  /** The completed base backup with the latest stop at or before `start`; null if none stopped that early. */
  readonly replayed_backup_id: string | null;
}

/**
 * Where the policy's recovery window starts for these backups (what planRetention measures
 * `recovery_window` from); null without a window or without a completed backup. Validates like
 * planRetention.
 */
export function recoveryWindowStart(backups: readonly RetentionBackup[], policy: RetentionPolicy): RecoveryWindowStart | null {
  requireZone(policy.timezone);
  if (policy.recovery_window == null) return null;
  const recoveryWindow = requireInterval(policy.recovery_window);
  const { completed } = sortItems(backups);
  const newestCompleted = completed.at(-1);
  if (!newestCompleted) return null;
  const cutoff = windowStartMs(newestCompleted, recoveryWindow, policy.timezone);
  const { start } = recoveryWindowItems(completed, cutoff);
  return { start: new Date(cutoff), replayed_backup_id: start ? start.backup.id : null };
}

// Measured back from the newest backup, not from a clock, so that a cluster that stops backing
// up keeps its window (time passing alone deletes nothing).
function windowStartMs(newestCompleted: Item, window: Interval, timezone: string): number {
  return subtractInterval(new Date(newestCompleted.ms), window, timezone).getTime();
}

function sortItems(backups: readonly RetentionBackup[]) {
  const items: Item[] = backups.map((backup, index) => ({
    backup,
    index,
    ms: createdAtMs(backup),
    stopMs: baseBackupStopMs(backup),
    reasons: [],
    forced: false,
  }));
  // Oldest first; equal instants by id, then input position, so the plan is
  // the same whatever order the repository returned.
  const sorted = [...items].sort(
    (a, b) => a.ms - b.ms || compareStrings(a.backup.id, b.backup.id) || a.index - b.index,
  );

  const completed: Item[] = [];
  const completedManual: Item[] = [];
  const completedScheduled: Item[] = [];
  const failedManual: Item[] = [];
  const failedScheduled: Item[] = [];
  for (const item of sorted) {
    const { status, trigger } = item.backup;
    if (status === 'completed') {
      completed.push(item);
      (trigger === 'manual' ? completedManual : completedScheduled).push(item);
    } else {
      (trigger === 'manual' ? failedManual : failedScheduled).push(item);
    }
  }

  return { items, completed, completedManual, completedScheduled, failedManual, failedScheduled };
}

/**
 * The base backups a recovery window starting at `cutoff` keeps: every one that stopped at or
 * after it, and the newest that stopped before it (a restore to the cutoff itself starts there).
 * `start` is the one such a restore replays: the latest stop at or before the cutoff.
 */
function recoveryWindowItems(completedOldestFirst: readonly Item[], cutoff: number): { kept: Item[]; start: Item | undefined } {
  const kept: Item[] = [];
  let before: Item | undefined;
  let start: Item | undefined;
  for (const item of completedOldestFirst) {
    const stop = item.stopMs;
    if (stop === null) continue;
    if (stop >= cutoff) kept.push(item);
    // By stop time, not creation: the restore picks the base backup by where it ends.
    else if (!before || stop >= before.stopMs!) before = item;
    if (stop <= cutoff && (!start || stop >= start.stopMs!)) start = item;
  }
  if (before) kept.push(before);
  return { kept, start };
}

function newest(sortedOldestFirst: readonly Item[], count: number): readonly Item[] {
  return count === 0 ? [] : sortedOldestFirst.slice(-count);
}

/**
 * The newest item of each of the `count` most recent buckets that hold an
 * item (restic's --keep-daily): empty buckets are skipped rather than
 * counted, which is why an idle cluster keeps its history.
 */
function newestPerBucket(
  sortedOldestFirst: readonly Item[],
  count: number,
  bucketStart: (ms: number) => number,
): Item[] {
  const picked: Item[] = [];
  let i = sortedOldestFirst.length - 1;
  while (i >= 0 && picked.length < count) {
    const newestInBucket = sortedOldestFirst[i]!;
    picked.push(newestInBucket);
    // Bucket work only for picked items: O(count) calendar calculations, not O(backups).
    const start = bucketStart(newestInBucket.ms);
    i--;
    while (i >= 0 && sortedOldestFirst[i]!.ms >= start) i--;
  }
  return picked;
}

function addReason(item: Item, reason: string): void {
  if (!item.reasons.includes(reason)) item.reasons.push(reason);
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function requireCount(value: number, name: string): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

// Anything but completed/failed (a running backup, say) must not reach the
// planner: treating it as "not kept" would delete it.
function createdAtMs(backup: RetentionBackup): number {
  if (backup.status !== 'completed' && backup.status !== 'failed') {
    throw new RangeError(`backup ${backup.id}: retention plans completed or failed backups only`);
  }
  if (backup.trigger !== 'manual' && backup.trigger !== 'scheduled') {
    throw new RangeError(`backup ${backup.id}: unknown trigger ${String(backup.trigger)}`);
  }
  const ms = backup.created_at instanceof Date ? backup.created_at.getTime() : Number.NaN;
  if (!Number.isFinite(ms)) throw new RangeError(`backup ${backup.id}: invalid created_at`);
  return ms;
}

function baseBackupStopMs(backup: RetentionBackup): number | null {
  const stop = backup.base_backup_stop;
  if (stop === undefined || stop === null) return null;
  const ms = stop instanceof Date ? stop.getTime() : Number.NaN;
  if (!Number.isFinite(ms)) throw new RangeError(`backup ${backup.id}: invalid base_backup_stop`);
  return ms;
}
