-- Hot small sets (issue 9, finding 7). The rows the reconciler and the sweeps look for every few
-- seconds (being verified, clusters being deleted, dirty) are a handful among millions
-- of finished backups; each probe must cost the size of its set, not of the table.
--
-- Prisma filters an enum column as `status = CAST($1::text AS "BackupStatus")`. That cast calls
-- enum_in, which is only STABLE, so the planner cannot prove a partial index's predicate
-- (`WHERE status = 'deleting'`) from it: such an index serves raw SQL with a literal status only.
-- What serves Prisma's enum filters is a full index on the enum column, where a rare status is a
-- short range: backups_status_idx and restores_status_idx stay for that reason (btree
-- deduplication keeps them small: 66 MB for 10 million backups), and the planner prefers them to a
-- partial index on one status even for a literal, so none is added for `deleting`. Text columns (verify_status,
-- replication_status) have no cast, and a partial index serves Prisma and raw SQL alike.
-- The active sets (queued or running) already have theirs: backups_one_active_per_cluster,
-- restores_one_active_per_cluster and clusters_active_job_idx (migration 20261202000000).

-- Verifications whose job may be missing: a sequential scan of every completed backup before.
CREATE INDEX "backups_verify_active_idx" ON "backups"("id") WHERE verify_status IN ('queued', 'running');

-- clusters.status had no index Prisma's filter can use (clusters_busy_status_idx is partial): the
-- reconciler's look for clusters being deleted read every cluster.
CREATE INDEX "clusters_status_idx" ON "clusters"("status");

-- The retention sweep now visits only clusters marked dirty (clusters_retention_dirty_idx). The old
-- one re-evaluated every cluster with more than one finished backup each period: those are marked
-- once here, so that a prune lost before the upgrade is still made.
UPDATE clusters c SET retention_dirty = true
WHERE NOT c.retention_dirty AND c.status <> 'deleting'
  AND (SELECT count(*) FROM backups b WHERE b.cluster_id = c.id AND b.status IN ('completed', 'failed')) > 1;
