-- Crypto-shredding (docs/architecture.md, "Event versioning and erasure"): one data key
-- per user, outside the immutable event log. Personal fields of events are sealed with
-- it (AES-256-GCM); destroying it makes them unreadable everywhere — log, exports,
-- backups of the log — while the hash chain, which covers the ciphertext, stays valid.
--
-- Erasure sets data_key to NULL and keeps the row as a tombstone, so no new key can be
-- created for an erased user (a login racing the erasure fails instead of sealing fresh
-- data with a fresh key) and pre-v2 plaintext fields of the user read as erased.
-- The old row version holding the key survives until VACUUM, and in backups and WAL
-- archives until they expire: erasure is complete only when those have rotated.
CREATE TABLE personal_data_keys (
    tenant_id  uuid        NOT NULL,
    user_id    uuid        NOT NULL,
    data_key   bytea       CHECK (octet_length(data_key) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at  timestamptz,
    PRIMARY KEY (tenant_id, user_id),
    CHECK ((data_key IS NULL) = (erased_at IS NOT NULL))
);

-- Keys are secrets, not read data: no RLS policy to widen, no read-only role (analyst)
-- and nobody by default. The API seals and erases; projectors only open.
REVOKE ALL ON personal_data_keys FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON personal_data_keys TO chronicle_app;
GRANT SELECT ON personal_data_keys TO chronicle_worker;

-- Erasure removes the user's credentials (they can no longer log in).
GRANT DELETE ON credentials TO chronicle_app;
