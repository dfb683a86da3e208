-- Notifications and live version-status events (issue 4, section 5). Maintained by the
-- `notifications` projector from file and notification events only: ids are derived
-- from the event's global position, times are the events' recorded_at, and `seq` is a
-- per-recipient counter in catch-up order — so a rebuild reproduces every row.

-- Who receives a file's notifications, and the name to show. Filled from FileCreated
-- and Renamed; never read from another projector's tables (their progress differs).
CREATE TABLE notification_recipients (
    tenant_id    uuid NOT NULL,
    file_id      uuid NOT NULL,
    owner_id     uuid NOT NULL,
    display_name text NOT NULL,
    PRIMARY KEY (tenant_id, file_id)
);

-- One row per version status change. Rows whose kind is not 'version_status' are the
-- notifications GET /v1/notifications lists; every row is streamed by GET /v1/events.
CREATE TABLE notifications (
    tenant_id       uuid        NOT NULL,
    id              uuid        NOT NULL,  -- derived: hash(tenant, global_position)
    recipient_id    uuid        NOT NULL,
    seq             bigint      NOT NULL,  -- 1, 2, 3 … per recipient, in catch-up order
    transaction_id  xid8        NOT NULL,  -- (transaction_id, global_position) of the event:
    global_position bigint      NOT NULL,  -- the catch-up order and the SSE id
    kind            text        NOT NULL CHECK (kind IN
                        ('version_completed', 'duplicate', 'virus_found', 'processing_failed', 'version_status')),
    file_id         uuid        NOT NULL,
    file_name       text        NOT NULL,  -- the file's display name when the event happened
    version_number  integer     NOT NULL,
    status          file_status NOT NULL,  -- the version's status after the event
    details         jsonb       NOT NULL,  -- kind-specific (signature, duplicate_of_version …)
    created_at      timestamptz NOT NULL,  -- the event's recorded_at
    read_at         timestamptz,           -- the NotificationRead event's recorded_at
    PRIMARY KEY (tenant_id, id),
    -- Gap detection for live clients and "newest first" cursors.
    UNIQUE (tenant_id, recipient_id, seq)
);
-- SSE resume: "my rows after (transaction_id, global_position)".
CREATE INDEX notifications_resume ON notifications (tenant_id, recipient_id, transaction_id, global_position);
-- "My notifications, newest first" (status-only rows are not listed).
CREATE INDEX notifications_listing ON notifications (tenant_id, recipient_id, seq DESC)
    WHERE kind <> 'version_status';

SELECT chronicle_protect_read_table(t)
  FROM unnest(ARRAY['notification_recipients', 'notifications']::regclass[]) AS t;
