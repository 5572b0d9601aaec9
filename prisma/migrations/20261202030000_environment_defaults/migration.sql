-- Default policies per environment type (SPEC section 11, Upsun's data_retention).
--
-- A tenant has three default policies, one per environment (policies.default_for, unique per
-- tenant); they are edited like any policy but never deleted. A cluster created without a
-- policy_id (or patched to policy_id null) follows its environment's default
-- (clusters.policy_follows_environment): its policy_id is that default's id, and a change of
-- environment moves it to the new environment's default.
ALTER TABLE "policies" ADD COLUMN "default_for" "Environment";
CREATE UNIQUE INDEX "policies_tenant_id_default_for_key" ON "policies"("tenant_id", "default_for");

ALTER TABLE "clusters" ADD COLUMN "policy_follows_environment" BOOLEAN NOT NULL DEFAULT false;

-- Existing tenants: their current default policy becomes the production default, unchanged.
UPDATE "policies" SET "default_for" = 'production' WHERE "is_default";

-- ... and they get staging and development defaults with no automated backups (schedule []),
-- the other fields as SPEC section 2 gives them. A name a tenant already uses gets a suffix.
INSERT INTO "policies" ("id", "tenant_id", "name", "is_default", "default_for", "timezone", "schedule", "max_backups", "manual_count", "manual_rate_limit", "failed_count", "created_at", "updated_at")
SELECT gen_random_uuid(), t."id",
       CASE WHEN EXISTS (SELECT 1 FROM "policies" x WHERE x."tenant_id" = t."id" AND x."name" = e.env || ' default')
            THEN e.env || ' default (' || left(md5(random()::text), 6) || ')' ELSE e.env || ' default' END,
       true, e.env::"Environment", 'UTC', '[]'::jsonb, 10, 3, '1h', 3, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP
FROM "tenants" t CROSS JOIN (VALUES ('staging'), ('development')) AS e(env)
WHERE NOT EXISTS (SELECT 1 FROM "policies" p WHERE p."tenant_id" = t."id" AND p."default_for" = e.env::"Environment");

-- Existing clusters keep the policy they have; a production cluster on the production default
-- follows it from now on (the same policy either way).
UPDATE "clusters" c SET "policy_follows_environment" = true
FROM "policies" p WHERE p."id" = c."policy_id" AND p."default_for" = 'production' AND c."environment" = 'production';

-- Every default policy is one environment's default, and only those are.
ALTER TABLE "policies" ADD CONSTRAINT "policies_default_for_check" CHECK ("is_default" = ("default_for" IS NOT NULL));
