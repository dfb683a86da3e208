-- The event store: postgres-es 0.5's `events` table, extended with a global order,
-- the writing transaction's id (for gap-free catch-up, see docs/projections.md),
-- the commit-side timestamp and the tenant.
CREATE TABLE events (
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         json                         NOT NULL,
    metadata        json                         NOT NULL,
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    tenant_id       uuid        NOT NULL,
    -- Streams are namespaced by tenant: one tenant's ids can neither collide with nor
    -- reveal another's.
    PRIMARY KEY (tenant_id, aggregate_type, aggregate_id, sequence)
);

-- Everything in catch-up order (docs/projections.md). global_position needs no index of
-- its own: GENERATED ALWAYS makes it unique, and every index costs each append.
CREATE INDEX events_catch_up ON events (transaction_id, global_position);
-- One tenant's history, in order.
CREATE INDEX events_tenant_history ON events (tenant_id, global_position);

-- Append-only: no role may rewrite history, not even the owner by accident.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'events are append-only (% refused)', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
  FOR EACH ROW EXECUTE FUNCTION events_append_only();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
  FOR EACH STATEMENT EXECUTE FUNCTION events_append_only();

-- Projectors are woken by a NOTIFY that the application sends after its appends commit
-- (store/event_log.rs), not by a trigger here: a NOTIFY inside the appending
-- transaction takes a cluster-wide lock held through commit, which serializes every
-- appending commit and halved insert throughput when measured (docs/projections.md).

-- Snapshots: one row per stream, replaced as the stream grows. A cache of state,
-- never a source of truth: a snapshot that no longer deserializes is rebuilt by
-- replay. last_hash lets a command continue the hash chain without the tail.
CREATE TABLE snapshots (
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    tenant_id      uuid        NOT NULL,
    last_sequence  bigint      NOT NULL CHECK (last_sequence >= 0),
    last_hash      text        NOT NULL,
    payload        json        NOT NULL,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, aggregate_type, aggregate_id)
);

-- Privileges: history can be read and appended to, never changed.
REVOKE ALL ON events, snapshots FROM PUBLIC;
GRANT SELECT, INSERT ON events TO chronicle_app, chronicle_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON snapshots TO chronicle_app, chronicle_worker;
