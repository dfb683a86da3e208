-- Projector checkpoints. A projector has read every event up to and including
-- (last_transaction_id, last_position) in catch-up order. The row is locked
-- FOR UPDATE for the duration of a batch: that lock is the lease which makes one
-- instance at a time run a projector, released automatically if that instance dies.
CREATE TABLE projector_checkpoints (
    name                text        PRIMARY KEY,
    last_transaction_id xid8        NOT NULL DEFAULT '0',
    last_position       bigint      NOT NULL DEFAULT 0,
    events_processed    bigint      NOT NULL DEFAULT 0,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON projector_checkpoints FROM PUBLIC;
GRANT SELECT ON projector_checkpoints TO chronicle_app;
GRANT SELECT, INSERT, UPDATE ON projector_checkpoints TO chronicle_worker;

-- audit_logs: every event, who did what to what (seed 004, keyed for the event store).
CREATE TABLE audit_logs (
    id             bigint      PRIMARY KEY, -- the event's global_position
    tenant_id      uuid        NOT NULL,
    actor          text        NOT NULL,  -- user id, or 'system:<component>'
    actor_user_id  uuid,                  -- set when the actor is a user
    actor_type     text        NOT NULL CHECK (actor_type IN ('user', 'system', 'worker')),
    action         text        NOT NULL,  -- e.g. 'file.renamed'
    target_type    text        NOT NULL,  -- aggregate type
    target_id      text        NOT NULL,  -- aggregate id
    sequence       bigint      NOT NULL,
    details        jsonb       NOT NULL,
    request_id     text,
    correlation_id text,
    created_at     timestamptz NOT NULL
);
-- "A tenant's log, newest first" with cursor paging. Further indexes come with the
-- queries that need them: each one costs projection throughput (docs/benchmarks.md).
CREATE INDEX audit_logs_tenant_time ON audit_logs (tenant_id, created_at DESC, id DESC);

-- stream_heads: the head of every stream's hash chain (what signed checkpoints sign).
CREATE TABLE stream_heads (
    tenant_id      uuid        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    last_sequence  bigint      NOT NULL,
    last_hash      text        NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, aggregate_type, aggregate_id)
);

-- Row-level security on every read table: the API sees only the tenant set with
-- SET LOCAL app.tenant_id; the worker role (projectors) writes for all tenants.
-- FORCE makes it apply to the table owner too.
-- Every read table gets the same protection; new read tables call this function.
CREATE FUNCTION chronicle_protect_read_table(t regclass) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
  EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
  EXECUTE format($p$CREATE POLICY tenant_isolation ON %s TO chronicle_app
      USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)$p$, t);
  EXECUTE format('CREATE POLICY projector_writes ON %s TO chronicle_worker USING (true) WITH CHECK (true)', t);
  EXECUTE format('REVOKE ALL ON %s FROM PUBLIC', t);
  EXECUTE format('GRANT SELECT ON %s TO chronicle_app', t);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON %s TO chronicle_worker', t);
END
$$;

SELECT chronicle_protect_read_table(t) FROM unnest(ARRAY['audit_logs', 'stream_heads']::regclass[]) AS t;
