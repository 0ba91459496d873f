-- Chat approval bridges (tern/chat/store.py).
-- chat_requests: the outbox. The ApprovalGate's notify_approvers activity inserts one row per approval request
-- (idempotent by request_id) and NOTIFYs channel tern_chat_requests, so a bridge learns of every request even
-- when it was down at the time (it reads the rows it has no card for).
CREATE TABLE IF NOT EXISTS chat_requests (
    request_id   text PRIMARY KEY,
    run_id       text NOT NULL,          -- the workflow id that waits (an agent run or its python step)
    kind         text NOT NULL,
    request      jsonb NOT NULL,         -- tern.models.ApprovalRequest
    created_at   timestamptz NOT NULL DEFAULT now()
);
-- chat_cards: one card per (platform, request); the row is the claim that keeps two bridge instances from
-- posting the same card twice. A claim without a message after its lease may be taken over.
CREATE TABLE IF NOT EXISTS chat_cards (
    platform     text NOT NULL,
    request_id   text NOT NULL,
    owner        text NOT NULL,          -- bridge instance that claimed the card
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    room_id      text,
    message_id   text,                   -- platform id of the posted card (Matrix event id, Slack ts)
    state        text NOT NULL DEFAULT 'claimed',  -- claimed | open | closed
    outcome      text NOT NULL DEFAULT '',
    PRIMARY KEY (platform, request_id)
);
CREATE INDEX IF NOT EXISTS chat_cards_message ON chat_cards (platform, message_id);
-- webhook_uses: a signed webhook decision is single use per request and key (a replayed or repeated post for
-- the same request is refused before anything is sent).
CREATE TABLE IF NOT EXISTS webhook_uses (
    request_id   text NOT NULL,
    key_id       text NOT NULL,
    used_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (request_id, key_id)
);
