-- How many notifications each user has not read, for the `unread_count` of
-- GET /v1/notifications (the console's badge). The listing used to count the user's
-- unread rows on every read: every completed upload leaves one, so an API client that had
-- uploaded 200,000 files paid ~50 ms of scanning per inbox read, growing with each
-- upload. The listing now reads this one row.
--
-- A notification counts while its kind is listed to users (not 'version_status') and it
-- has no read_at: the condition of the count it replaces.
--
-- Kept by statement-level triggers with transition tables on notifications, like
-- tenant_usage (0055): every statement that changes what counts -- the projector's
-- batched inserts and read marks, a rebuild's TRUNCATE and refill, an operator's repair
-- -- moves the counters by exactly its own difference, once per recipient per statement.
-- One function for every operation: the old and new rows of the statement, +1 for each
-- new row that counts and -1 for each old one. The function names public.* explicitly:
-- during a rebuild, temporary tables of the same names shadow the live ones.
CREATE TABLE IF NOT EXISTS notification_unread (
    tenant_id    uuid   NOT NULL,
    recipient_id uuid   NOT NULL,
    unread       bigint NOT NULL,
    PRIMARY KEY (tenant_id, recipient_id)
) WITH (fillfactor = 70); -- updated with each batch that notifies the user: room for HOT
SELECT chronicle_protect_read_table('notification_unread');
SELECT chronicle_analyst_readable('notification_unread');

-- Whether a notification counts as unread.
CREATE OR REPLACE FUNCTION chronicle_notification_unread(kind text, read_at timestamptz)
    RETURNS boolean LANGUAGE sql IMMUTABLE AS $$ SELECT kind <> 'version_status' AND read_at IS NULL $$;

CREATE OR REPLACE FUNCTION chronicle_unread_of_notifications() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO public.notification_unread AS u (tenant_id, recipient_id, unread)
    SELECT n.tenant_id, n.recipient_id, count(*) FROM new_notifications n
     WHERE chronicle_notification_unread(n.kind, n.read_at)
     GROUP BY 1, 2
    ON CONFLICT (tenant_id, recipient_id) DO UPDATE SET unread = u.unread + excluded.unread;
  ELSIF TG_OP = 'UPDATE' THEN
    -- Each side counted on its own, so an update that moves a row to another recipient
    -- is right too; recipients whose count did not change are not touched.
    INSERT INTO public.notification_unread AS u (tenant_id, recipient_id, unread)
    SELECT d.tenant_id, d.recipient_id, sum(d.change)
      FROM (SELECT n.tenant_id, n.recipient_id, 1 AS change FROM new_notifications n
             WHERE chronicle_notification_unread(n.kind, n.read_at)
            UNION ALL
            SELECT o.tenant_id, o.recipient_id, -1 FROM old_notifications o
             WHERE chronicle_notification_unread(o.kind, o.read_at)) d
     GROUP BY 1, 2
    HAVING sum(d.change) <> 0
    ON CONFLICT (tenant_id, recipient_id) DO UPDATE SET unread = u.unread + excluded.unread;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO public.notification_unread AS u (tenant_id, recipient_id, unread)
    SELECT o.tenant_id, o.recipient_id, -count(*) FROM old_notifications o
     WHERE chronicle_notification_unread(o.kind, o.read_at)
     GROUP BY 1, 2
    ON CONFLICT (tenant_id, recipient_id) DO UPDATE SET unread = u.unread + excluded.unread;
  ELSE -- TRUNCATE (a rebuild empties the table, then refills it): nothing is unread.
    DELETE FROM public.notification_unread;
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS unread_notifications_inserted ON notifications;
CREATE TRIGGER unread_notifications_inserted AFTER INSERT ON notifications
    REFERENCING NEW TABLE AS new_notifications
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_unread_of_notifications();
DROP TRIGGER IF EXISTS unread_notifications_updated ON notifications;
CREATE TRIGGER unread_notifications_updated AFTER UPDATE ON notifications
    REFERENCING OLD TABLE AS old_notifications NEW TABLE AS new_notifications
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_unread_of_notifications();
DROP TRIGGER IF EXISTS unread_notifications_deleted ON notifications;
CREATE TRIGGER unread_notifications_deleted AFTER DELETE ON notifications
    REFERENCING OLD TABLE AS old_notifications
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_unread_of_notifications();
DROP TRIGGER IF EXISTS unread_notifications_emptied ON notifications;
CREATE TRIGGER unread_notifications_emptied AFTER TRUNCATE ON notifications
    FOR EACH STATEMENT EXECUTE FUNCTION chronicle_unread_of_notifications();

-- What is unread today. After the triggers: creating them waited for every writer of
-- notifications to finish, and this statement's snapshot sees what they wrote.
INSERT INTO notification_unread (tenant_id, recipient_id, unread)
SELECT tenant_id, recipient_id, count(*) FROM notifications
 WHERE chronicle_notification_unread(kind, read_at)
 GROUP BY 1, 2
ON CONFLICT (tenant_id, recipient_id) DO UPDATE SET unread = excluded.unread;
