-- What a separate search index (OpenSearch) has acknowledged, so that a document or vector stays pending until
-- the index confirms it (issue 15): ariel_entries.indexed_doc is the document hash (store.DOC_HASH) last
-- acknowledged; each embeddings table's indexed_hash is the content_hash of the vector last acknowledged.
ALTER TABLE ariel_entries ADD COLUMN IF NOT EXISTS indexed_doc text;
DO $$
DECLARE t text;
BEGIN
    FOR t IN SELECT table_name FROM ariel_embedding_models LOOP
        EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS indexed_hash text', t);
    END LOOP;
END $$;
