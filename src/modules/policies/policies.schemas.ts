import { z } from 'zod';
import { IANAZone } from 'luxon';
import { timestamp } from '../../http/schemas.js';
import { isInterval } from '../../scheduling/interval.js';
import type { FieldProblem } from '../../errors.js';

export const DEFAULT_POLICY = Object.freeze({
  timezone: 'UTC',
  schedule: [{ interval: '1d', count: 2 }],
  max_backups: 10,
  manual_count: 3,
  manual_rate_limit: '1h' as string | null,
  failed_count: 3,
  scheduled_live: true,
  recovery_window: null as string | null,
});

export const ENVIRONMENTS = ['production', 'staging', 'development'] as const;
export type EnvironmentName = (typeof ENVIRONMENTS)[number];

/**
 * The initial values of each environment's default policy (SPEC section 11, Upsun's defaults):
 * production backs up daily and keeps two; staging and development have no automated backups
 * (manual ones only). The other fields are those of SPEC section 2.
 */
export const ENVIRONMENT_DEFAULTS: Readonly<Record<EnvironmentName, Readonly<typeof DEFAULT_POLICY>>> = Object.freeze({
  production: DEFAULT_POLICY,
  staging: Object.freeze({ ...DEFAULT_POLICY, schedule: [] }),
  development: Object.freeze({ ...DEFAULT_POLICY, schedule: [] }),
});

export const MAX_SCHEDULE_ENTRIES = 10;

// Printable ASCII only: then maxLength means the same to JSON Schema (code points) and to the
// server (UTF-16 units), and a client validating against the document is never refused for length.
const interval = z
  .string()
  .max(10)
  .regex(/^[ -~]*$/, 'must be <n><unit>, n >= 1, unit h|d|w|M|y, e.g. "1d"')
  .describe('<n><unit>, n >= 1, unit h|d|w|M|y, e.g. "1d"');
const scheduleEntry = z.object({ interval, count: z.number().int().describe('>= 1') }).strict();

// Field shapes only: the semantic rules live in validatePolicy so that one 422 lists every problem,
// including cross-field ones (zod would skip those as soon as any field failed).
const policyFields = {
  name: z.string().trim().min(1).max(100),
  timezone: z.string().max(64).describe('IANA time zone for calendar buckets'),
  schedule: z.array(scheduleEntry).max(MAX_SCHEDULE_ENTRIES),
  max_backups: z.number().int().describe('completed backups kept, manual + scheduled (1..1000)'),
  manual_count: z.number().int().describe('completed manual backups kept; 0 disables manual backups (<= max_backups)'),
  manual_rate_limit: interval.nullable().describe('at most one manual backup per this period per cluster; null: no limit'),
  failed_count: z.number().int().describe('failed backups kept per trigger (0..100)'),
  scheduled_live: z.boolean().describe("false: scheduled backups are consistent, the cluster paused by its pre_backup/post_backup hooks (clusters without a pre_backup hook have nothing to pause and stay live)"),
  recovery_window: interval
    .nullable()
    .describe('continuous postgres components: base backups and WAL are kept to restore to any point this far back from the newest backup, e.g. "14d"; null: no window'),
};

export const createPolicyBody = z
  .object({
    name: policyFields.name,
    timezone: policyFields.timezone.default(DEFAULT_POLICY.timezone),
    schedule: policyFields.schedule.default(DEFAULT_POLICY.schedule),
    max_backups: policyFields.max_backups.default(DEFAULT_POLICY.max_backups),
    manual_count: policyFields.manual_count.default(DEFAULT_POLICY.manual_count),
    manual_rate_limit: policyFields.manual_rate_limit.default(DEFAULT_POLICY.manual_rate_limit),
    failed_count: policyFields.failed_count.default(DEFAULT_POLICY.failed_count),
    scheduled_live: policyFields.scheduled_live.default(DEFAULT_POLICY.scheduled_live),
    recovery_window: policyFields.recovery_window.default(DEFAULT_POLICY.recovery_window),
  })
  .strict();

export const patchPolicyBody = z
  .object({
    name: policyFields.name.optional(),
    timezone: policyFields.timezone.optional(),
    schedule: policyFields.schedule.optional(),
    max_backups: policyFields.max_backups.optional(),
    manual_count: policyFields.manual_count.optional(),
    manual_rate_limit: policyFields.manual_rate_limit.optional(),
    failed_count: policyFields.failed_count.optional(),
    scheduled_live: policyFields.scheduled_live.optional(),
    recovery_window: policyFields.recovery_window.optional(),
  })
  .strict();

