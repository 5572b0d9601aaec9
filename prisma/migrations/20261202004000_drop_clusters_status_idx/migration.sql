-- Clusters being deleted are found with a literal status (raw SQL in the reconciler), which the
-- partial clusters_busy_status_idx serves; the full index on clusters.status cost every scheduler
-- claim one more index entry per cluster it updates.
DROP INDEX IF EXISTS "clusters_status_idx";
