-- Idempotency keys (seed 002). Not a read table: an infrastructure record of which
-- requests were already executed, scoped by caller ("<tenant>:<user>" or "anonymous").
-- `state` moves in_progress → committed (in the same transaction as the command's
-- events) → completed (response stored). Rows older than 24 hours are ignored and
-- replaced.
CREATE TABLE idempotency_keys (
    scope         text        NOT NULL,
    key           text        NOT NULL,
    fingerprint   text        NOT NULL,  -- SHA-256 of method, path and body
    state         text        NOT NULL CHECK (state IN ('in_progress', 'committed', 'completed')),
    status        integer,
    content_type  text,
    body          bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    locked_until  timestamptz NOT NULL DEFAULT now() + interval '60 seconds',
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
REVOKE ALL ON idempotency_keys FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO chronicle_app, chronicle_worker;
