-- Resumable uploads (tus, issue 6): the read side of the Upload aggregate.

-- uploads: one row per tus upload, kept by the `uploads` projector. The aggregate is the
-- truth for offsets (every PATCH decides on it); this table serves what needs a query
-- across uploads: the expiry job (unfinished uploads past expires_at) and the temp
-- sweeper (an unfinished upload's bytes are not an orphan, however old).
CREATE TABLE uploads (
    tenant_id   uuid        NOT NULL,
    id          uuid        NOT NULL,
    owner_id    uuid        NOT NULL,
    file_id     uuid        NOT NULL,   -- the file the bytes become (new or existing)
    temp_key    text        NOT NULL,
    length      bigint,                 -- NULL while deferred (creation-defer-length)
    "offset"    bigint      NOT NULL DEFAULT 0,
    state       text        NOT NULL CHECK (state IN ('in_progress', 'completed', 'expired', 'terminated')),
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    version_number integer,             -- set on completion
    PRIMARY KEY (tenant_id, id)
);
-- The expiry job's scan: unfinished uploads by deadline.
CREATE INDEX uploads_expiring ON uploads (expires_at) WHERE state = 'in_progress';
-- The temp sweeper's check of one key.
CREATE INDEX uploads_by_temp_key ON uploads (tenant_id, temp_key) WHERE state = 'in_progress';

SELECT chronicle_protect_read_table('uploads'::regclass);
