-- Event triggers (tern trigger): channel and webhook trigger definitions. Schedule triggers are Temporal
-- Schedules (the schedule is the record) and are not stored here. The trigger monitor polls this table, so a
-- definition added, paused or removed is picked up without a restart (updated_at tells it what changed).
CREATE TABLE IF NOT EXISTS triggers (
    name        text PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('channel', 'webhook')),
    definition  jsonb NOT NULL,              -- tern.models.trigger.TriggerDefinition
    paused      boolean NOT NULL DEFAULT false,
    created_by  text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
