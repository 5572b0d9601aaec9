-- Consistent backups and hooks (SPEC section 11).
--
-- clusters.hooks: {pre_backup?, post_backup?, pre_restore?, post_restore?}, each {url, timeout_s};
-- the URLs pass the SSRF guard at save and again at every call. Calls are signed like webhooks
-- with the cluster's hooks secret (encrypted with ENCRYPTION_KEY), created when a cluster first
-- gets hooks and shown once.
ALTER TABLE "clusters" ADD COLUMN "hooks" JSONB NOT NULL DEFAULT '{}';
ALTER TABLE "clusters" ADD COLUMN "hooks_secret_enc" TEXT;

-- A backup's pause: from the pre hook's answer to the post hook's call (null for live backups).
-- hook_state records the pause in PostgreSQL so that the post hook is called exactly once after a
-- pre hook succeeded, whatever happens to the worker: 'paused' (pre hook answered, post hook
-- owed), 'resumed' (post hook called). The reconciler calls the owed post hook of a job whose
-- worker was lost.
ALTER TABLE "backups" ADD COLUMN "paused_ms" INTEGER;
ALTER TABLE "backups" ADD COLUMN "hook_state" TEXT;
ALTER TABLE "backups" ADD CONSTRAINT "backups_hook_state_check" CHECK ("hook_state" IN ('paused', 'resumed'));
ALTER TABLE "restores" ADD COLUMN "hook_state" TEXT;
ALTER TABLE "restores" ADD CONSTRAINT "restores_hook_state_check" CHECK ("hook_state" IN ('paused', 'resumed'));
CREATE INDEX "backups_hook_state_paused_idx" ON "backups"("id") WHERE "hook_state" = 'paused';
CREATE INDEX "restores_hook_state_paused_idx" ON "restores"("id") WHERE "hook_state" = 'paused';

-- Scheduled backups are live unless the policy says scheduled_live: false.
ALTER TABLE "policies" ADD COLUMN "scheduled_live" BOOLEAN NOT NULL DEFAULT true;
