-- The files read API (files issue, "Read side"): what its queries need beyond 0007.

-- `GET /v1/files?status=` filters on the status of a file's *latest* version (the one a
-- user just uploaded), which 0007 only has in file_versions. The files projector keeps
-- these two columns in step with every version event.
ALTER TABLE files
    ADD COLUMN latest_version integer,      -- highest version number; NULL before the first upload
    ADD COLUMN latest_status  file_status;  -- that version's status

-- Listing order is `created_at DESC, id DESC` (cursor paging). 0007's indexes end in
-- `id` ascending, which cannot serve that order, and lack `is_deleted`, an equality
-- filter of every listing (live files, or with ?deleted=true only deleted ones).
-- Equality columns first, the sort last; these replace 0007's two listing indexes.
DROP INDEX IF EXISTS files_owner_newest;
DROP INDEX IF EXISTS files_tenant_newest;
CREATE INDEX files_owner_listing ON files (tenant_id, owner_id, is_deleted, created_at DESC, id DESC);
CREATE INDEX files_tenant_listing ON files (tenant_id, is_deleted, created_at DESC, id DESC);

-- Backfill rows projected before this migration. Row-level security is forced on
-- `files` (the owner sees nothing), so run it as the projector role, which may write
-- every tenant's rows; back to the owner before sqlx records the migration.
SET LOCAL ROLE chronicle_worker;
UPDATE files f
   SET latest_version = v.version_number, latest_status = v.status
  FROM (SELECT DISTINCT ON (tenant_id, file_id) tenant_id, file_id, version_number, status
          FROM file_versions
         ORDER BY tenant_id, file_id, version_number DESC) v
 WHERE f.tenant_id = v.tenant_id AND f.id = v.file_id;
RESET ROLE;
