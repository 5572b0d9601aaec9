-- Each tenant's directory components live in its own folder, DATA_ROOT/<data_dir>/ (SPEC section 2);
-- before this, every tenant shared DATA_ROOT and could name another tenant's trees.
-- Existing tenants get their id, the default for new ones. Their clusters' paths now resolve under
-- DATA_ROOT/<tenant id>/: move each tenant's trees there when upgrading.
ALTER TABLE "tenants" ADD COLUMN "data_dir" TEXT;
UPDATE "tenants" SET "data_dir" = "id"::text;
ALTER TABLE "tenants" ALTER COLUMN "data_dir" SET NOT NULL;

-- One folder, one tenant.
CREATE UNIQUE INDEX "tenants_data_dir_key" ON "tenants"("data_dir");

-- A single safe path segment, as the API checks it (src/components/paths.ts checkDataDir): lower
-- case (no clash on a case-insensitive file system), no '.' or '..', no slash, no NUL, no leading dash.
ALTER TABLE "tenants" ADD CONSTRAINT "tenants_data_dir_check" CHECK ("data_dir" ~ '^[a-z0-9_][a-z0-9._-]{0,63}$');
