-- API keys (docs/api-keys.md). The keys are event-sourced (aggregate `api_key`); this is
-- their read table, for listings only: the standing of a key is read from the log on
-- every request, and the secret's hash is never copied here.
CREATE TABLE api_keys (
    tenant_id   uuid        NOT NULL,
    id          uuid        NOT NULL,
    name        text        NOT NULL,
    prefix      text        NOT NULL,  -- the key's first 12 characters, to recognise it
    role        text        NOT NULL CHECK (role IN ('user', 'admin', 'auditor')),
    scopes      text[],                -- NULL: every right of the role
    created_by  uuid        NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz,
    revoked_at  timestamptz,
    PRIMARY KEY (tenant_id, id)
);
-- "The tenant's keys, newest first".
CREATE INDEX api_keys_tenant_created ON api_keys (tenant_id, created_at DESC, id DESC);
SELECT chronicle_protect_read_table('api_keys');

-- When each key was last used: operational, not history (one event per request would
-- bloat the log), written by the API at most once a minute per key. Like credentials it
-- has no row-level security: the API writes it for the key it just verified, before any
-- tenant is set, and every statement names the tenant.
CREATE TABLE api_key_usage (
    tenant_id    uuid        NOT NULL,
    key_id       uuid        NOT NULL,
    last_used_at timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, key_id)
);
REVOKE ALL ON api_key_usage FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON api_key_usage TO chronicle_app;
GRANT SELECT, DELETE ON api_key_usage TO chronicle_worker;

-- An API key acting as itself is an actor of its own kind (`key:<key id>`).
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_actor_type_check;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_actor_type_check
    CHECK (actor_type IN ('user', 'system', 'worker', 'api_key'));
