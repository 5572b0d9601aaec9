import { z } from 'zod';
import { timestamp } from '../../http/schemas.js';

export const MAX_COMPONENTS = 20;
const componentName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'lowercase letters, digits, "-" and "_", 1..63 characters, starting with a letter or digit');

export const directoryComponentInput = z
  .object({
    name: componentName,
    type: z.literal('directory'),
    config: z.object({ path: z.string().min(1).max(1024).describe('relative to the operator\'s DATA_ROOT') }).strict(),
  })
  .strict();
export const postgresComponentInput = z
  .object({
    name: componentName,
    type: z.literal('postgres'),
    config: z
      .object({
        url: z.string().max(2048).describe('postgresql:// URL; stored encrypted, and returned with its password (and secret parameters) masked as `***`'),
        continuous: z
          .boolean()
          .optional()
          .describe(
            'Point-in-time recovery (docs/pitr.md): the WAL of the server is archived continuously from a replication slot the service creates, and each backup is a base backup. The role needs REPLICATION, the server wal_level replica or logical, and pg_hba.conf a replication line for the role; a save that lacks one answers 422 naming it',
          ),
      })
      .strict(),
  })
  .strict();
export const redisComponentInput = z
  .object({
    name: componentName,
    type: z.literal('redis'),
    config: z
      .object({
        url: z
          .string()
          .max(2048)
          .describe('redis:// or rediss:// URL (optional user and password, db as the path; every database is backed up); stored encrypted, returned with its password masked as `***`. The user needs the replication commands (+psync +replconf +sync) to back up'),
      })
      .strict(),
  })
  .strict();
export const mysqlComponentInput = z
  .object({
    name: componentName,
    type: z.literal('mysql'),
    config: z
      .object({
        url: z
          .string()
          .max(2048)
          .describe('mysql://user:password@host:port/database (MySQL or MariaDB), optionally ?ssl=require or ?ssl=verify (verify checks the certificate against the host name on the service\'s own connection; the dump and load tools use TLS without that check, see docs/mysql.md); stored encrypted, returned with its password masked as `***`. The user needs SELECT, SHOW VIEW, LOCK TABLES, TRIGGER and EVENT to back up'),
      })
      .strict(),
  })
  .strict();
export const componentInput = z.discriminatedUnion('type', [directoryComponentInput, postgresComponentInput, redisComponentInput, mysqlComponentInput]);
export type ComponentInput = z.infer<typeof componentInput>;

const components = z.array(componentInput).min(1).max(MAX_COMPONENTS);

export const environmentSchema = z.enum(['production', 'staging', 'development']);
export const backupLocationSchema = z.enum(['same-region', 'dual-region']);
const region = z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/, 'lowercase letters, digits and "-", up to 32 characters');
const clusterName = z.string().trim().min(1).max(100);

const hookInput = z
  .object({
    url: z.string().max(2048).describe('https:// URL the service POSTs to, signed like a webhook; the SSRF rules of webhooks apply'),
    timeout_s: z.number().int().describe('a 2xx must come within this many seconds (1-300)'),
  })
  .strict();
/** Each hook given replaces that hook, null removes it, omitted ones stay. Admin only, like every change of a cluster. pre_backup and post_backup are set together or not at all, and so are pre_restore and post_restore (422 otherwise). */
const hooksInput = z
  .object({
    pre_backup: hookInput.nullable().optional().describe('called before a consistent backup reads anything; must answer 2xx (pause writers)'),
    post_backup: hookInput.nullable().optional().describe('called once every component reached its consistent point, also when the backup failed (resume writers)'),
    pre_restore: hookInput.nullable().optional().describe('called before a restore writes anything (stop the components)'),
    post_restore: hookInput.nullable().optional().describe('called after the restore, also when it failed (start them again)'),
  })
  .strict()
  .describe('pre_backup goes with post_backup and pre_restore with post_restore: a pair is set together or not at all (422 naming the missing one)');
const hookView = z.object({ url: z.string(), timeout_s: z.number().int() }).nullable();
export const hooksSchema = z
  .object({ pre_backup: hookView, post_backup: hookView, pre_restore: hookView, post_restore: hookView })
  .meta({ id: 'ClusterHooks', description: 'URLs called around consistent backups and restores (SPEC section 11)' });

export const createClusterBody = z
  .object({
    name: clusterName,
    environment: environmentSchema.default('production'),
    region: region.default('eu-1'),
    backup_location: backupLocationSchema.default('same-region'),
    policy_id: z.uuid().nullable().optional().describe("omitted or null: the default policy of the cluster's environment, which the cluster then follows (also when its environment changes)"),
    deletion_protection: z.boolean().default(false),
    components,
    hooks: hooksInput.optional(),
  })
  .strict();

export const patchClusterBody = z
  .object({
    name: clusterName.optional(),
    environment: environmentSchema.optional(),
    region: region.optional(),
    backup_location: backupLocationSchema.optional(),
    policy_id: z.uuid().nullable().optional().describe("null: follow the default policy of the cluster's environment"),
    deletion_protection: z.boolean().optional(),
    components: components.optional(),
    hooks: hooksInput.optional(),
  })
  .strict();

export const componentSchema = z
  .discriminatedUnion('type', [
    z.object({ name: z.string(), type: z.literal('directory'), config: z.object({ path: z.string().describe("relative to the tenant's folder under DATA_ROOT") }) }),
    z.object({
      name: z.string(),
      type: z.literal('postgres'),
      config: z.object({
        url: z.string().describe('the postgresql:// URL given, its password (and secret parameters) masked as `***`'),
        continuous: z.boolean().describe('whether the WAL is archived continuously (point-in-time recovery)'),
      }),
    }),
    z.object({ name: z.string(), type: z.literal('redis'), config: z.object({ url: z.string().describe('the redis:// URL given, its password masked as `***`') }) }),
    z.object({ name: z.string(), type: z.literal('mysql'), config: z.object({ url: z.string().describe('the mysql:// URL given, its password masked as `***`') }) }),
  ])
  .meta({ id: 'Component', description: 'a component as answered: secrets are masked' });
export type ComponentView = z.infer<typeof componentSchema>;

export const clusterSchema = z
  .object({
    id: z.uuid(),
    name: z.string(),
    environment: environmentSchema,
    region: z.string(),
    backup_location: backupLocationSchema,
    policy_id: z.uuid(),
    deletion_protection: z.boolean(),
    components: z.array(componentSchema),
    hooks: hooksSchema,
    hooks_secret: z.string().optional().describe('the secret hook calls are signed with (Standard Webhooks): in the answer that gave the cluster its first hook, and never again'),
    status: z.enum(['active', 'restoring', 'deleting']),
    next_backup_at: timestamp.nullable(),
    last_skipped_at: timestamp.nullable(),
    created_at: timestamp,
  })
  .meta({ id: 'Cluster' });
