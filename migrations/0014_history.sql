-- History for auditors: signed checkpoints of every tenant's chain heads, and the
-- audit_logs indexes the history API's filters need (docs/audit.md, docs/architecture.md
-- "History, time travel and checkpoints").

-- One row per checkpoint: what was signed. `digest` is the SHA-256 of the canonical
-- encoding of ALL the tenant's heads at `taken_at` (docs/audit.md); `signature` is the
-- Ed25519 signature of the 32 digest bytes by the key whose public half is `public_key`.
CREATE TABLE checkpoints (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    taken_at    timestamptz NOT NULL,
    streams     bigint      NOT NULL CHECK (streams >= 0),
    digest      text        NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
    signature   text        NOT NULL,  -- base64, 64 bytes
    public_key  text        NOT NULL   -- base64, 32 bytes
);
-- "The tenant's newest checkpoint".
CREATE INDEX checkpoints_tenant_newest ON checkpoints (tenant_id, id DESC);

-- The heads a checkpoint covers, stored only where they changed since the tenant's
-- previous checkpoint (so a checkpoint costs what changed, not the whole tenant). The
-- full set at checkpoint C is, per stream, the row with the greatest checkpoint_id <= C.
CREATE TABLE checkpoint_heads (
    checkpoint_id  bigint NOT NULL REFERENCES checkpoints (id),
    tenant_id      uuid   NOT NULL,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_sequence  bigint NOT NULL CHECK (last_sequence >= 1),
    last_hash      text   NOT NULL,
    PRIMARY KEY (tenant_id, aggregate_type, aggregate_id, checkpoint_id)
);

-- Checkpoints are evidence: append-only like the events themselves.
CREATE TRIGGER checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON checkpoints
  FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER checkpoints_no_truncate BEFORE TRUNCATE ON checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();
CREATE TRIGGER checkpoint_heads_no_update_delete BEFORE UPDATE OR DELETE ON checkpoint_heads
  FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER checkpoint_heads_no_truncate BEFORE TRUNCATE ON checkpoint_heads
  FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- Tenant-scoped like every read table: the API (GET /v1/audit/verify) reads one
-- tenant's checkpoints under RLS; the worker writes them for all tenants.
SELECT chronicle_protect_read_table(t)
  FROM unnest(ARRAY['checkpoints', 'checkpoint_heads']::regclass[]) AS t;

-- GET /v1/audit filters: "what happened to this target" and "what did this actor do",
-- newest first with keyset paging (the unfiltered and action-filtered queries use
-- audit_logs_tenant_time from 0003).
CREATE INDEX audit_logs_tenant_target ON audit_logs
    (tenant_id, target_type, target_id, created_at DESC, id DESC);
CREATE INDEX audit_logs_tenant_actor ON audit_logs
    (tenant_id, actor, created_at DESC, id DESC);
