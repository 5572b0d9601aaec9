import { createHash } from 'node:crypto';
import { intervalOrder, requireInterval } from './interval.js';
import { bucketRangeMs } from './buckets.js';
import { requireZone } from './zone.js';

export interface ScheduleEntry {
  readonly interval: string;
  readonly count: number;
}

export interface SchedulePolicy {
  readonly timezone: string;
  readonly schedule: readonly ScheduleEntry[];
}

/** Runs spread over at most the first hour of a bucket: late enough to spread load, early enough to be "the daily one". */
export const MAX_RUN_OFFSET_SECONDS = 3600;

/** The interval that drives the schedule: one run per bucket of it (SPEC rule 5). */
export function smallestInterval(schedule: readonly ScheduleEntry[]): string | null {
  let smallest: string | null = null;
  for (const { interval } of schedule) {
    requireInterval(interval);
    if (smallest === null || intervalOrder(interval, smallest) < 0) smallest = interval;
  }
  return smallest;
}

/**
 * Whole seconds into a bucket at which `clusterId` runs: a stable fraction of
 * min(1 h, bucket length), so thousands of clusters spread over the hour
 * instead of all starting at the bucket's first second.
 */
export function offsetSeconds(clusterId: string, bucketLengthSeconds: number): number {
  const span = Math.min(MAX_RUN_OFFSET_SECONDS, Math.max(0, Math.floor(bucketLengthSeconds)));
  return Math.floor((hash32(clusterId) / 2 ** 32) * span);
}

/**
 * The first scheduled run strictly after `after`, or null without a schedule.
 * The run of a bucket is bucket start + offsetSeconds, so it is a pure
 * function of the bucket: any scheduler instance computes the same slot.
 */
export function nextRunAt(policy: SchedulePolicy, clusterId: string, after: Date): Date | null {
  const smallest = smallestInterval(policy.schedule);
  if (smallest === null) return null;
  const interval = requireInterval(smallest);
  const zone = requireZone(policy.timezone);
  const afterMs = after instanceof Date ? after.getTime() : Number.NaN;
  if (!Number.isFinite(afterMs)) throw new RangeError(`invalid date: ${String(after)}`);

  let [start, end] = bucketRangeMs(afterMs, interval, zone);
  // The run of the bucket holding `after` may already have passed; then the
  // next bucket's run is later than `after` since that bucket starts after it.
  for (;;) {
    const run = start + offsetSeconds(clusterId, (end - start) / 1000) * 1000;
    if (run > afterMs) return new Date(run);
    [start, end] = bucketRangeMs(end, interval, zone);
  }
}

// The first 32 bits of SHA-256: stable across runtimes and releases, and
// well mixed even for sequential ids (FNV-1a clusters those in its high bits).
function hash32(s: string): number {
  return createHash('sha256').update(s, 'utf8').digest().readUInt32BE(0);
}

/**
 * nextRunAt for many clusters of one policy at once: the two candidate buckets are computed
 * once, only the per-cluster offset differs. Equal to mapping nextRunAt over the ids.
 */
export function nextRunsAt(policy: SchedulePolicy, clusterIds: readonly string[], after: Date): (Date | null)[] {
  const smallest = smallestInterval(policy.schedule);
  if (smallest === null) return clusterIds.map(() => null);
  const interval = requireInterval(smallest);
  const zone = requireZone(policy.timezone);
  const afterMs = after instanceof Date ? after.getTime() : Number.NaN;
  if (!Number.isFinite(afterMs)) throw new RangeError(`invalid date: ${String(after)}`);
  const [start, end] = bucketRangeMs(afterMs, interval, zone);
  // `after` lies in [start, end), so the next bucket starts after it and its run always qualifies.
  const [nextStart, nextEnd] = bucketRangeMs(end, interval, zone);
  return clusterIds.map((id) => {
    const run = start + offsetSeconds(id, (end - start) / 1000) * 1000;
    return new Date(run > afterMs ? run : nextStart + offsetSeconds(id, (nextEnd - nextStart) / 1000) * 1000);
  });
}
