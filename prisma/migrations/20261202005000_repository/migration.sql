-- The content-addressed repository (docs/repository.md): one per tenant per store.

-- A tenant's repository: its keys, random per tenant, wrapped by ENCRYPTION_KEY. The same
-- wrapped form lives in the store (repos/<tenant>/config) so the store alone recovers it.
CREATE TABLE "repositories" (
    "tenant_id" UUID NOT NULL,
    "wrapped_keys" TEXT NOT NULL,
    "key_id" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "gc_requested_at" TIMESTAMPTZ(3),
    "gc_ran_at" TIMESTAMPTZ(3),
    "verified_at" TIMESTAMPTZ(3),

    CONSTRAINT "repositories_pkey" PRIMARY KEY ("tenant_id"),
    CONSTRAINT "repositories_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE
);

-- Pack objects (repos/<tenant>/packs/<id[0:2]>/<id>); id = sha256 of the body.
-- live: its chunks may be referenced and reused. doomed: no chunk of it is referenced, its
-- chunk rows are gone (nothing can reuse it); deleted from every store after GC_GRACE_MS.
CREATE TABLE "packs" (
    "id" TEXT NOT NULL,
    "tenant_id" UUID NOT NULL,
    "bytes" BIGINT NOT NULL,
    "chunk_count" INTEGER NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'live',
    "secondary_status" TEXT,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "doomed_at" TIMESTAMPTZ(3),
    "verified_at" TIMESTAMPTZ(3),
    "verify_error" TEXT,

    CONSTRAINT "packs_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "packs_status_check" CHECK ("status" IN ('live', 'doomed')),
    CONSTRAINT "packs_secondary_status_check" CHECK ("secondary_status" IS NULL OR "secondary_status" IN ('pending', 'present', 'failed')),
    CONSTRAINT "packs_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "packs_tenant_id_status_idx" ON "packs"("tenant_id", "status");

-- Where each chunk the repository holds lives. One row per (tenant, chunk id): a copy another
-- pack may also hold is garbage of that pack.
CREATE TABLE "chunks" (
    "tenant_id" UUID NOT NULL,
    "id" TEXT NOT NULL,
    "pack_id" TEXT NOT NULL,
    "pack_offset" INTEGER NOT NULL,
    "length" INTEGER NOT NULL,
    "raw_length" INTEGER NOT NULL,
    "cluster_id" UUID,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "chunks_pkey" PRIMARY KEY ("tenant_id", "id"),
    CONSTRAINT "chunks_pack_id_fkey" FOREIGN KEY ("pack_id") REFERENCES "packs"("id") ON DELETE RESTRICT ON UPDATE CASCADE
);
CREATE INDEX "chunks_pack_id_idx" ON "chunks"("pack_id");

-- Which chunks each backup relies on. Written before the backup relies on them (see the GC
-- protocol in docs/repository.md); gone with the backup.
CREATE TABLE "backup_chunks" (
    "backup_id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "chunk_id" TEXT NOT NULL,

    CONSTRAINT "backup_chunks_pkey" PRIMARY KEY ("backup_id", "chunk_id"),
    CONSTRAINT "backup_chunks_backup_id_fkey" FOREIGN KEY ("backup_id") REFERENCES "backups"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "backup_chunks_tenant_id_chunk_id_idx" ON "backup_chunks"("tenant_id", "chunk_id");

-- Accounting and manifests.
ALTER TABLE "backups" ADD COLUMN "stored_bytes" BIGINT;
ALTER TABLE "backups" ADD COLUMN "progress" JSONB;
ALTER TABLE "backup_artifacts" ADD COLUMN "type" TEXT NOT NULL DEFAULT 'directory';
ALTER TABLE "backup_artifacts" ADD COLUMN "stored_bytes" BIGINT NOT NULL DEFAULT 0;
ALTER TABLE "backup_artifacts" ADD COLUMN "manifest" JSONB NOT NULL DEFAULT '{}';
-- A partial restore of one directory component: only these paths are replaced.
ALTER TABLE "restores" ADD COLUMN "paths" JSONB;
