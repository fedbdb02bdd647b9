-- Operations: small persistent state (retention's last run, the forwarding
-- outbox cursor) and an index for deleting the oldest traces first.

CREATE TABLE ops_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- Retention deletes the oldest traces across all experiments, in batches.
CREATE INDEX traces_time ON traces (request_time);
