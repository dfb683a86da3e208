-- Search (`GET /v1/files?q=`): a case-insensitive substring of a file's display name or
-- of one of its tags, served by trigram GIN indexes. pg_trgm ships with PostgreSQL
-- (contrib) and is a trusted extension, so the database owner who runs the migrations
-- may create it without being a superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;

CREATE INDEX files_name_trgm ON files USING gin (lower(display_name) gin_trgm_ops);
CREATE INDEX file_tags_trgm ON file_tags USING gin (lower(tag) gin_trgm_ops);
