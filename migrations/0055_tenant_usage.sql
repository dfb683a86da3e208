-- The bytes each tenant stores, for the storage quota (TENANT_QUOTA_BYTES) that every
-- upload checks before it accepts bytes. The check used to sum every version of every
-- file of the tenant on each upload: its cost grew with the tenant, one more row per
-- upload. It now reads this one row.
--
-- A version counts while its status is not virus_failed, duplicate or failed and its
-- file exists and is not purged, the condition of the sum it replaces. (A duplicate's
-- bytes are the original's blob, counted once there.)
--
-- Kept by triggers on file_versions and files rather than by the files projector's code:
-- every statement that changes what counts -- the projector's batched statements, its
-- single-event ones, a rebuild's TRUNCATE and refill (src/projections/rebuild.rs) --
-- keeps the row exact without computing its own difference. Statement-level triggers
-- with transition tables add one row change per tenant per statement, not one per
-- version. The functions name public.* explicitly: during a rebuild, temporary tables
-- of the same names shadow the live ones for unqualified names. The table is not one of
-- the files projector's tables: a rebuild's refill of file_versions and files rebuilds
-- it through these triggers.
CREATE TABLE IF NOT EXISTS tenant_usage (
    tenant_id    uuid   PRIMARY KEY,
    stored_bytes bigint NOT NULL
);
SELECT chronicle_protect_read_table('tenant_usage');
SELECT chronicle_analyst_readable('tenant_usage');

-- Whether a version of a status counts towards what the tenant stores.
CREATE OR REPLACE FUNCTION chronicle_version_stored(s file_status) RETURNS boolean
    LANGUAGE sql IMMUTABLE AS $$ SELECT s NOT IN ('virus_failed', 'duplicate', 'failed') $$;

-- Versions inserted, changed or removed: what they counted before (the old rows) is
-- taken away and what they count now (the new rows) added, per tenant. A row whose file
-- is missing or purged counts for nothing either way (the files trigger below moves a
-- file's versions in and out when it appears or is purged).
CREATE OR REPLACE FUNCTION chronicle_usage_of_versions() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO public.tenant_usage AS u (tenant_id, stored_bytes)
    SELECT n.tenant_id, sum(n.size_bytes) FROM new_versions n
     WHERE chronicle_version_stored(n.status)
       AND EXISTS (SELECT 1 FROM public.files f
                    WHERE f.tenant_id = n.tenant_id AND f.id = n.file_id AND NOT f.purged)
     GROUP BY n.tenant_id
    ON CONFLICT (tenant_id) DO UPDATE SET stored_bytes = u.stored_bytes + excluded.stored_bytes;
  ELSIF TG_OP = 'UPDATE' THEN
    -- Old and new row of each version side by side (a changed key leaves two unmatched
    -- rows, each counted alone): most updates move a version between statuses that both
    -- count (uploaded, processing, completed), and only the rows whose count changed look
    -- up their file.
    INSERT INTO public.tenant_usage AS u (tenant_id, stored_bytes)
    SELECT d.tenant_id, sum(d.bytes)
      FROM (SELECT coalesce(n.tenant_id, o.tenant_id) AS tenant_id,
                   coalesce(n.file_id, o.file_id) AS file_id,
                   CASE WHEN chronicle_version_stored(n.status) THEN n.size_bytes ELSE 0 END
                 - CASE WHEN chronicle_version_stored(o.status) THEN o.size_bytes ELSE 0 END AS bytes
              FROM new_versions n FULL JOIN old_versions o
                ON o.tenant_id = n.tenant_id AND o.file_id = n.file_id
               AND o.version_number = n.version_number) d
     WHERE d.bytes <> 0
       AND EXISTS (SELECT 1 FROM public.files f
                    WHERE f.tenant_id = d.tenant_id AND f.id = d.file_id AND NOT f.purged)
     GROUP BY d.tenant_id
    ON CONFLICT (tenant_id) DO UPDATE SET stored_bytes = u.stored_bytes + excluded.stored_bytes;
  ELSE
    INSERT INTO public.tenant_usage AS u (tenant_id, stored_bytes)
    SELECT o.tenant_id, -sum(o.size_bytes) FROM old_versions o
     WHERE chronicle_version_stored(o.status)
       AND EXISTS (SELECT 1 FROM public.files f
                    WHERE f.tenant_id = o.tenant_id AND f.id = o.file_id AND NOT f.purged)
     GROUP BY o.tenant_id
    ON CONFLICT (tenant_id) DO UPDATE SET stored_bytes = u.stored_bytes + excluded.stored_bytes;
  END IF;
  RETURN NULL;
END
$$;

-- Files inserted: their versions already in file_versions start to count (none when the
-- projector inserts a file before its versions; all of them when a rebuild refills
-- file_versions before files).
CREATE OR REPLACE FUNCTION chronicle_usage_of_new_files() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.tenant_usage AS u (tenant_id, stored_bytes)
  SELECT v.tenant_id, sum(v.size_bytes)
    FROM new_files n JOIN public.file_versions v ON v.tenant_id = n.tenant_id AND v.file_id = n.id
   WHERE NOT n.purged AND chronicle_version_stored(v.status)
   GROUP BY v.tenant_id
  ON CONFLICT (tenant_id) DO UPDATE SET stored_bytes = u.stored_bytes + excluded.stored_bytes;
  RETURN NULL;
END
$$;

-- Files deleted (the projector never deletes one; an operator's repair or a test may):
-- their versions stop counting, as the sum's join would drop them.
CREATE OR REPLACE FUNCTION chronicle_usage_of_deleted_files() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.tenant_usage AS u (tenant_id, stored_bytes)
  SELECT v.tenant_id, -sum(v.size_bytes)
    FROM old_files o JOIN public.file_versions v ON v.tenant_id = o.tenant_id AND v.file_id = o.id
   WHERE NOT o.purged AND chronicle_version_stored(v.status)
   GROUP BY v.tenant_id
  ON CONFLICT (tenant_id) DO UPDATE SET stored_bytes = u.stored_bytes + excluded.stored_bytes;
  RETURN NULL;
END
$$;

-- A file purged (or, should it ever happen, un-purged): its versions stop (start)
-- counting. Row-level, fired only when `purged` changes: purges are rare, and the many
-- other updates of files pay nothing.
CREATE OR REPLACE FUNCTION chronicle_usage_of_purge() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.tenant_usage AS u (tenant_id, stored_bytes)
  SELECT NEW.tenant_id, CASE WHEN NEW.purged THEN -sum(v.size_bytes) ELSE sum(v.size_bytes) END
    FROM public.file_versions v
   WHERE v.tenant_id = NEW.tenant_id AND v.file_id = NEW.id AND chronicle_version_stored(v.status)
  HAVING count(*) > 0
  ON CONFLICT (tenant_id) DO UPDATE SET stored_bytes = u.stored_bytes + excluded.stored_bytes;
  RETURN NULL;
END
$$;

-- Either table emptied (a rebuild empties both, then refills them): nothing counts.
CREATE OR REPLACE FUNCTION chronicle_usage_reset() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM public.tenant_usage;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS usage_versions_inserted ON file_versions;
CREATE TRIGGER usage_versions_inserted AFTER INSERT ON file_versions
    REFERENCING NEW TABLE AS new_versions
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_usage_of_versions();
DROP TRIGGER IF EXISTS usage_versions_updated ON file_versions;
CREATE TRIGGER usage_versions_updated AFTER UPDATE ON file_versions
    REFERENCING OLD TABLE AS old_versions NEW TABLE AS new_versions
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_usage_of_versions();
DROP TRIGGER IF EXISTS usage_versions_deleted ON file_versions;
CREATE TRIGGER usage_versions_deleted AFTER DELETE ON file_versions
    REFERENCING OLD TABLE AS old_versions
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_usage_of_versions();
DROP TRIGGER IF EXISTS usage_versions_emptied ON file_versions;
CREATE TRIGGER usage_versions_emptied AFTER TRUNCATE ON file_versions
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_usage_reset();
DROP TRIGGER IF EXISTS usage_files_inserted ON files;
CREATE TRIGGER usage_files_inserted AFTER INSERT ON files
    REFERENCING NEW TABLE AS new_files
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_usage_of_new_files();
DROP TRIGGER IF EXISTS usage_files_deleted ON files;
CREATE TRIGGER usage_files_deleted AFTER DELETE ON files
    REFERENCING OLD TABLE AS old_files
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_usage_of_deleted_files();
DROP TRIGGER IF EXISTS usage_files_purged ON files;
CREATE TRIGGER usage_files_purged AFTER UPDATE OF purged ON files
    FOR EACH ROW WHEN (OLD.purged IS DISTINCT FROM NEW.purged)
    EXECUTE FUNCTION chronicle_usage_of_purge();
DROP TRIGGER IF EXISTS usage_files_emptied ON files;
CREATE TRIGGER usage_files_emptied AFTER TRUNCATE ON files
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_usage_reset();

-- What is stored today.
INSERT INTO tenant_usage (tenant_id, stored_bytes)
SELECT v.tenant_id, sum(v.size_bytes)
  FROM file_versions v JOIN files f ON f.tenant_id = v.tenant_id AND f.id = v.file_id
 WHERE NOT f.purged AND chronicle_version_stored(v.status)
 GROUP BY v.tenant_id
ON CONFLICT (tenant_id) DO UPDATE SET stored_bytes = excluded.stored_bytes;
