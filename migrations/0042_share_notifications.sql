-- A user a file is shared with is notified (docs/sharing.md): kind 'file_shared', naming
-- the file's latest version and its status, which the notifications projector now keeps
-- per file (NULL on rows written before this migration until a rebuild: read as 0 and
-- 'uploaded').
ALTER TABLE notification_recipients
    ADD COLUMN latest_version integer,
    ADD COLUMN latest_status  file_status;

ALTER TABLE notifications DROP CONSTRAINT notifications_kind_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_kind_check CHECK (kind IN
    ('version_completed', 'duplicate', 'virus_found', 'processing_failed', 'version_status',
     'file_shared'));
