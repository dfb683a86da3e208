-- Files: the read side of the File aggregate (files issue, first slice).
-- Seed 004's closed sets as Postgres enums, created idempotently.
DO $$ BEGIN
  CREATE TYPE file_status AS ENUM ('uploaded', 'queued', 'processing', 'virus_failed', 'duplicate', 'failed', 'completed');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;
DO $$ BEGIN
  CREATE TYPE job_status AS ENUM ('queued', 'in_progress', 'succeeded', 'failed', 'dead_letter');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

-- No foreign keys between read tables: a rebuild refills them one by one.
CREATE TABLE files (
    tenant_id       uuid        NOT NULL,
    id              uuid        NOT NULL,
    owner_id        uuid        NOT NULL,
    display_name    text        NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    is_deleted      boolean     NOT NULL DEFAULT false,
    deleted_at      timestamptz,
    purged          boolean     NOT NULL DEFAULT false,
    current_version integer,             -- newest completed version; NULL until one completes
    size_bytes      bigint,              -- of current_version
    PRIMARY KEY (tenant_id, id)
);
-- "My files, newest first" and the tenant's listing, both with (created_at, id) cursors.
CREATE INDEX files_owner_newest ON files (tenant_id, owner_id, created_at DESC, id);
CREATE INDEX files_tenant_newest ON files (tenant_id, created_at DESC, id);
-- Case-insensitive name prefix: lower(display_name) LIKE 'abc%'.
CREATE INDEX files_name_prefix ON files (tenant_id, lower(display_name) text_pattern_ops);

CREATE TABLE file_versions (
    tenant_id                uuid        NOT NULL,
    file_id                  uuid        NOT NULL,
    version_number           integer     NOT NULL,
    status                   file_status NOT NULL,
    filename                 text        NOT NULL,
    mime_type                text        NOT NULL,  -- declared at upload, detected when completed
    size_bytes               bigint      NOT NULL,
    sha256                   text        NOT NULL,
    storage_key              text,                  -- final blob, once completed
    temp_location            text,                  -- until the temp bytes are released
    duplicate_of_file        uuid,
    duplicate_of_version     integer,
    restored_from_version    integer,
    attempts                 integer     NOT NULL DEFAULT 0,
    last_error               text,
    created_at               timestamptz NOT NULL,
    updated_at               timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, file_id, version_number)
);
-- Dedup lookup: a completed version of the tenant with these bytes (tenant-scoped, seed 000).
CREATE INDEX file_versions_dedup ON file_versions (tenant_id, sha256) WHERE status = 'completed';

CREATE TABLE tags (
    tenant_id  uuid    NOT NULL,
    name       text    NOT NULL,
    file_count integer NOT NULL CHECK (file_count >= 0), -- live (not deleted) files; rows at 0 are removed
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE file_tags (
    tenant_id uuid NOT NULL,
    file_id   uuid NOT NULL,
    tag       text NOT NULL,
    PRIMARY KEY (tenant_id, file_id, tag)
);
-- "Files with tag X".
CREATE INDEX file_tags_by_tag ON file_tags (tenant_id, tag, file_id);

SELECT chronicle_protect_read_table(t)
  FROM unnest(ARRAY['files', 'file_versions', 'tags', 'file_tags']::regclass[]) AS t;
