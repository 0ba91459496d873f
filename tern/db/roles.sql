-- Roles and grants, applied by tern.db.migrate after every migration run (idempotent; run as the owner).
-- tern_writer: the worker and the services that record decisions (bridges, trigger monitor, MCP server).
--   audit_events: SELECT and INSERT only (no UPDATE, DELETE, TRUNCATE): the trail is append-only for it.
--   write_ledger: SELECT, INSERT, DELETE (release_claim drops a claim whose put never happened) and UPDATE of
--   the state columns the ledger protocol moves (state, result, finished_at, claimed_at: tern.audit.store).
--   Every other table: SELECT, INSERT, UPDATE, DELETE, REFERENCES; CREATE on the schema for the embedding tables
--   that ARIEL and the channel finder create at run time (their foreign keys need REFERENCES).
-- tern_reader: SELECT on every table (tern audit, tern verify, tern show).
-- Both are NOLOGIN group roles: production grants them to login roles (CREATE ROLE worker LOGIN PASSWORD '...'
-- IN ROLE tern_writer); the embedded stack (tern up) lets them log in themselves over its loopback-only server.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tern_writer') THEN
        CREATE ROLE tern_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tern_reader') THEN
        CREATE ROLE tern_reader NOLOGIN;
    END IF;
END $$;
GRANT USAGE ON SCHEMA public TO tern_writer, tern_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO tern_reader;
GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO tern_reader;
GRANT SELECT, INSERT, UPDATE, DELETE, REFERENCES ON ALL TABLES IN SCHEMA public TO tern_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO tern_writer;
REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON audit_events FROM tern_writer;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON schema_migrations FROM tern_writer;
REVOKE UPDATE, TRUNCATE, REFERENCES, TRIGGER ON write_ledger FROM tern_writer;
GRANT UPDATE (state, result, finished_at, claimed_at) ON write_ledger TO tern_writer;
-- proof_uses: a used statement stays used (single use of proofs, tern/identity/uses.py).
REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON proof_uses FROM tern_writer;
-- Tables created later by the owner (a migration, an ingest run as the owner) or by the writer (embedding tables).
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO tern_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE, REFERENCES ON TABLES TO tern_writer;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO tern_writer;
DO $$
BEGIN
    GRANT CREATE ON SCHEMA public TO tern_writer;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'tern_writer cannot create embedding tables (the migrating role may not grant CREATE on schema public): create them as the owner';
END $$;
DO $$
BEGIN
    ALTER DEFAULT PRIVILEGES FOR ROLE tern_writer IN SCHEMA public GRANT SELECT ON TABLES TO tern_reader;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'tables tern_writer creates (embedding tables) are not readable by tern_reader: the migrating role is not a member of tern_writer; grant SELECT on them by hand';
END $$;
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 170000 THEN  -- MAINTAIN (ANALYZE after bulk loads): PostgreSQL 17+
        EXECUTE 'GRANT MAINTAIN ON ALL TABLES IN SCHEMA public TO tern_writer';
        EXECUTE 'REVOKE MAINTAIN ON audit_events FROM tern_writer';
    END IF;
END $$;
