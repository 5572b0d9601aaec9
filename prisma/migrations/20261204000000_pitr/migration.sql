-- PostgreSQL point-in-time recovery (SPEC section 13): continuous WAL archiving of postgres
-- components with config.continuous, base backups, a recovery window on policies, restores to a
-- point in time into a new database.

-- One row per continuous component: its replication slot on the tenant's server and the archiver
-- that streams it. No foreign key on cluster_id: the row outlives its component and its cluster
-- (status 'dropping') until an archiver has dropped the slot, so the tenant's server does not keep
-- WAL forever; url_enc (the component's URL, encrypted like the component's) is what it connects
-- with then.
CREATE TABLE "wal_streams" (
    "id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "cluster_id" UUID NOT NULL,
    "component" TEXT NOT NULL,
    "slot_name" TEXT NOT NULL,
    "url_enc" TEXT NOT NULL,
    -- active: archived; dropping: its component is gone, the slot is to be dropped, then the row.
    "status" TEXT NOT NULL DEFAULT 'active',
    -- what GET /v1/clusters/{id}/recovery-window shows: streaming | behind | stopped
    "state" TEXT NOT NULL DEFAULT 'stopped',
    "error" TEXT,
    -- the archiver holding the stream (one at a time) and until when
    "lease_owner" TEXT,
    "lease_expires_at" TIMESTAMPTZ(3),
    -- every commit of the source before this time is in stored WAL (null until some is stored)
    "latest_restorable_time" TIMESTAMPTZ(3),
    -- the end of the stored WAL, as a byte position (LSN), and how far the source is ahead of it
    "stored_lsn" BIGINT,
    "lag_bytes" BIGINT,
    "reported_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "wal_streams_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "wal_streams_status_check" CHECK ("status" IN ('active', 'dropping')),
    CONSTRAINT "wal_streams_state_check" CHECK ("state" IN ('streaming', 'behind', 'stopped')),
    CONSTRAINT "wal_streams_tenant_id_fkey" FOREIGN KEY ("tenant_id") REFERENCES "tenants"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
-- one active stream per component (a removed or re-pointed one is 'dropping' beside its successor)
CREATE UNIQUE INDEX "wal_streams_cluster_id_component_active_key" ON "wal_streams"("cluster_id", "component") WHERE "status" = 'active';
CREATE INDEX "wal_streams_tenant_id_idx" ON "wal_streams"("tenant_id");
CREATE INDEX "wal_streams_lease_expires_at_idx" ON "wal_streams"("lease_expires_at");

-- The stored WAL files of a stream. A segment is stored while it fills (partial, replaced by each
-- newer upload of it) and once complete. A row is 'writing' while its bytes go into the
-- repository (its references, wal_chunks, are recorded as they go, like a backup's), 'stored'
-- once its manifest is known; a 'writing' row of a dead archiver is deleted by the next holder of
-- the stream's lease.
CREATE TABLE "wal_segments" (
    "id" UUID NOT NULL,
    "stream_id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    -- the WAL file name: a segment (24 hex digits) or a timeline history file (<tli>.history)
    "name" TEXT NOT NULL,
    "timeline" INTEGER NOT NULL,
    -- byte positions: the segment's start, and the end of the WAL it holds (its end when complete)
    "start_lsn" BIGINT NOT NULL,
    "end_lsn" BIGINT NOT NULL,
    "partial" BOOLEAN NOT NULL DEFAULT false,
    -- every commit of the source before this time is in this file or an earlier one
    "covers_until" TIMESTAMPTZ(3) NOT NULL,
    "status" TEXT NOT NULL DEFAULT 'writing',
    "bytes" BIGINT NOT NULL DEFAULT 0,
    "stored_bytes" BIGINT NOT NULL DEFAULT 0,
    "sha256" TEXT,
    -- the stream of the file's bytes: {chunks, bytes}
    "manifest" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "wal_segments_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "wal_segments_status_check" CHECK ("status" IN ('writing', 'stored')),
    CONSTRAINT "wal_segments_stream_id_fkey" FOREIGN KEY ("stream_id") REFERENCES "wal_streams"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
-- one stored version of a file per stream
CREATE UNIQUE INDEX "wal_segments_stream_id_name_stored_key" ON "wal_segments"("stream_id", "name") WHERE "status" = 'stored';
CREATE INDEX "wal_segments_stream_id_start_lsn_idx" ON "wal_segments"("stream_id", "start_lsn");
CREATE INDEX "wal_segments_tenant_id_idx" ON "wal_segments"("tenant_id");

-- Which chunks each stored WAL file relies on: backup_chunks' twin (docs/repository.md), gone
-- with the file.
CREATE TABLE "wal_chunks" (
    "segment_id" UUID NOT NULL,
    "tenant_id" UUID NOT NULL,
    "chunk_id" TEXT NOT NULL,

    CONSTRAINT "wal_chunks_pkey" PRIMARY KEY ("segment_id", "chunk_id"),
    CONSTRAINT "wal_chunks_segment_id_fkey" FOREIGN KEY ("segment_id") REFERENCES "wal_segments"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "wal_chunks_tenant_id_chunk_id_idx" ON "wal_chunks"("tenant_id", "chunk_id");

-- Every reference GC must respect, whoever holds it.
CREATE VIEW "chunk_refs" AS
  SELECT "tenant_id", "chunk_id" FROM "backup_chunks"
  UNION ALL
  SELECT "tenant_id", "chunk_id" FROM "wal_chunks";

-- A base backup's positions (a continuous component's artifact): {start_lsn, end_lsn, timeline,
-- stop_time, server_version}; null for other artifacts.
ALTER TABLE "backup_artifacts" ADD COLUMN "base_backup" JSONB;

-- How far back a point-in-time restore can go, e.g. "14d" (null: no window).
ALTER TABLE "policies" ADD COLUMN "recovery_window" TEXT;

-- A restore to a point in time: the state as of point_in_time into a new database
-- target_database (backup_id is the base backup it starts from).
ALTER TABLE "restores" ADD COLUMN "point_in_time" TIMESTAMPTZ(3);
ALTER TABLE "restores" ADD COLUMN "target_database" TEXT;
