-- One active job per cluster is a database fact (SPEC rule 2), kept by src/jobs/ledger.ts.

-- The cluster's single job slot: set when a backup or restore is queued, cleared when it ends,
-- always under the cluster's row lock. A FOR UPDATE claim re-reads this column on the newest
-- row version, so a job queued by a concurrent transaction is seen (an EXISTS subquery would not).
ALTER TABLE "clusters" ADD COLUMN "active_job_id" UUID,
ADD COLUMN "active_job_kind" TEXT,
ADD COLUMN "retention_dirty" BOOLEAN NOT NULL DEFAULT false,
-- Creation time of the newest manual backup that still counts for the rate limit (rule 3), kept on
-- the locked row for the same reason as the slot.
ADD COLUMN "last_manual_at" TIMESTAMPTZ(3);

ALTER TABLE "clusters" ADD CONSTRAINT "clusters_active_job_kind_check"
  CHECK ((active_job_id IS NULL AND active_job_kind IS NULL) OR (active_job_id IS NOT NULL AND active_job_kind IN ('backup', 'restore')));

-- At most one queued or running backup, and one queued or running restore, per cluster.
CREATE UNIQUE INDEX "backups_one_active_per_cluster" ON "backups"("cluster_id") WHERE status IN ('queued', 'running');
CREATE UNIQUE INDEX "restores_one_active_per_cluster" ON "restores"("cluster_id") WHERE status IN ('queued', 'running');

-- And never one of each: an active backup or restore must hold its cluster's slot when its
-- transaction commits. Deferred to commit, so each check re-reads the row as it is then.
CREATE FUNCTION "check_backup_job_slot"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM backups b WHERE b.id = NEW.id AND b.status IN ('queued', 'running'))
     AND NOT EXISTS (SELECT 1 FROM clusters c WHERE c.id = NEW.cluster_id AND c.active_job_id = NEW.id) THEN
    RAISE EXCEPTION 'cluster % already has an active job', NEW.cluster_id
      USING ERRCODE = 'unique_violation', CONSTRAINT = 'cluster_one_active_job';
  END IF;
  RETURN NULL;
END
$$;
CREATE FUNCTION "check_restore_job_slot"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM restores r WHERE r.id = NEW.id AND r.status IN ('queued', 'running'))
     AND NOT EXISTS (SELECT 1 FROM clusters c WHERE c.id = NEW.cluster_id AND c.active_job_id = NEW.id) THEN
    RAISE EXCEPTION 'cluster % already has an active job', NEW.cluster_id
      USING ERRCODE = 'unique_violation', CONSTRAINT = 'cluster_one_active_job';
  END IF;
  RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER "backups_hold_cluster_slot" AFTER INSERT OR UPDATE OF status ON "backups"
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.status IN ('queued', 'running')) EXECUTE FUNCTION "check_backup_job_slot"();
CREATE CONSTRAINT TRIGGER "restores_hold_cluster_slot" AFTER INSERT OR UPDATE OF status ON "restores"
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.status IN ('queued', 'running')) EXECUTE FUNCTION "check_restore_job_slot"();

-- Hot small sets the reconciler and sweeps read.
CREATE INDEX "clusters_active_job_idx" ON "clusters"("active_job_id") WHERE active_job_id IS NOT NULL;
CREATE INDEX "clusters_busy_status_idx" ON "clusters"("status") WHERE status <> 'active';
CREATE INDEX "clusters_retention_dirty_idx" ON "clusters"("id") WHERE retention_dirty;

-- Dual-region copies: state, attempts and the next retry, shown on the backup.
ALTER TABLE "backups" ADD COLUMN "replication_status" TEXT,
ADD COLUMN "replication_attempts" INTEGER NOT NULL DEFAULT 0,
ADD COLUMN "replication_next_at" TIMESTAMPTZ(3),
ADD COLUMN "replication_error" TEXT;
CREATE INDEX "backups_replication_due_idx" ON "backups"("replication_next_at") WHERE replication_status IN ('pending', 'degraded');

-- Existing active jobs take their clusters' slots (newest backup first; restores win, as they set `restoring`).
UPDATE clusters c SET active_job_id = r.id, active_job_kind = 'restore'
FROM restores r WHERE r.cluster_id = c.id AND r.status IN ('queued', 'running');
UPDATE clusters c SET active_job_id = b.id, active_job_kind = 'backup'
FROM backups b WHERE b.cluster_id = c.id AND b.status IN ('queued', 'running') AND c.active_job_id IS NULL;
UPDATE backups b SET replication_status = 'pending'
WHERE b.status = 'completed' AND EXISTS (SELECT 1 FROM backup_artifacts a WHERE a.backup_id = b.id AND a.locations @> '[{"store":"secondary","status":"pending"}]'::jsonb);
UPDATE clusters c SET last_manual_at = (SELECT max(b.created_at) FROM backups b WHERE b.cluster_id = c.id AND b.trigger = 'manual' AND b.status <> 'deleting');
