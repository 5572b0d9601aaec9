// No imports: the console (web/) uses this list too.
/** The event types of SPEC section 10 (plus webhook.disabled, raised when a failing webhook is turned off). */
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
] as const;
export type EventType = (typeof EVENT_TYPES)[number];
