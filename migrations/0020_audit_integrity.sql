-- Audit integrity (docs/audit.md): sequences start at 1, as the chain encoding says,
-- and checkpoints form a chain of their own (each signs its predecessor's digest and a
-- counter), so deleting or reordering checkpoints breaks it.

-- 0002 allowed sequence 0; no writer ever used it. NOT VALID + VALIDATE checks the
-- existing rows without holding the strongest lock for the scan.
ALTER TABLE events DROP CONSTRAINT events_sequence_check;
ALTER TABLE events ADD CONSTRAINT events_sequence_starts_at_1 CHECK (sequence >= 1) NOT VALID;
ALTER TABLE events VALIDATE CONSTRAINT events_sequence_starts_at_1;

-- format 1: checkpoints written before the chain existed (no counter, no predecessor);
-- format 2: chained. New rows must say which (no default).
ALTER TABLE checkpoints
    ADD COLUMN format smallint NOT NULL DEFAULT 1,
    ADD COLUMN counter bigint,
    ADD COLUMN prev_digest text;
ALTER TABLE checkpoints ALTER COLUMN format DROP DEFAULT;
ALTER TABLE checkpoints ADD CONSTRAINT checkpoints_chain_link CHECK (
    (format = 1 AND counter IS NULL AND prev_digest IS NULL)
    OR (format = 2 AND counter >= 1 AND prev_digest ~ '^[0-9a-f]{64}$'));
-- One checkpoint per counter and tenant: two checkpointers cannot fork the chain.
CREATE UNIQUE INDEX checkpoints_tenant_counter ON checkpoints (tenant_id, counter);
