// No imports: the console (web/) uses this list too.
/** The event types of SPEC section 10 (plus webhook.disabled, raised when a failing webhook is turned off, and the archiver's of section 13). */
export const EVENT_TYPES = [
  'backup.started',
  'backup.completed',
  'backup.failed',
  'backup.deleted',
  'restore.started',
  'restore.completed',
  'restore.failed',
  'verification.failed',
  'cluster.deleted',
  'hook.failed',
  'webhook.disabled',
  // SPEC section 13: a continuous component's WAL archiving fell behind, or stopped (data.stream says which and why)
  'archiver.behind',
  'archiver.stopped',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];
