-- LLM judges: MLflow's scorer registry (scorers, their versions, online
-- scoring configs) and tracebox's durable evaluation queue.
--
-- The queue is written inside the ingestion transaction (a store hook), so a
-- pending evaluation is exactly as durable as the trace that caused it. Task
-- rows stay after they finish (state done/failed/filtered/shed/cancelled):
-- they are what makes evaluation at-most-once per (trace, scorer) and what
-- the judge status counts. They go away with their trace or scorer (CASCADE).

CREATE TABLE scorers (
    scorer_id     TEXT PRIMARY KEY,                    -- uuid4 with dashes, stable across versions
    experiment_id INTEGER NOT NULL REFERENCES experiments(experiment_id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,                    -- ms
    UNIQUE (experiment_id, name)
);

CREATE TABLE scorer_versions (
    scorer_id         TEXT NOT NULL REFERENCES scorers(scorer_id) ON DELETE CASCADE,
    version           INTEGER NOT NULL,
    serialized_scorer TEXT NOT NULL,                   -- verbatim from the client
    creation_time     INTEGER NOT NULL,                -- ms
    -- Derived from serialized_scorer at registration, so the ingestion hook
    -- never parses JSON: 1 when the scorer judges whole sessions.
    session_level     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (scorer_id, version)
) WITHOUT ROWID;

CREATE TABLE scorer_online_configs (
    config_id     TEXT PRIMARY KEY,                    -- 32 hex, fresh on every upsert
    scorer_id     TEXT NOT NULL REFERENCES scorers(scorer_id) ON DELETE CASCADE,
    sample_rate   REAL NOT NULL,
    filter_string TEXT,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX scorer_online_configs_scorer ON scorer_online_configs (scorer_id);

-- One evaluation of one trace by one scorer.
CREATE TABLE judge_tasks (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    trace       INTEGER NOT NULL REFERENCES traces(id) ON DELETE CASCADE,
    scorer_id   TEXT NOT NULL REFERENCES scorers(scorer_id) ON DELETE CASCADE,
    origin      TEXT NOT NULL,                         -- online | backfill
    batch       TEXT,                                  -- backfill batch id
    -- pending | running | done | failed | filtered | shed | cancelled
    state       TEXT NOT NULL,
    verdict     INTEGER,                               -- 1 pass, 0 fail, NULL no verdict
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER NOT NULL DEFAULT 0,            -- ms; paused endpoint, backoff
    lease_until INTEGER,                               -- ms; while running
    error       TEXT,                                  -- last error, for the status API
    enqueued_at INTEGER NOT NULL,
    finished_at INTEGER,
    UNIQUE (trace, scorer_id)
);
CREATE INDEX judge_tasks_open ON judge_tasks (state, id) WHERE state IN ('pending', 'running');
-- Covers the status counts (GROUP BY scorer_id, state, verdict; max(finished_at)).
CREATE INDEX judge_tasks_scorer ON judge_tasks (scorer_id, state, verdict, finished_at);
CREATE INDEX judge_tasks_batch ON judge_tasks (batch, state) WHERE batch IS NOT NULL;

-- One evaluation of one session (conversation) by one session-level scorer.
-- Re-opened when the session gets new traces; evaluated once it is idle.
CREATE TABLE judge_session_tasks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment_id INTEGER NOT NULL REFERENCES experiments(experiment_id) ON DELETE CASCADE,
    session_id    TEXT NOT NULL,
    scorer_id     TEXT NOT NULL REFERENCES scorers(scorer_id) ON DELETE CASCADE,
    origin        TEXT NOT NULL,
    batch         TEXT,
    state         TEXT NOT NULL,
    verdict       INTEGER,
    attempts      INTEGER NOT NULL DEFAULT 0,
    not_before    INTEGER NOT NULL DEFAULT 0,
    lease_until   INTEGER,
    error         TEXT,
    last_activity INTEGER NOT NULL,                    -- ms of the session's latest write
    claimed_activity INTEGER,                          -- last_activity when claimed
    enqueued_at   INTEGER NOT NULL,
    finished_at   INTEGER,
    UNIQUE (experiment_id, session_id, scorer_id)
);
CREATE INDEX judge_session_tasks_open ON judge_session_tasks (state, last_activity)
    WHERE state IN ('pending', 'running');
CREATE INDEX judge_session_tasks_scorer ON judge_session_tasks (scorer_id, state, verdict, finished_at);
CREATE INDEX judge_session_tasks_batch ON judge_session_tasks (batch, state) WHERE batch IS NOT NULL;
