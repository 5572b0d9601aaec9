-- AlterTable
ALTER TABLE "backups" ADD COLUMN     "verified_at" TIMESTAMPTZ(3),
ADD COLUMN     "verify_message" TEXT,
ADD COLUMN     "verify_status" TEXT;

-- AlterTable
ALTER TABLE "restores" ADD COLUMN     "source_cluster_id" UUID NOT NULL;

-- CreateIndex
CREATE INDEX "restores_source_cluster_id_created_at_id_idx" ON "restores"("source_cluster_id", "created_at" DESC, "id" DESC);

-- CreateIndex
CREATE INDEX "restores_backup_id_idx" ON "restores"("backup_id");
