//! Numbered SQL migrations from `migrations/`, tracked with `PRAGMA user_version`.
//!
//! Each migration runs in its own transaction together with the version bump,
//! so a crash mid-upgrade leaves the previous version intact. A database whose
//! version is higher than the newest migration here was written by a newer
//! tracebox and is refused rather than misread.

use std::path::Path;

use rusqlite::Connection;

use super::{Result, StoreError};

/// Migrations in order; index + 1 is the schema version they produce.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_core.sql"),
    include_str!("../../migrations/0002_sessions.sql"),
    include_str!("../../migrations/0003_ops.sql"),
    include_str!("../../migrations/0004_ui_stats.sql"),
    include_str!("../../migrations/0005_judges.sql"),
    include_str!("../../migrations/0006_span_value_attrs.sql"),
    include_str!("../../migrations/0007_search.sql"),
    include_str!("../../migrations/0008_judge_stats.sql"),
    include_str!("../../migrations/0009_insert_marks.sql"),
    include_str!("../../migrations/0010_packed_payloads.sql"),
    include_str!("../../migrations/0011_rollup_indexes.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn apply(conn: &mut Connection, path: &Path) -> Result<()> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = i as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, "applied schema migration");
    }
    // Derived tables a migration asked to fill from existing data.
    super::sessions::rebuild_if_pending(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_a_newer_database_and_migrates_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = Connection::open(&path).unwrap();
        apply(&mut conn, &path).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        // Idempotent.
        apply(&mut conn, &path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let err = apply(&mut conn, &path).unwrap_err();
        assert!(
            err.to_string()
                .contains("newer than this tracebox supports"),
            "{err}"
        );
    }
}
