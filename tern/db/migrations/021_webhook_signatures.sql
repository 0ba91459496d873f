-- Signed webhooks are single use per signature (tern/chat/signing.py, tern/chat/store.py use_signature): the
-- SHA-256 of every accepted X-Tern-Signature is kept until its timestamp has left the replay window, and a second
-- request with the same signature is refused (the primary key decides, so two concurrent replays cannot both pass).
CREATE TABLE IF NOT EXISTS webhook_signatures (
    digest       text PRIMARY KEY,        -- hex SHA-256 of the signature header value
    key_id       text NOT NULL,
    route        text NOT NULL,           -- method and request target it was accepted on (for the audit reader)
    expires_at   timestamptz NOT NULL,    -- signing timestamp + window: after this the window refuses it anyway
    used_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_signatures_expiry ON webhook_signatures (expires_at);
