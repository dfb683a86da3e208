-- The caller's role when an idempotency key was first used. A replay is served only
-- while the caller still holds that role: authorization is decided again before any
-- stored answer goes out (a demoted admin must not get an admin's answer back).
-- NULL for anonymous requests and for rows written before this migration.
ALTER TABLE idempotency_keys ADD COLUMN IF NOT EXISTS role text;
