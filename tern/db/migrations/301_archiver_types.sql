-- Embedded archiver: each channel's EPICS type as the Archiver Appliance names it (EPICSEvent.proto PayloadType),
-- so PB/HTTP retrieval (getData.raw) sends the message type the Appliance would (ScalarDouble, ScalarInt,
-- ScalarEnum with its labels as ENUM_n headers, ...). Samples stay double precision: every scalar numeric DBR
-- type (CHAR, SHORT, LONG, ENUM, FLOAT, DOUBLE) fits a double exactly; strings are not archived by Tern.
ALTER TABLE archiver_channels
    ADD COLUMN IF NOT EXISTS dbr_type text NOT NULL DEFAULT 'SCALAR_DOUBLE'
        CHECK (dbr_type IN ('SCALAR_BYTE', 'SCALAR_SHORT', 'SCALAR_INT', 'SCALAR_ENUM', 'SCALAR_FLOAT', 'SCALAR_DOUBLE')),
    ADD COLUMN IF NOT EXISTS enum_strs text[] NOT NULL DEFAULT '{}';   -- labels of an enum channel, in order
