-- The session and user aggregates re-read first/last times, a session's
-- first trace and its user with LIMIT-1 probes. They now probe the traces'
-- own indexes (traces_session, traces_user): once an aggregate update has
-- stored the new contributions, trace_rollup and traces agree on those
-- columns. The rollup's copies of the two indexes were two more B-tree
-- inserts at random places for every ingested trace (random because
-- request times interleave), which at a million spans is most of what the
-- writer spends per trace.
DROP INDEX trace_rollup_session;
DROP INDEX trace_rollup_user;
