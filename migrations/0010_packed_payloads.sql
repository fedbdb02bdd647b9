-- Span inputs, outputs and events of 64 bytes or more are stored
-- zstd-compressed, as a BLOB in the same columns (TEXT rows written before
-- stay as they are and read the same), most of them with a dictionary
-- trained on earlier payloads and kept here; see store::payload. A blob
-- names its dictionary, so dictionaries are never deleted.
CREATE TABLE payload_dicts (
    id      INTEGER PRIMARY KEY,
    dict    BLOB NOT NULL,
    created INTEGER NOT NULL                 -- ms since epoch
);

-- The (key, value) index of trace metadata covers values of up to 128
-- bytes (was 256): ids, users, sessions, sources, versions. Filters compare
-- those; the SDK's 250-character request/response previews were half the
-- index and nobody filters on them by equality. The query planner adds
-- `length(value) <= 128` to equality tests on short literals to use it.
DROP INDEX trace_metadata_kv;
CREATE INDEX trace_metadata_kv ON trace_metadata (key, value) WHERE length(value) <= 128;
