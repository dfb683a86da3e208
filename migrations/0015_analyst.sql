-- The analyst schema (issue 5, item 5): read-only database roles for analysts, the
-- `analytics` views for the common questions, and the indexes those views need.
-- docs/schema.md documents every table, column, status, role and view, and holds the
-- EXPLAIN output of the views on a seeded dataset.

-- Roles are cluster-wide and several databases may race to create them (0001).
-- `analyst` sees one tenant (chosen below); `analyst_all` sees every tenant. Neither
-- can log in: operators create login roles and GRANT one of them (docs/schema.md).
DO $$
BEGIN
  BEGIN
    CREATE ROLE analyst NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
  BEGIN
    CREATE ROLE analyst_all NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
  END;
END
$$;

-- Pins a login to one tenant. A login's own `app.tenant_id` setting is only a default
-- it may change with SET; a row here is a boundary it cannot change (only the owner
-- writes this table). One tenant per login: a person who analyses two tenants gets two
-- logins, so no query can mix them by accident.
CREATE TABLE IF NOT EXISTS analyst_tenants (
    login      name        PRIMARY KEY,  -- the login role (session_user)
    tenant_id  uuid        NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON analyst_tenants FROM PUBLIC;
GRANT SELECT ON analyst_tenants TO analyst;
-- A login sees its own pin and nothing else: other logins' tenants are not its business.
-- Not FORCEd: the owner manages the table.
ALTER TABLE analyst_tenants ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS own_pin ON analyst_tenants;
CREATE POLICY own_pin ON analyst_tenants FOR SELECT TO analyst USING (login = session_user);

-- Makes a read table readable by analysts. The analyst's tenant is its pin if it has
-- one, else its `app.tenant_id` setting; neither means NULL, which matches no row (zero
-- rows, not an error). The scalar subquery runs once per query (an InitPlan), so the
-- tenant comparison can use the tables' (tenant_id, …) indexes. session_user, not
-- current_user: SET ROLE cannot move a pin. Called for each table below; a later
-- migration calls it for a new read table only after deciding analysts may read it
-- (tables holding secrets or keys are never passed here).
CREATE OR REPLACE FUNCTION chronicle_analyst_readable(t regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('DROP POLICY IF EXISTS analyst_one_tenant ON %s', t);
  EXECUTE format($p$CREATE POLICY analyst_one_tenant ON %s FOR SELECT TO analyst
      USING (tenant_id = coalesce(
          (SELECT p.tenant_id FROM analyst_tenants p WHERE p.login = session_user),
          nullif(current_setting('app.tenant_id', true), '')::uuid))$p$, t);
  EXECUTE format('DROP POLICY IF EXISTS analyst_every_tenant ON %s', t);
  EXECUTE format('CREATE POLICY analyst_every_tenant ON %s FOR SELECT TO analyst_all USING (true)', t);
  EXECUTE format('GRANT SELECT ON %s TO analyst, analyst_all', t);
END
$$;
-- Only the owner changes policies (it runs as its caller, who would need ownership anyway).
REVOKE ALL ON FUNCTION chronicle_analyst_readable(regclass) FROM PUBLIC;

-- Every tenant-scoped read table. Deliberately not readable: events and snapshots (raw
-- payloads, which hold personal data; audit_logs is the analysts' view of history),
-- credentials (password hashes), idempotency_keys (stored responses of any request),
-- projector_checkpoints (event counts over all tenants) and any table of keys.
SELECT chronicle_analyst_readable(t) FROM unnest(ARRAY[
    'tenants', 'users', 'sessions', 'devices', 'user_devices', 'locations', 'user_locations',
    'session_devices', 'audit_logs', 'stream_heads', 'files', 'file_versions', 'tags',
    'file_tags', 'jobs', 'notification_recipients', 'notifications', 'blob_references',
    'blob_collections'
]::regclass[]) AS t;

-- When processing reached its verdict (completed, virus_failed, duplicate, or failed on
-- the last attempt): the end of the latency the analytics measure from created_at (the
-- upload). NULL while the version is pending or being retried, and for versions made by
-- a restore, which are never processed. The files projector fills it from the verdict
-- event's recorded_at, so a rebuild reproduces it.
ALTER TABLE file_versions ADD COLUMN IF NOT EXISTS processed_at timestamptz;

-- Backfill rows projected before this column existed. A settled version's row is not
-- touched after its verdict, so its updated_at is the verdict's time; a rebuild of the
-- `files` projector (`chronicle projections rebuild files`) yields the same values from
-- the events. Row-level security is forced, so run it as the projector role (see 0010).
SET LOCAL ROLE chronicle_worker;
UPDATE file_versions SET processed_at = updated_at
 WHERE processed_at IS NULL AND restored_from_version IS NULL
   AND status IN ('completed', 'virus_failed', 'duplicate', 'failed');
RESET ROLE;

-- Indexes for the views' queries (EXPLAIN in docs/schema.md). Equality first, the day
-- range last; INCLUDE lets the latency view read the index alone.
CREATE INDEX IF NOT EXISTS file_versions_latency ON file_versions (tenant_id, processed_at)
    INCLUDE (created_at)
    WHERE status = 'completed' AND restored_from_version IS NULL;
-- Dead letters are few: a partial index holds only them. (The view's `status = …` cannot
-- be an index condition under row-level security, as enum equality is not leakproof,
-- so jobs_by_status is not used; a partial index's predicate still applies.)
CREATE INDEX IF NOT EXISTS jobs_dead_letters ON jobs (tenant_id, updated_at)
    WHERE status = 'dead_letter';
-- The storage views group a tenant's completed versions by blob: 0007's dedup index,
-- covering the columns they read, serves them without the heap and still serves the
-- worker's dedup lookup (same name, key and predicate).
DROP INDEX IF EXISTS file_versions_dedup;
CREATE INDEX file_versions_dedup ON file_versions (tenant_id, sha256)
    INCLUDE (file_id, size_bytes)
    WHERE status = 'completed';
-- … joined to the tenant's files that still hold bytes, read from the index alone.
-- Indexed columns change only on delete, restore and purge, so the files projector's
-- frequent updated_at updates stay HOT.
CREATE INDEX IF NOT EXISTS files_stored ON files (tenant_id, id)
    INCLUDE (owner_id, is_deleted)
    WHERE NOT purged;
CREATE INDEX IF NOT EXISTS audit_logs_file_outcomes ON audit_logs (tenant_id, created_at)
    INCLUDE (action)
    WHERE action IN ('file.uploaded', 'file.virus_failed');

-- The views. security_invoker: the caller's privileges and row-level security apply
-- to the tables underneath, so a view shows exactly what its caller may see. Days are
-- UTC dates.
CREATE SCHEMA IF NOT EXISTS analytics;
REVOKE ALL ON SCHEMA analytics FROM PUBLIC;
GRANT USAGE ON SCHEMA analytics TO analyst, analyst_all;

-- One row per version whose bytes are stored: completed versions of files that are not
-- purged (a deleted file keeps its bytes until it is purged; pruned versions have left
-- file_versions).
CREATE OR REPLACE VIEW analytics.stored_versions WITH (security_invoker = true) AS
SELECT v.tenant_id, v.file_id, v.version_number, f.owner_id AS user_id, f.is_deleted,
       v.sha256, v.size_bytes
  FROM file_versions v
  JOIN files f ON f.tenant_id = v.tenant_id AND f.id = v.file_id
 WHERE v.status = 'completed' AND NOT f.purged;

CREATE OR REPLACE VIEW analytics.storage_by_user WITH (security_invoker = true) AS
SELECT tenant_id, user_id,
       count(DISTINCT file_id)                                    AS files,
       count(*)                                                   AS versions,
       sum(size_bytes)::bigint                                    AS logical_bytes,
       coalesce(sum(size_bytes) FILTER (WHERE is_deleted), 0)::bigint AS deleted_bytes
  FROM analytics.stored_versions
 GROUP BY tenant_id, user_id;

-- Dedup is per tenant (a blob is the tenant's bytes with one sha256), so physical bytes
-- are per tenant too; per user they would be ambiguous (two users share one blob).
CREATE OR REPLACE VIEW analytics.dedup_savings WITH (security_invoker = true) AS
SELECT tenant_id,
       sum(versions)::bigint                          AS versions,
       count(*)                                       AS blobs,
       sum(logical_bytes)::bigint                     AS logical_bytes,
       sum(blob_bytes)::bigint                        AS physical_bytes,
       (sum(logical_bytes) - sum(blob_bytes))::bigint AS saved_bytes,
       round(1 - sum(blob_bytes) / nullif(sum(logical_bytes), 0), 4) AS saved_ratio
  FROM (SELECT tenant_id, sha256, count(*) AS versions, sum(size_bytes) AS logical_bytes,
               max(size_bytes) AS blob_bytes
          FROM analytics.stored_versions
         GROUP BY tenant_id, sha256) blobs
 GROUP BY tenant_id;

CREATE OR REPLACE VIEW analytics.storage_by_tenant WITH (security_invoker = true) AS
SELECT t.tenant_id, t.name AS tenant_name,
       coalesce(u.files, 0)          AS files,
       coalesce(d.versions, 0)       AS versions,
       coalesce(d.logical_bytes, 0)  AS logical_bytes,
       coalesce(d.physical_bytes, 0) AS physical_bytes,
       coalesce(u.deleted_bytes, 0)  AS deleted_bytes
  FROM tenants t
  LEFT JOIN (SELECT tenant_id, sum(files)::bigint AS files, sum(deleted_bytes)::bigint AS deleted_bytes
               FROM analytics.storage_by_user GROUP BY tenant_id) u USING (tenant_id)
  LEFT JOIN analytics.dedup_savings d USING (tenant_id);

-- From the audit log, which keeps every event: pruning and purging never change a past
-- day. A version is uploaded once and fails its virus scan at most once.
CREATE OR REPLACE VIEW analytics.uploads_daily WITH (security_invoker = true) AS
SELECT tenant_id, (created_at AT TIME ZONE 'UTC')::date AS day,
       count(*) FILTER (WHERE action = 'file.uploaded')     AS uploads,
       count(*) FILTER (WHERE action = 'file.virus_failed') AS virus_detections
  FROM audit_logs
 WHERE action IN ('file.uploaded', 'file.virus_failed')
 GROUP BY 1, 2;

-- Upload (created_at) to completion (processed_at) of completed, processed versions, by
-- the day they completed. Seconds, interpolated percentiles (percentile_cont).
CREATE OR REPLACE VIEW analytics.processing_latency_daily WITH (security_invoker = true) AS
SELECT tenant_id, (processed_at AT TIME ZONE 'UTC')::date AS day,
       count(*) AS versions,
       percentile_cont(0.5)  WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - created_at)) AS p50_seconds,
       percentile_cont(0.9)  WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - created_at)) AS p90_seconds,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - created_at)) AS p99_seconds,
       max(extract(epoch FROM processed_at - created_at))::double precision AS max_seconds
  FROM file_versions
 WHERE status = 'completed' AND restored_from_version IS NULL AND processed_at IS NOT NULL
 GROUP BY 1, 2;

-- Jobs that are dead letters now (attempts exhausted, not retried since), by the day
-- they died. A retried job leaves this view; its history stays in the audit log.
CREATE OR REPLACE VIEW analytics.dead_letters_daily WITH (security_invoker = true) AS
SELECT tenant_id, (updated_at AT TIME ZONE 'UTC')::date AS day, count(*) AS dead_letters
  FROM jobs
 WHERE status = 'dead_letter'
 GROUP BY 1, 2;

GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO analyst, analyst_all;
