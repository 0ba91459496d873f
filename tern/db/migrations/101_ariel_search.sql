-- ARIEL search service: enhancement columns, a search vector that also covers summary and keywords,
-- trigram index on titles, pgvector, the embedding-model registry and the ingestion-runs table.
CREATE EXTENSION IF NOT EXISTS vector;

ALTER TABLE ariel_entries
    ADD COLUMN IF NOT EXISTS content_hash text GENERATED ALWAYS AS (md5(title || E'\n' || raw_text)) STORED,
    ADD COLUMN IF NOT EXISTS summary_hash text,          -- content_hash the summary/keywords were made from
    ADD COLUMN IF NOT EXISTS enhancement_error text NOT NULL DEFAULT '',
    ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();

-- Rebuild the weighted vector: title A, text B, tags + keywords + summary C.
DROP INDEX IF EXISTS ariel_entries_search;
ALTER TABLE ariel_entries DROP COLUMN IF EXISTS search;
ALTER TABLE ariel_entries ADD COLUMN search tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
    setweight(to_tsvector('english', coalesce(raw_text, '')), 'B') ||
    setweight(to_tsvector('english', ariel_tags_text(tags) || ' ' || ariel_tags_text(keywords) || ' '
                                      || coalesce(summary, '')), 'C')
) STORED;
CREATE INDEX IF NOT EXISTS ariel_entries_search ON ariel_entries USING gin (search);
CREATE INDEX IF NOT EXISTS ariel_entries_title_trgm ON ariel_entries USING gin (title gin_trgm_ops);
CREATE INDEX IF NOT EXISTS ariel_entries_source ON ariel_entries (source_system, ts);
CREATE INDEX IF NOT EXISTS ariel_entries_tags ON ariel_entries USING gin (tags);

-- One embeddings table per model (pgvector needs a fixed dimension to index), created on first use.
CREATE TABLE IF NOT EXISTS ariel_embedding_models (
    model       text PRIMARY KEY,
    dim         int NOT NULL CHECK (dim > 0),
    table_name  text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ingestion_runs (
    run_key     text PRIMARY KEY,               -- the ingestion workflow id (stable across continue-as-new)
    adapter     text NOT NULL,
    source      text NOT NULL,
    status      text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'completed', 'failed')),
    added       int NOT NULL DEFAULT 0,
    updated     int NOT NULL DEFAULT 0,
    unchanged   int NOT NULL DEFAULT 0,
    failed      int NOT NULL DEFAULT 0,
    cursor      text,
    bad_records jsonb NOT NULL DEFAULT '[]'::jsonb,  -- the first bad records: [{position, reason}]
    error       text NOT NULL DEFAULT '',
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS ingestion_runs_started ON ingestion_runs (started_at DESC);
