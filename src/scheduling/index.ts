export {
  MAX_INTERVAL_N,
  addInterval,
  formatInterval,
  intervalOrder,
  isInterval,
  nominalSeconds,
  parseInterval,
  requireInterval,
  subtractInterval,
} from './interval.js';
export type { Interval, IntervalUnit } from './interval.js';
export { bucketKey, bucketRange, bucketStart, bucketStarter, nextBucketStart } from './buckets.js';
export type { BucketRange } from './buckets.js';
export { MAX_RUN_OFFSET_SECONDS, nextRunAt, nextRunsAt, offsetSeconds, smallestInterval } from './next-run.js';
export type { ScheduleEntry, SchedulePolicy } from './next-run.js';
export { requireZone } from './zone.js';
