-- Full-text index support and search indexes.
--
-- Deleting a trace records a tombstone in the same transaction; the indexer
-- removes the trace's documents from tantivy, commits, then clears the
-- tombstone. A crash in between only means the delete is applied twice.
CREATE TABLE index_tombstones (
    trace INTEGER PRIMARY KEY               -- traces.id of a deleted trace
);
