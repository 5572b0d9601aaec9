-- The pause of a consistent backup or a restore, as a claimable state (SPEC section 11).
--
-- hook_state now follows: 'pausing' (written BEFORE the pre hook is called, so that a worker
-- killed while the pre hook answers still leaves the post hook owed) -> 'paused' (the pre hook
-- answered 2xx) -> 'resuming' (one caller, worker or reconciler, claimed the post hook) ->
-- 'resumed' (it was called). A pre hook that fails sets it back to null: no post hook is owed.
-- hook_paused_at is the pause's start: hook calls of one pause share a webhook-id
-- (<job>.<hook>.<pause start in ms>), a later pause of the same job (after a hand-back) gets new
-- ones. hook_claimed_at is when the post hook was claimed: a claim older than the longest hook
-- timeout plus a margin belongs to a caller that died, and is taken over by the reconciler.
ALTER TABLE "backups" DROP CONSTRAINT "backups_hook_state_check";
ALTER TABLE "backups" ADD CONSTRAINT "backups_hook_state_check" CHECK ("hook_state" IN ('pausing', 'paused', 'resuming', 'resumed'));
ALTER TABLE "backups" ADD COLUMN "hook_paused_at" TIMESTAMPTZ(3);
ALTER TABLE "backups" ADD COLUMN "hook_claimed_at" TIMESTAMPTZ(3);
ALTER TABLE "restores" DROP CONSTRAINT "restores_hook_state_check";
ALTER TABLE "restores" ADD CONSTRAINT "restores_hook_state_check" CHECK ("hook_state" IN ('pausing', 'paused', 'resuming', 'resumed'));
ALTER TABLE "restores" ADD COLUMN "hook_paused_at" TIMESTAMPTZ(3);
ALTER TABLE "restores" ADD COLUMN "hook_claimed_at" TIMESTAMPTZ(3);

DROP INDEX "backups_hook_state_paused_idx";
DROP INDEX "restores_hook_state_paused_idx";
CREATE INDEX "backups_hook_state_owed_idx" ON "backups"("id") WHERE "hook_state" IN ('pausing', 'paused', 'resuming');
CREATE INDEX "restores_hook_state_owed_idx" ON "restores"("id") WHERE "hook_state" IN ('pausing', 'paused', 'resuming');

-- A tenant without a production default (none should exist: every tenant is created with one,
-- and 20261202030000 made the existing default the production one) gets it, with the values
-- of SPEC section 2, so every tenant has all three defaults.
INSERT INTO "policies" ("id", "tenant_id", "name", "is_default", "default_for", "timezone", "schedule", "max_backups", "manual_count", "manual_rate_limit", "failed_count", "scheduled_live", "created_at", "updated_at")
SELECT gen_random_uuid(), t."id",
       CASE WHEN EXISTS (SELECT 1 FROM "policies" x WHERE x."tenant_id" = t."id" AND x."name" = 'production default')
            THEN 'production default (' || left(md5(random()::text), 6) || ')' ELSE 'production default' END,
       true, 'production'::"Environment", 'UTC', '[{"interval": "1d", "count": 2}]'::jsonb, 10, 3, '1h', 3, true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP
FROM "tenants" t
WHERE NOT EXISTS (SELECT 1 FROM "policies" p WHERE p."tenant_id" = t."id" AND p."default_for" = 'production');
