-- The worker's dedup lookup wants the earliest completed version of a tenant with given
-- bytes (ORDER BY created_at, file_id, version_number LIMIT 1). Keyed on (tenant_id,
-- sha256) alone, the index handed over every copy of those bytes to be sorted: a tenant
-- uploading the same file again and again paid one more row (and one file lookup) per
-- earlier copy, on every upload. Keyed in the lookup's order, the scan stops at the
-- first copy whose file is not purged. The analytics views that read (tenant_id,
-- sha256, file_id, size_bytes) from it index-only still can: every column they read is
-- in it.
DROP INDEX IF EXISTS file_versions_dedup;
CREATE INDEX file_versions_dedup
    ON file_versions (tenant_id, sha256, created_at, file_id, version_number)
    INCLUDE (size_bytes)
    WHERE status = 'completed';
