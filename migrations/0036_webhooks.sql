-- Webhooks (docs/webhooks.md).

-- Endpoints: the `webhooks` projector's read table, from webhook_endpoint events.
CREATE TABLE webhook_endpoints (
    tenant_id   uuid        NOT NULL,
    id          uuid        NOT NULL,
    url         text        NOT NULL,
    event_types text[]      NOT NULL,  -- event types delivered; '*' is every type
    enabled     boolean     NOT NULL,
    disabled_reason text,              -- why it was disabled last (automatic or by an admin)
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
SELECT chronicle_protect_read_table('webhook_endpoints'::regclass);

-- The signing secrets, kept out of the event log (which auditors export). Written by the
-- API when an endpoint is created, read by the dispatcher; every statement names the
-- tenant. Deleted with the endpoint.
CREATE TABLE webhook_secrets (
    tenant_id   uuid NOT NULL,
    endpoint_id uuid NOT NULL,
    secret      text NOT NULL,   -- whsec_<base64>
    PRIMARY KEY (tenant_id, endpoint_id)
);
REVOKE ALL ON webhook_secrets FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON webhook_secrets TO chronicle_app;
GRANT SELECT ON webhook_secrets TO chronicle_worker;

-- One row per (endpoint, event) to deliver: inserted by the `webhooks` projector in the
-- batch that reads the event (so exactly once), then the dispatcher's state. Operational
-- data, not history: attempts are not events (a delivery would otherwise cause events
-- that cause deliveries).
CREATE TABLE webhook_deliveries (
    tenant_id        uuid        NOT NULL,
    id               uuid        NOT NULL,  -- v5(endpoint, global_position): the webhook-id
    endpoint_id      uuid        NOT NULL,
    transaction_id   xid8        NOT NULL,  -- the event's catch-up position: the order of
    global_position  bigint      NOT NULL,  -- delivery per endpoint
    event_type       text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'delivered')),
    attempts         integer     NOT NULL DEFAULT 0,
    failures         integer     NOT NULL DEFAULT 0,  -- failed attempts in a row: the
                                                      -- endpoint's run (only its head fails)
    next_attempt_at  timestamptz NOT NULL,
    last_attempt_at  timestamptz,
    last_status_code integer,               -- the receiver's HTTP status, if it answered
    last_error       text,                  -- why the last attempt failed (no answer, status …)
    last_latency_ms  integer,
    created_at       timestamptz NOT NULL,
    delivered_at     timestamptz,
    PRIMARY KEY (tenant_id, id)
);
SELECT chronicle_protect_read_table('webhook_deliveries'::regclass);
-- Manual redelivery: the API moves a delivery of its tenant back to pending
-- (tenant_isolation covers UPDATE too).
GRANT UPDATE (status, next_attempt_at, failures) ON webhook_deliveries TO chronicle_app;
-- Each endpoint's next delivery: its oldest pending one in catch-up order.
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries
    (endpoint_id, transaction_id, global_position) WHERE status = 'pending';
-- The delivery log, newest first.
CREATE INDEX webhook_deliveries_log ON webhook_deliveries
    (tenant_id, endpoint_id, global_position DESC);
