-- ARIEL logbook entries, with a weighted full-text vector (title A, text B, tags C).
CREATE EXTENSION IF NOT EXISTS pg_trgm;
-- array_to_string is only STABLE; tags are plain text, so this wrapper is safe to declare IMMUTABLE.
CREATE OR REPLACE FUNCTION ariel_tags_text(text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT array_to_string($1, ' ') $$;
CREATE TABLE IF NOT EXISTS ariel_entries (
    entry_id      text PRIMARY KEY,
    source_system text NOT NULL,
    ts            timestamptz NOT NULL,
    author        text NOT NULL DEFAULT '',
    title         text NOT NULL DEFAULT '',
    raw_text      text NOT NULL DEFAULT '',
    tags          text[] NOT NULL DEFAULT '{}',
    categories    text[] NOT NULL DEFAULT '{}',
    logbook       text NOT NULL DEFAULT '',
    attachments   jsonb NOT NULL DEFAULT '[]'::jsonb,
    metadata      jsonb NOT NULL DEFAULT '{}'::jsonb,
    summary       text NOT NULL DEFAULT '',
    keywords      text[] NOT NULL DEFAULT '{}',
    updated_at    timestamptz NOT NULL DEFAULT now(),
    search        tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(raw_text, '')), 'B') ||
        setweight(to_tsvector('english', ariel_tags_text(tags)), 'C')
    ) STORED
);
CREATE INDEX IF NOT EXISTS ariel_entries_search ON ariel_entries USING gin (search);
CREATE INDEX IF NOT EXISTS ariel_entries_ts ON ariel_entries (ts);
CREATE INDEX IF NOT EXISTS ariel_entries_author ON ariel_entries (author);
CREATE INDEX IF NOT EXISTS ariel_entries_text_trgm ON ariel_entries USING gin (raw_text gin_trgm_ops);
