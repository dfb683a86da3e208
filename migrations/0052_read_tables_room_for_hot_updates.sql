-- Room on each page for a row's next versions, on the read tables whose rows are updated
-- right after they are inserted and whose updated columns no index covers.
--
-- Why: a file's row is updated about three times in its first second (its current
-- version and size, then `updated_at` with its latest version and status, once on upload
-- and once on completion); a stream head on every commit of its stream; a notification
-- recipient when its latest version changes. An update can be HOT (heap-only: the new
-- row version goes on the same page and no index gets a new entry) only when that page
-- has room. At the default fillfactor of 100 a page filled by inserts has none, so in
-- `chronicle bench upload --small-only` 96 % of the updates of `files` were not HOT, and
-- each added entries to all six of its indexes, the trigram GIN index among them.
-- `file_versions` and `jobs` are left as they are: their status is indexed, so their
-- status changes can never be HOT.
--
-- Applies to pages written from now on; existing full pages keep their layout until a
-- rewrite (VACUUM FULL, CLUSTER), which is not needed for correctness.
ALTER TABLE files SET (fillfactor = 70);
ALTER TABLE stream_heads SET (fillfactor = 70);
ALTER TABLE notification_recipients SET (fillfactor = 70);
