-- Events a projector could not apply (docs/projections.md, "Failures and parking").
-- `failing`: the projector stopped just before this event and retries it with backoff
-- (at most one such row per projector: its next event). `parked`: the retries are
-- spent; the checkpoint moved past the event, which waits here, visible in status,
-- /metrics and /health/ready, until `chronicle projections retry-parked` applies it or
-- a rebuild replaces the projection. Keyed by position: an event fails at most once
-- per projector at a time.
CREATE TABLE IF NOT EXISTS projector_failures (
    projector       text        NOT NULL,
    global_position bigint      NOT NULL,
    transaction_id  xid8        NOT NULL, -- with global_position: finds the event by index
    tenant_id       uuid        NOT NULL,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    event_type      text        NOT NULL,
    error           text        NOT NULL, -- the last error, truncated
    attempts        integer     NOT NULL CHECK (attempts >= 1),
    first_failed_at timestamptz NOT NULL,
    last_failed_at  timestamptz NOT NULL,
    next_retry_at   timestamptz,          -- NULL once parked
    state           text        NOT NULL CHECK (state IN ('failing', 'parked')),
    PRIMARY KEY (projector, global_position)
);

-- Operational data across tenants, like projector_checkpoints (hence no tenant RLS): the
-- worker and the CLI (worker role) write it; the API role sees only the counts per
-- projector (/metrics, /health/ready), not other tenants' ids or error texts.
REVOKE ALL ON projector_failures FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON projector_failures TO chronicle_worker;

CREATE OR REPLACE VIEW projector_failure_counts AS
SELECT projector,
       count(*) FILTER (WHERE state = 'parked')  AS parked_events,
       count(*) FILTER (WHERE state = 'failing') AS failing_events
  FROM projector_failures
 GROUP BY projector;
REVOKE ALL ON projector_failure_counts FROM PUBLIC;
GRANT SELECT ON projector_failure_counts TO chronicle_app, chronicle_worker;
