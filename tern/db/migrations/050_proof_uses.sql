-- Proven identity (tern/identity): each signed statement counts once. The verify_proof activity inserts a row per
-- statement it accepts; a second use of the same statement (a replayed proof) finds the row with another use_key
-- and is refused. use_key names the use (workflow, request, Update id), so a retried activity finds its own row.
CREATE TABLE IF NOT EXISTS proof_uses (
    statement_sha256 text PRIMARY KEY,
    use_key          text NOT NULL,
    workflow_id      text NOT NULL,
    request_id       text NOT NULL DEFAULT '',
    principal        text NOT NULL,
    used_at          timestamptz NOT NULL DEFAULT now()
);
