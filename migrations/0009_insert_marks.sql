-- New traces mark their dashboard hour from the store, once per hour per
-- ingestion job (store::stats::mark_hours), instead of by trigger.
--
-- Why: a trigger makes every `INSERT INTO traces` a multi-statement write,
-- so SQLite opened a statement journal for it and copied every existing
-- page the insert touched (the table's last page and nine index pages)
-- before writing: the largest single cost of storing a trace. Updates and
-- deletes keep their triggers (0004): they are rarer, and the columns they
-- watch change along many paths.
DROP TRIGGER stats_traces_insert;
