-- Which claim of an idempotency key owns it (src/store/idempotency.rs). A key left
-- `in_progress` past its lease is taken over by a retry; without a claim id, the first
-- request — slow, not dead — could still commit afterwards, and both would take effect.
-- Every write of a claimed key (marking it committed with the events, storing the
-- answer, freeing it) now names its claim, so the one taken over changes nothing.
-- Rows from before have no claim; they expire within 24 hours.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS claim uuid;
