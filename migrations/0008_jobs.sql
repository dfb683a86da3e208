-- jobs: one processing job per uploaded version (seed 004's columns, keyed for the
-- event store: the job id is the version id). Built by the `jobs` projector from File
-- events; the Redis queue only carries work, this table is its durable record.
CREATE TABLE jobs (
    tenant_id      uuid        NOT NULL,
    id             uuid        NOT NULL,
    file_id        uuid        NOT NULL,
    version_number integer     NOT NULL,
    job_type       text        NOT NULL,   -- 'process_version'
    payload        jsonb       NOT NULL,   -- the queue message
    attempts       integer     NOT NULL DEFAULT 0,
    max_attempts   integer     NOT NULL DEFAULT 3,
    status         job_status  NOT NULL,
    last_error     text,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
-- Admin listing: "dead letters of my tenant, newest first".
CREATE INDEX jobs_by_status ON jobs (tenant_id, status, updated_at DESC, id);
-- The reconciler's scan over all tenants: only unfinished jobs, usually few.
CREATE INDEX jobs_unfinished ON jobs (updated_at) WHERE status IN ('queued', 'in_progress', 'failed');

SELECT chronicle_protect_read_table('jobs');
