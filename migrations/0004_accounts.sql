-- Accounts. Tenants, users and sessions are event-sourced; these are their read tables.

-- Credentials are secrets, not history: kept out of the immutable event log (a leaked
-- export or backup of the log holds no password hashes) and out of every read table.
-- Only the auth endpoints touch this table. Email is unique across all tenants because
-- login finds the tenant by email.
CREATE TABLE credentials (
    user_id       uuid        PRIMARY KEY,
    tenant_id     uuid        NOT NULL,
    email         text        NOT NULL UNIQUE CHECK (email = lower(email)),
    password_hash text        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON credentials FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON credentials TO chronicle_app;

CREATE TABLE tenants (
    tenant_id  uuid        PRIMARY KEY,  -- the tenant's own id, named for RLS
    name       text        NOT NULL,
    created_by uuid        NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE users (
    tenant_id  uuid        NOT NULL,
    id         uuid        NOT NULL,
    handle     text        NOT NULL,
    name       text        NOT NULL,
    email      text        NOT NULL,
    role       text        NOT NULL CHECK (role IN ('user', 'admin', 'auditor', 'system_worker')),
    is_banned  boolean     NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, handle)
);

CREATE TABLE sessions (
    tenant_id     uuid        NOT NULL,
    id            uuid        NOT NULL,
    user_id       uuid        NOT NULL,
    user_agent    text        NOT NULL,
    ip_address    text        NOT NULL,
    created_at    timestamptz NOT NULL,
    last_seen_at  timestamptz NOT NULL,  -- last login or refresh
    revoked_at    timestamptz,
    revoke_reason text,
    PRIMARY KEY (tenant_id, id)
);
-- "My sessions, newest first".
CREATE INDEX sessions_user ON sessions (tenant_id, user_id, created_at DESC);

SELECT chronicle_protect_read_table(t) FROM unnest(ARRAY['tenants', 'users', 'sessions']::regclass[]) AS t;
