-- Channel finder: one row per control-system channel, searchable by name, aliases, description and hierarchy.
-- name_words and text_words are search words normalised in Python (tern.channels.naming.words); the
-- search vector uses the 'simple' configuration so that words such as "on" and "open" (flags) survive.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE TABLE IF NOT EXISTS channels (
    name        text PRIMARY KEY,
    aliases     text[] NOT NULL DEFAULT '{}',
    description text NOT NULL DEFAULT '',
    area        text NOT NULL DEFAULT '',
    system      text NOT NULL DEFAULT '',
    family      text NOT NULL DEFAULT '',
    device      text NOT NULL DEFAULT '',
    field       text NOT NULL DEFAULT '',
    signal      text NOT NULL DEFAULT '',
    path        text NOT NULL,            -- hierarchy path, ':'-joined (the name itself for the bundled names)
    units       text NOT NULL DEFAULT '',
    writable    boolean NOT NULL DEFAULT false,   -- from the limits database
    tags        text[] NOT NULL DEFAULT '{}',
    properties  jsonb NOT NULL DEFAULT '{}'::jsonb,
    source      text NOT NULL DEFAULT '',
    prior       real NOT NULL DEFAULT 0,          -- tie-breaking prior (tern.channels.naming)
    name_words  text NOT NULL DEFAULT '',
    text_words  text NOT NULL DEFAULT '',
    content_hash text GENERATED ALWAYS AS (md5(name || E'\n' || description || E'\n' || name_words)) STORED,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    search      tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', name_words), 'A') || setweight(to_tsvector('simple', text_words), 'B')
    ) STORED
);
CREATE INDEX IF NOT EXISTS channels_search ON channels USING gin (search);
CREATE INDEX IF NOT EXISTS channels_name_trgm ON channels USING gin (name gin_trgm_ops);
CREATE INDEX IF NOT EXISTS channels_path ON channels (path text_pattern_ops);
CREATE INDEX IF NOT EXISTS channels_aliases ON channels USING gin (aliases);

-- Document frequency of each search word (ts_stat of the search vectors), refreshed after every load or
-- import (tern.channels.store.refresh_term_stats); the row with word '' holds the number of channels.
CREATE TABLE IF NOT EXISTS channel_term_stats (
    word  text PRIMARY KEY,
    ndoc  int NOT NULL
);

-- What has been loaded: the bundled database's content hash (reloaded when it changes) and each import.
CREATE TABLE IF NOT EXISTS channel_sources (
    source      text PRIMARY KEY,
    content_hash text NOT NULL,
    channels    int NOT NULL,
    loaded_at   timestamptz NOT NULL DEFAULT now()
);

-- Embeddings of channel descriptions, one table per model (created on first use, like ARIEL's).
CREATE TABLE IF NOT EXISTS channel_embedding_models (
    model       text PRIMARY KEY,
    dim         int NOT NULL CHECK (dim > 0),
    table_name  text NOT NULL UNIQUE
);
