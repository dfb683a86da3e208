-- Sharing (docs/sharing.md).

-- file_grants: who a file is shared with, for `GET /v1/files?shared_with_me=true`. A read
-- table of the files projector (FileShared / FileUnshared). Access checks never read it:
-- they decide from the log, so a revocation is not delayed by the projection.
CREATE TABLE file_grants (
    tenant_id  uuid        NOT NULL,
    file_id    uuid        NOT NULL,
    grantee    text        NOT NULL,  -- 'user:<uuid>' or 'role:<name>'
    user_id    uuid,                  -- set for a grant to a user
    role       text,                  -- set for a grant to a role
    access     text        NOT NULL CHECK (access IN ('viewer', 'editor')),
    granted_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, file_id, grantee),
    CHECK ((user_id IS NULL) <> (role IS NULL))
);
-- "Files shared with me" (or with my role).
CREATE INDEX file_grants_user ON file_grants (tenant_id, user_id, file_id) WHERE user_id IS NOT NULL;
CREATE INDEX file_grants_role ON file_grants (tenant_id, role, file_id) WHERE role IS NOT NULL;
SELECT chronicle_protect_read_table('file_grants');
-- Who shared what with whom is tenant data like file_tags: analysts read it.
SELECT chronicle_analyst_readable('file_grants');

-- link_tokens: how a link's token finds its file. The link itself (expiry, password,
-- limit, revocation) is decided from the file's events; this table holds what the log
-- must not: the lookup from the token's hash to the tenant and file (a link request
-- carries no tenant), and the download counter, which changes on every use and is
-- bumped atomically against the limit. Not a projection: written by the API when the
-- link is created, never rebuilt. No row-level security: the API finds a row only by
-- the SHA-256 of a 256-bit random token, or by a link id read from the caller's own
-- tenant's log. Not readable by analysts (token hashes).
CREATE TABLE link_tokens (
    token_sha256 text        PRIMARY KEY,
    tenant_id    uuid        NOT NULL,
    file_id      uuid        NOT NULL,
    link_id      uuid        NOT NULL UNIQUE,
    downloads    bigint      NOT NULL DEFAULT 0 CHECK (downloads >= 0),
    created_at   timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON link_tokens FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON link_tokens TO chronicle_app;
GRANT SELECT ON link_tokens TO chronicle_worker;
