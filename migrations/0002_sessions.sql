-- Session and user aggregates, kept exact on every write (store::sessions),
-- so listing sessions and users reads a few index pages instead of grouping
-- a million traces per request.
--
-- A session is (experiment_id, session_id) over traces whose tag or metadata
-- `mlflow.trace.session` is set; a user is (experiment_id, user_id) over
-- traces with `mlflow.trace.user`.

-- What each trace currently contributes to the aggregates: the store
-- subtracts the stored contribution and adds the new one whenever a trace
-- changes, so sums stay exact whatever path changed it. No foreign key: the
-- row outlives a deleted trace until its contribution has been subtracted.
CREATE TABLE trace_rollup (
    trace             INTEGER PRIMARY KEY,              -- traces.id
    experiment_id     INTEGER NOT NULL,
    session_id        TEXT,
    user_id           TEXT,
    request_time      INTEGER NOT NULL,
    is_error          INTEGER NOT NULL,
    input_tokens      INTEGER NOT NULL,
    output_tokens     INTEGER NOT NULL,
    total_tokens      INTEGER NOT NULL,
    -- Valid (not overridden) assessments on the trace.
    feedback          INTEGER NOT NULL,
    positive          INTEGER NOT NULL,
    negative          INTEGER NOT NULL,
    human_feedback    INTEGER NOT NULL,
    human_positive    INTEGER NOT NULL,
    human_negative    INTEGER NOT NULL,
    expectations      INTEGER NOT NULL,
    -- Of those, assessments about the whole session (metadata
    -- `mlflow.trace.session` equal to the trace's session).
    session_level     INTEGER NOT NULL
);
CREATE INDEX trace_rollup_session ON trace_rollup (experiment_id, session_id, request_time)
    WHERE session_id IS NOT NULL;
CREATE INDEX trace_rollup_user ON trace_rollup (experiment_id, user_id, request_time)
    WHERE user_id IS NOT NULL;

CREATE TABLE sessions (
    experiment_id     INTEGER NOT NULL,
    session_id        TEXT NOT NULL,
    user_id           TEXT,                             -- user of the first trace that names one
    first_trace       INTEGER NOT NULL,                 -- traces.id of the earliest turn
    first_time        INTEGER NOT NULL,                 -- ms, earliest turn's request_time
    last_time         INTEGER NOT NULL,                 -- ms, latest turn's request_time
    turns             INTEGER NOT NULL,
    error_count       INTEGER NOT NULL,
    input_tokens      INTEGER NOT NULL,
    output_tokens     INTEGER NOT NULL,
    total_tokens      INTEGER NOT NULL,
    feedback          INTEGER NOT NULL,
    positive          INTEGER NOT NULL,
    negative          INTEGER NOT NULL,
    human_feedback    INTEGER NOT NULL,
    human_positive    INTEGER NOT NULL,
    human_negative    INTEGER NOT NULL,
    expectations      INTEGER NOT NULL,
    session_level     INTEGER NOT NULL,
    PRIMARY KEY (experiment_id, session_id)
) WITHOUT ROWID;
CREATE INDEX sessions_recent ON sessions (experiment_id, last_time, session_id);
CREATE INDEX sessions_user ON sessions (experiment_id, user_id, last_time, session_id)
    WHERE user_id IS NOT NULL;

CREATE TABLE users (
    experiment_id     INTEGER NOT NULL,
    user_id           TEXT NOT NULL,
    traces            INTEGER NOT NULL,
    sessions          INTEGER NOT NULL,                 -- sessions whose user this is
    first_time        INTEGER NOT NULL,
    last_time         INTEGER NOT NULL,
    error_count       INTEGER NOT NULL,
    input_tokens      INTEGER NOT NULL,
    output_tokens     INTEGER NOT NULL,
    total_tokens      INTEGER NOT NULL,
    feedback          INTEGER NOT NULL,
    positive          INTEGER NOT NULL,
    negative          INTEGER NOT NULL,
    human_feedback    INTEGER NOT NULL,
    human_positive    INTEGER NOT NULL,
    human_negative    INTEGER NOT NULL,
    expectations      INTEGER NOT NULL,
    PRIMARY KEY (experiment_id, user_id)
) WITHOUT ROWID;
CREATE INDEX users_recent ON users (experiment_id, last_time, user_id);

-- Databases that already hold traces get the aggregates computed once, by
-- the store right after migrating (store::sessions::rebuild_if_pending).
CREATE TABLE rollup_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO rollup_meta (key, value) VALUES ('rebuild_pending', '1');
