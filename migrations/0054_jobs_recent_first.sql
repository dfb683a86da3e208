-- The jobs listing (GET /v1/jobs, the console's Jobs page) shows a tenant's jobs most
-- recently changed first, 20 to 200 at a time. Without an index in that order every page
-- sorted all of the tenant's jobs (8-10 ms at 12,000 jobs, growing with every upload).
-- jobs_by_status cannot serve it: its key starts with the status, and under row-level
-- security an enum equality (not leakproof) is no index condition anyway. Jobs rows are
-- never HOT-updated (their status is indexed), so the extra index costs one entry per
-- status change.
CREATE INDEX IF NOT EXISTS jobs_recent ON jobs (tenant_id, updated_at DESC, id DESC);
