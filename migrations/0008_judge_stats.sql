-- Hourly rollups of judge verdicts for the dashboard's pass-rate chart.
--
-- Same scheme as the trace rollups of 0004 (`ui_stats`): triggers mark the
-- (experiment, hour) buckets a change touched and readers recompute those
-- few buckets before they read, so a dashboard never scans every verdict.
-- A trace judge's verdict counts in the hour of its trace's request time;
-- a session judge's in the hour of the session's last activity. Only
-- finished evaluations with a pass/fail verdict count (state 'done',
-- verdict not NULL), exactly what the judge status's pass rate counts.

CREATE TABLE judge_stats_hourly (
    experiment_id INTEGER NOT NULL,
    hour          INTEGER NOT NULL,          -- ms / 3600000 (UTC hours since epoch)
    scorer_id     TEXT NOT NULL,
    passed        INTEGER NOT NULL,
    verdicts      INTEGER NOT NULL,
    PRIMARY KEY (experiment_id, hour, scorer_id)
) WITHOUT ROWID;

CREATE TABLE judge_stats_dirty (
    experiment_id INTEGER NOT NULL,
    hour          INTEGER NOT NULL,
    gen           INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (experiment_id, hour)
) WITHOUT ROWID;

-- Recomputing a bucket reads a session judge's verdicts by time.
CREATE INDEX judge_session_tasks_time ON judge_session_tasks (experiment_id, last_activity);

-- A trace evaluation gained, changed or lost a verdict. (The trace row is
-- there: tasks are written or finished only for existing traces.)
CREATE TRIGGER judge_stats_task_insert AFTER INSERT ON judge_tasks
WHEN NEW.state = 'done' AND NEW.verdict IS NOT NULL
BEGIN
    INSERT INTO judge_stats_dirty (experiment_id, hour)
        SELECT experiment_id, request_time / 3600000 FROM traces WHERE id = NEW.trace
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
END;

CREATE TRIGGER judge_stats_task_update AFTER UPDATE OF state, verdict ON judge_tasks
WHEN (OLD.state IS NOT NEW.state OR OLD.verdict IS NOT NEW.verdict)
  AND ((OLD.state = 'done' AND OLD.verdict IS NOT NULL) OR (NEW.state = 'done' AND NEW.verdict IS NOT NULL))
BEGIN
    INSERT INTO judge_stats_dirty (experiment_id, hour)
        SELECT experiment_id, request_time / 3600000 FROM traces WHERE id = NEW.trace
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
END;

-- Re-runs and deleted judges. When the trace itself is deleted its row may
-- already be gone; the trigger on traces below marks the hour then.
CREATE TRIGGER judge_stats_task_delete AFTER DELETE ON judge_tasks
WHEN OLD.state = 'done' AND OLD.verdict IS NOT NULL
BEGIN
    INSERT INTO judge_stats_dirty (experiment_id, hour)
        SELECT experiment_id, request_time / 3600000 FROM traces WHERE id = OLD.trace
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
END;

-- A deleted trace leaves a rolled-up hour, or one a reader is recomputing
-- right now (its dirty mark must change generation, or the reader's result,
-- counted before the delete, would be stored as fresh). Hours with neither
-- have no verdicts to lose; ingestion never pays.
CREATE TRIGGER judge_stats_trace_delete AFTER DELETE ON traces
WHEN EXISTS (SELECT 1 FROM judge_stats_hourly
             WHERE experiment_id = OLD.experiment_id AND hour = OLD.request_time / 3600000)
  OR EXISTS (SELECT 1 FROM judge_stats_dirty
             WHERE experiment_id = OLD.experiment_id AND hour = OLD.request_time / 3600000)
BEGIN
    INSERT INTO judge_stats_dirty (experiment_id, hour) VALUES (OLD.experiment_id, OLD.request_time / 3600000)
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
END;

-- A judged trace moved to another hour or experiment: both buckets.
CREATE TRIGGER judge_stats_trace_move AFTER UPDATE OF experiment_id, request_time ON traces
WHEN (OLD.experiment_id IS NOT NEW.experiment_id OR OLD.request_time / 3600000 IS NOT NEW.request_time / 3600000)
  AND EXISTS (SELECT 1 FROM judge_tasks WHERE trace = NEW.id AND state = 'done')
BEGIN
    INSERT INTO judge_stats_dirty (experiment_id, hour) VALUES (OLD.experiment_id, OLD.request_time / 3600000)
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
    INSERT INTO judge_stats_dirty (experiment_id, hour) VALUES (NEW.experiment_id, NEW.request_time / 3600000)
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
END;

-- Session evaluations: verdicts change, sessions grow (their last
-- activity moves), tasks go away with their judge or experiment.
CREATE TRIGGER judge_stats_session_insert AFTER INSERT ON judge_session_tasks
WHEN NEW.state = 'done' AND NEW.verdict IS NOT NULL
BEGIN
    INSERT INTO judge_stats_dirty (experiment_id, hour) VALUES (NEW.experiment_id, NEW.last_activity / 3600000)
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
END;

CREATE TRIGGER judge_stats_session_update AFTER UPDATE OF state, verdict, last_activity ON judge_session_tasks
WHEN (OLD.state IS NOT NEW.state OR OLD.verdict IS NOT NEW.verdict OR OLD.last_activity IS NOT NEW.last_activity)
  AND ((OLD.state = 'done' AND OLD.verdict IS NOT NULL) OR (NEW.state = 'done' AND NEW.verdict IS NOT NULL))
BEGIN
    INSERT INTO judge_stats_dirty (experiment_id, hour) VALUES (OLD.experiment_id, OLD.last_activity / 3600000)
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
    INSERT INTO judge_stats_dirty (experiment_id, hour) VALUES (NEW.experiment_id, NEW.last_activity / 3600000)
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
END;

CREATE TRIGGER judge_stats_session_delete AFTER DELETE ON judge_session_tasks
WHEN OLD.state = 'done' AND OLD.verdict IS NOT NULL
BEGIN
    INSERT INTO judge_stats_dirty (experiment_id, hour) VALUES (OLD.experiment_id, OLD.last_activity / 3600000)
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
END;

-- Databases upgraded with verdicts in them: every hour that has one is dirty.
INSERT INTO judge_stats_dirty (experiment_id, hour)
    SELECT t.experiment_id, t.request_time / 3600000 FROM judge_tasks jt JOIN traces t ON t.id = jt.trace
    WHERE jt.state = 'done' AND jt.verdict IS NOT NULL
    UNION
    SELECT experiment_id, last_activity / 3600000 FROM judge_session_tasks
    WHERE state = 'done' AND verdict IS NOT NULL;
