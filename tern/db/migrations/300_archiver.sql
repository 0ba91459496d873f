-- Embedded archiver (tern.archiver): channels it archives and their samples, as the EPICS Archiver Appliance
-- stores them (POSIX seconds + nanoseconds, value, alarm severity and status). Samples are append-only.
CREATE TABLE IF NOT EXISTS archiver_channels (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    prec        integer NOT NULL DEFAULT 0,      -- display precision (Appliance meta PREC)
    units       text NOT NULL DEFAULT '',        -- engineering units (meta EGU)
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS archiver_samples (
    channel_id  integer NOT NULL REFERENCES archiver_channels (id),
    secs        bigint NOT NULL,                  -- POSIX seconds (UTC) of the IOC timestamp
    nanos       integer NOT NULL DEFAULT 0,
    val         double precision NOT NULL,
    severity    smallint NOT NULL DEFAULT 0,      -- 0 NO_ALARM, 1 MINOR, 2 MAJOR, 3 INVALID
    status      smallint NOT NULL DEFAULT 0,      -- EPICS alarm status
    PRIMARY KEY (channel_id, secs, nanos)
);
-- Which history was generated at first start (one row per channel), so a restart does not generate it again.
CREATE TABLE IF NOT EXISTS archiver_backfill (
    channel_id  integer PRIMARY KEY REFERENCES archiver_channels (id),
    from_secs   bigint NOT NULL,
    to_secs     bigint NOT NULL,
    samples     bigint NOT NULL,
    done_at     timestamptz NOT NULL DEFAULT now()
);
