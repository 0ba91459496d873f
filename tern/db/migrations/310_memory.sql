-- Operator memory (tern.memory): notes a user asked the agent to remember, one row each, visible to that user
-- only. Searchable by keyword (full text) and, when an embedding provider is configured, by meaning (pgvector;
-- the column has no fixed dimension, so rows are compared only with vectors of the same embedding_model).
-- Deletion is a real DELETE; the audit table keeps who deleted what and when.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS memories (
    id               bigserial PRIMARY KEY,
    user_name        text NOT NULL,
    text             text NOT NULL CHECK (length(text) BETWEEN 1 AND 4000),
    source           text NOT NULL DEFAULT '',         -- 'cli', or the run and step that stored it
    idem_key         text UNIQUE,                      -- run/step of an agent run: a retried activity adds once
    created_at       timestamptz NOT NULL DEFAULT now(),
    embedding_model  text,
    embedding        vector,
    search           tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED
);
CREATE INDEX IF NOT EXISTS memories_user ON memories (user_name, created_at DESC);
CREATE INDEX IF NOT EXISTS memories_search ON memories USING gin (search);
