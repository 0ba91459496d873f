-- The audit hash chain (tern/db/audit_chain.py): each row carries the row_hash of the row before it and its own.
-- Rows recorded before this migration are sealed in id order by tern.db.migrate (tern.db.audit_chain.seal_unchained)
-- right after it, in Python, where the canonical form is defined.
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS prev_hash text;
ALTER TABLE audit_events ADD COLUMN IF NOT EXISTS row_hash text;
COMMENT ON TABLE audit_events IS 'Append-only audit trail, hash-chained (tern.db.audit_chain); the worker role may only INSERT';
