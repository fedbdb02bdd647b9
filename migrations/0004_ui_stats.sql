-- Hourly rollups of trace activity for the dashboard and the experiments list.
--
-- A trace's row changes several times while it is ingested (spans first,
-- then its info, or the reverse; tokens are summed as spans arrive), and
-- traces can be deleted by retention or the API. Rather than keep running
-- sums exact through every path, triggers mark the (experiment, hour)
-- buckets a change touched — OLD and NEW when a trace's request time moves
-- to another hour — and readers recompute dirty buckets from
-- `traces` (an indexed range scan of one hour) before they read rollups.
-- `gen` grows on every mark, so a recompute that raced with new data does
-- not clear a mark it did not see.

CREATE TABLE stats_hourly (
    experiment_id INTEGER NOT NULL,
    hour          INTEGER NOT NULL,          -- request_time / 3600000 (UTC hours since epoch)
    traces        INTEGER NOT NULL,
    errors        INTEGER NOT NULL,
    latency_count INTEGER NOT NULL,          -- traces with a known execution time
    latency_sum   INTEGER NOT NULL,          -- ms
    latency_hist  TEXT NOT NULL,             -- JSON object: log-bucket index -> count
    input_tokens  INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    total_tokens  INTEGER NOT NULL,
    PRIMARY KEY (experiment_id, hour)
) WITHOUT ROWID;

CREATE TABLE stats_dirty (
    experiment_id INTEGER NOT NULL,
    hour          INTEGER NOT NULL,
    gen           INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (experiment_id, hour)
) WITHOUT ROWID;

CREATE TRIGGER stats_traces_insert AFTER INSERT ON traces BEGIN
    INSERT INTO stats_dirty (experiment_id, hour) VALUES (NEW.experiment_id, NEW.request_time / 3600000)
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
END;

-- Fires only when a figure the rollups use really changed: ingestion
-- rewrites these columns often with the same values.
CREATE TRIGGER stats_traces_update
AFTER UPDATE OF experiment_id, request_time, execution_time, state, input_tokens, output_tokens, total_tokens ON traces
WHEN OLD.experiment_id IS NOT NEW.experiment_id OR OLD.request_time IS NOT NEW.request_time
  OR OLD.execution_time IS NOT NEW.execution_time OR OLD.state IS NOT NEW.state
  OR OLD.input_tokens IS NOT NEW.input_tokens OR OLD.output_tokens IS NOT NEW.output_tokens
  OR OLD.total_tokens IS NOT NEW.total_tokens
BEGIN
    INSERT INTO stats_dirty (experiment_id, hour) VALUES (NEW.experiment_id, NEW.request_time / 3600000)
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
END;

-- A trace that moved to another hour or experiment leaves its old bucket too.
CREATE TRIGGER stats_traces_move
AFTER UPDATE OF experiment_id, request_time ON traces
WHEN OLD.experiment_id IS NOT NEW.experiment_id OR OLD.request_time / 3600000 IS NOT NEW.request_time / 3600000
BEGIN
    INSERT INTO stats_dirty (experiment_id, hour) VALUES (OLD.experiment_id, OLD.request_time / 3600000)
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
END;

CREATE TRIGGER stats_traces_delete AFTER DELETE ON traces BEGIN
    INSERT INTO stats_dirty (experiment_id, hour) VALUES (OLD.experiment_id, OLD.request_time / 3600000)
        ON CONFLICT (experiment_id, hour) DO UPDATE SET gen = gen + 1;
END;

-- Databases upgraded with traces in them: every hour that has data is dirty.
INSERT INTO stats_dirty (experiment_id, hour)
    SELECT DISTINCT experiment_id, request_time / 3600000 FROM traces;
