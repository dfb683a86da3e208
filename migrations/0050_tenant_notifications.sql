-- Tenant-level notifications (issue 14, webhooks): a webhook endpoint the dispatcher
-- disabled after a run of failures tells every admin of its tenant, in the same
-- `notifications` table (so the listing, read marks and the SSE stream with its
-- lossless resume work unchanged). Such rows name no file: the file columns are NULL
-- exactly for tenant-level kinds.
ALTER TABLE notifications
    ALTER COLUMN file_id DROP NOT NULL,
    ALTER COLUMN file_name DROP NOT NULL,
    ALTER COLUMN version_number DROP NOT NULL,
    ALTER COLUMN status DROP NOT NULL;

ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check CHECK (kind IN
    ('version_completed', 'duplicate', 'virus_found', 'processing_failed', 'version_status',
     'file_shared', 'webhook_disabled'));
ALTER TABLE notifications ADD CONSTRAINT notifications_subject_check CHECK (
    CASE WHEN kind = 'webhook_disabled'
         THEN file_id IS NULL AND file_name IS NULL AND version_number IS NULL AND status IS NULL
         ELSE file_id IS NOT NULL AND file_name IS NOT NULL AND version_number IS NOT NULL
              AND status IS NOT NULL
    END);

-- Who the tenant's admins are, as the notifications projector has seen them in the log
-- (UserRegistered/RoleChanged roles, bans, erasures): its own copy, never another
-- projector's table, whose progress differs. An erased user has no row.
CREATE TABLE notification_members (
    tenant_id uuid    NOT NULL,
    user_id   uuid    NOT NULL,
    role      text    NOT NULL,
    banned    boolean NOT NULL DEFAULT false,
    PRIMARY KEY (tenant_id, user_id)
);
-- "The admins of tenant T".
CREATE INDEX notification_members_admins ON notification_members (tenant_id)
    WHERE role = 'admin' AND NOT banned;

-- The projector's checkpoint is already past the existing user events: fill the table
-- from the whole log (latest role, latest ban state, no erased users). Events after the
-- checkpoint are applied again by the projector, in order, so every later event sees
-- the members as of its own position.
INSERT INTO notification_members (tenant_id, user_id, role, banned)
SELECT u.tenant_id, u.aggregate_id::uuid,
       (SELECT coalesce(e.payload->'RoleChanged'->>'role', e.payload->'UserRegistered'->>'role')
          FROM events e
         WHERE e.tenant_id = u.tenant_id AND e.aggregate_type = 'user'
           AND e.aggregate_id = u.aggregate_id
           AND e.event_type IN ('UserRegistered', 'RoleChanged')
         ORDER BY e.sequence DESC LIMIT 1),
       coalesce((SELECT e.event_type = 'UserBanned'
          FROM events e
         WHERE e.tenant_id = u.tenant_id AND e.aggregate_type = 'user'
           AND e.aggregate_id = u.aggregate_id
           AND e.event_type IN ('UserBanned', 'UserUnbanned')
         ORDER BY e.sequence DESC LIMIT 1), false)
  FROM (SELECT DISTINCT tenant_id, aggregate_id FROM events
         WHERE aggregate_type = 'user' AND event_type = 'UserRegistered'
           AND aggregate_id ~ '^[0-9a-fA-F-]{36}$') u
 WHERE NOT EXISTS (SELECT 1 FROM events e
                    WHERE e.tenant_id = u.tenant_id AND e.aggregate_type = 'user'
                      AND e.aggregate_id = u.aggregate_id AND e.event_type = 'UserErased');

SELECT chronicle_protect_read_table('notification_members');
