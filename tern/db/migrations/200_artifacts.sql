-- Artifacts: binary outputs of sandboxed analysis code (figures as PNG), stored once per run, step and
-- content, so that workflow history carries only the reference (id). Append-only.
CREATE TABLE IF NOT EXISTS artifacts (
    id          text PRIMARY KEY,            -- 'art_' + 32 hex digits, derived from run, step and content
    run_id      text NOT NULL,
    step_id     text NOT NULL,
    name        text NOT NULL DEFAULT '',    -- figure label or file name
    media_type  text NOT NULL DEFAULT 'image/png',
    sha256      text NOT NULL,               -- of content, hex
    size_bytes  integer NOT NULL,
    content     bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS artifacts_run ON artifacts (run_id, step_id);
