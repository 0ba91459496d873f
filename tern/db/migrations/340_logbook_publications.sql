-- Logbook write-back: one row per published logbook_publish step (run + step), so that a retried publish
-- activity publishes once. A facility publish claims its row before sending (published_at NULL) and completes
-- it with the server's id; the embedded logbook claims and upserts its entry in one transaction.
-- Attachments are the run's artifacts (table artifacts), by id.
CREATE TABLE IF NOT EXISTS logbook_publications (
    workflow_id   text NOT NULL,
    step_id       text NOT NULL,
    target        text NOT NULL,                    -- 'embedded' or the adapter name
    entry_id      text NOT NULL DEFAULT '',         -- embedded entry id, or the facility logbook's message id
    url           text NOT NULL DEFAULT '',
    title         text NOT NULL,
    attachments   text[] NOT NULL DEFAULT '{}',     -- artifact ids
    approved_by   text NOT NULL DEFAULT '',
    request_id    text NOT NULL DEFAULT '',         -- the approval request that allowed it
    claimed_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz,                      -- NULL: claimed, not (yet) confirmed by the target
    PRIMARY KEY (workflow_id, step_id)
);
