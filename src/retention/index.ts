export { RETENTION_REASON, planRetention, scheduleReason } from './plan.js';
export type { BackupTrigger, RetentionBackup, RetentionDecision, RetentionPolicy } from './plan.js';
