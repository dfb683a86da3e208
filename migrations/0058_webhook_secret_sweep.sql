-- Orphaned webhook secrets (docs/webhooks.md, "Secrets nobody uses").
--
-- Creating an endpoint stores its secret, then commits the endpoint; deleting one commits
-- the deletion, then deletes the secret. A crash between the two steps (or a failed
-- delete) leaves a secret that no endpoint will ever use, kept at rest for nothing. The
-- worker's sweep removes such rows; `created_at` lets it tell a secret whose endpoint
-- was never created from one whose endpoint is being created right now.
ALTER TABLE webhook_secrets ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();
GRANT DELETE ON webhook_secrets TO chronicle_worker;
