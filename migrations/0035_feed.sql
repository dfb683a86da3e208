-- The tenant-wide event feed (GET /v1/feed, docs/feed.md) reads one tenant's events in
-- catch-up order, (transaction_id, global_position), from a cursor. events_catch_up has
-- that order for all tenants together, so a feed page of a quiet tenant would walk
-- every other tenant's events; this index walks only the caller's.
CREATE INDEX events_feed ON events (tenant_id, transaction_id, global_position);
