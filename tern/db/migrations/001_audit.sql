-- Audit trail: every approval decision, every ignored decision, every write attempt. Append-only.
CREATE TABLE IF NOT EXISTS audit_events (
    id           bigserial PRIMARY KEY,
    occurred_at  timestamptz NOT NULL DEFAULT now(),
    event_kind   text NOT NULL,          -- approval_requested | decision | decision_ignored | approval_timed_out
                                         -- | approval_cancelled | write | write_refused
    run_id       text NOT NULL,
    step_id      text,
    request_id   text,
    actor        text,                   -- approver or requesting user
    decision     text,                   -- approved | rejected | timed_out
    channel      text,
    previous_value double precision,
    value        double precision,
    readback     double precision,
    verified     boolean,
    comment      text NOT NULL DEFAULT '',
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    event_key    text UNIQUE             -- idempotency key: a retried activity never records twice
);
CREATE INDEX IF NOT EXISTS audit_events_run ON audit_events (run_id, occurred_at);
CREATE INDEX IF NOT EXISTS audit_events_kind ON audit_events (event_kind, occurred_at);

-- Write ledger: one row per approved write step, claimed before the Channel Access put, so a retried
-- or re-run activity can never put twice.
CREATE TABLE IF NOT EXISTS write_ledger (
    idempotency_key text PRIMARY KEY,
    run_id        text NOT NULL,
    step_id       text NOT NULL,
    channel       text NOT NULL,
    value         double precision NOT NULL,
    state         text NOT NULL,           -- claimed | reput | done | failed
    result        jsonb,
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