export const policySchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    is_default: z.boolean().describe('one of the three environment defaults: editable, not deletable'),
    environment: z.enum(ENVIRONMENTS).nullable().describe('the environment type this policy is the default of; null for other policies'),
    timezone: z.string(),
    schedule: z.array(z.object({ interval: z.string(), count: z.number().int() })),
    max_backups: z.number().int(),
    manual_count: z.number().int(),
    manual_rate_limit: z.string().nullable(),
    failed_count: z.number().int(),
    scheduled_live: z.boolean(),
    recovery_window: z.string().nullable().describe('how far back a point-in-time restore can go; null: no window'),
    created_at: timestamp,
    updated_at: timestamp,
  })
  .meta({ id: 'Policy' });

export type PolicyValues = Omit<z.output<typeof createPolicyBody>, 'name'>;

/** A policy's values with a patch's fields laid over them; fields the patch leaves out (or gives as undefined) keep their value. */
export function applyPolicyPatch(current: PolicyValues, patch: { [K in keyof PolicyValues]?: PolicyValues[K] | undefined }): PolicyValues {
  return { ...current, ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) } as PolicyValues;
}

/** Every semantic problem of a policy, with body paths. Empty when valid. */
export function validatePolicy(p: PolicyValues): FieldProblem[] {
  const errors: FieldProblem[] = [];
  const add = (path: string, message: string) => errors.push({ path: `body.${path}`, message });
  if (!IANAZone.isValidZone(p.timezone)) add('timezone', `unknown time zone "${p.timezone}"`);
  const seen = new Map<string, number>();
  p.schedule.forEach((e, i) => {
    if (!isInterval(e.interval)) add(`schedule.${i}.interval`, `invalid interval "${e.interval}" (expected <n><unit>, unit h|d|w|M|y)`);
    else if (seen.has(e.interval)) add(`schedule.${i}.interval`, `duplicate interval "${e.interval}" (also at schedule.${seen.get(e.interval)})`);
    else seen.set(e.interval, i);
    if (e.count < 1 || e.count > 1000) add(`schedule.${i}.count`, 'must be between 1 and 1000');
  });
  if (p.max_backups < 1 || p.max_backups > 1000) add('max_backups', 'must be between 1 and 1000');
  if (p.manual_count < 0) add('manual_count', 'must be >= 0');
  else if (p.manual_count > p.max_backups) add('manual_count', `must not exceed max_backups (${p.max_backups})`);
  if (p.manual_rate_limit !== null && !isInterval(p.manual_rate_limit))
    add('manual_rate_limit', `invalid interval "${p.manual_rate_limit}" (expected <n><unit> or null)`);
  if (p.failed_count < 0 || p.failed_count > 100) add('failed_count', 'must be between 0 and 100');
  if (p.recovery_window !== null && !isInterval(p.recovery_window))
    add('recovery_window', `invalid interval "${p.recovery_window}" (expected <n><unit> or null)`);
  return errors;
}

// ---- GET|PATCH /v1/data-retention: the three defaults in Upsun's shape ----

const retentionConfig = z
  .object({
    max_backups: z.number().int(),
    default_config: z.object({ schedule: z.array(z.object({ interval: z.string(), count: z.number().int() })), manual_count: z.number().int() }),
  })
  .meta({ id: 'EnvironmentRetention' });

export const dataRetentionSchema = z
  .object({ production: retentionConfig, staging: retentionConfig, development: retentionConfig })
  .meta({ id: 'DataRetention', description: "Each environment type's default policy, in Upsun's data_retention shape" });

const retentionPatch = z
  .object({
    max_backups: policyFields.max_backups.optional(),
    default_config: z.object({ schedule: policyFields.schedule.optional(), manual_count: policyFields.manual_count.optional() }).strict().optional(),
  })
  .strict();

export const patchDataRetentionBody = z
  .object({ production: retentionPatch.optional(), staging: retentionPatch.optional(), development: retentionPatch.optional() })
  .strict()
  .meta({ id: 'DataRetentionPatch', description: 'Only the environments and fields given change' });
export type DataRetentionPatch = z.output<typeof patchDataRetentionBody>;
