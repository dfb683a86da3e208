-- Purge, blob garbage collection and retention (files issue, "Read side").

-- blob_references: one row per version that holds (or is about to hold) a blob, i.e.
-- the tenant's bytes `sha256`. Kept by the `blob_refs` projector from File events:
-- an upload is a reference from the moment it is accepted (so the GC never deletes
-- bytes an upload is about to finalize onto); a version that settles without bytes
-- (virus, duplicate of its own file, dead letter), a pruned version and every version
-- of a purged file release theirs at the event's time. A blob is garbage when every
-- reference of its (tenant, sha256) is released, the last one longer ago than
-- BLOB_GC_GRACE_SECS.
CREATE TABLE blob_references (
    tenant_id      uuid        NOT NULL,
    file_id        uuid        NOT NULL,
    version_number integer     NOT NULL,
    sha256         text        NOT NULL,
    released_at    timestamptz,          -- NULL while the version references the blob
    PRIMARY KEY (tenant_id, file_id, version_number)
);
-- The GC's re-check: every reference of one blob.
CREATE INDEX blob_references_by_blob ON blob_references (tenant_id, sha256);
-- The GC's candidates: blobs with at least one released reference.
CREATE INDEX blob_references_released ON blob_references (released_at) WHERE released_at IS NOT NULL;

-- blob_collections: when the GC last deleted a blob (and its variants). Not a
-- projection (the GC writes it): a blob released again after a later upload of the
-- same bytes is collected again because its last release is newer than collected_at.
CREATE TABLE blob_collections (
    tenant_id    uuid        NOT NULL,
    sha256       text        NOT NULL,
    collected_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, sha256)
);

SELECT chronicle_protect_read_table(t)
  FROM unnest(ARRAY['blob_references', 'blob_collections']::regclass[]) AS t;
