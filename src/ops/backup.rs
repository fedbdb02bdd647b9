//! `tracebox backup FILE` and `tracebox restore FILE`.
//!
//! Backup uses SQLite's online backup API (see
//! `store::maintenance::backup_database`): one consistent snapshot, taken
//! beside a running server without stopping it, written to a temporary file
//! and renamed into place only once it passed `integrity_check`.
//!
//! Restore replaces the database of a stopped server (the directory lock
//! proves nobody is serving it): the backup is checked first, the old
//! database (with its WAL) is kept beside it under a dated name, and the
//! full-text index, derived data, is removed so the next start rebuilds it
//! from the restored database.

use std::path::{Path, PathBuf};

use clap::Args;
use rusqlite::{Connection, OpenFlags};

use super::lock::DataLock;
use crate::cli::DataArgs;
use crate::store::SCHEMA_VERSION;
use crate::store::maintenance::{backup_database, integrity_check};

/// The database file inside a data directory.
pub const DB_FILE: &str = "tracebox.db";
/// Directories holding data derived from the database; restore deletes
/// them so the server rebuilds them from the restored database.
pub const DERIVED_DIRS: &[&str] = &[crate::index::DIR];

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// File to write the backup to.
    pub file: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Overwrite FILE if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A backup written by `tracebox backup`.
    pub file: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let src = args.data.data.join(DB_FILE);
    if !src.exists() {
        anyhow::bail!("no tracebox database at {}", src.display());
    }
    if args.file.exists() && !args.force {
        anyhow::bail!(
            "{} already exists; pass --force to overwrite it",
            args.file.display()
        );
    }
    let tmp = with_suffix(&args.file, &format!(".partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let report = match backup_database(&src, &tmp) {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            anyhow::bail!("backup of {} failed: {e}", src.display());
        }
    };
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &args.file)?;
    println!(
        "backed up {} traces ({} spans, {:.1} MiB, schema v{}) to {}",
        report.traces,
        report.spans,
        report.bytes as f64 / (1 << 20) as f64,
        report.schema_version,
        args.file.display()
    );
    Ok(())
}

/// Checks that `file` is a sound tracebox database this build can open.
pub fn verify_backup(file: &Path) -> anyhow::Result<i64> {
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", file.display()))?;
    let is_tracebox: bool = conn
        .query_row(
            "SELECT count(*) = 1 FROM sqlite_master WHERE type = 'table' AND name = 'traces'",
            [],
            |r| r.get(0),
        )
        .map_err(|e| anyhow::anyhow!("{} is not a SQLite database: {e}", file.display()))?;
    if !is_tracebox {
        anyhow::bail!("{} is not a tracebox database", file.display());
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        anyhow::bail!(
            "{} has schema version {version}, newer than this tracebox supports ({SCHEMA_VERSION})",
            file.display()
        );
    }
    let check = integrity_check(&conn)?;
    if check != ["ok"] {
        anyhow::bail!(
            "{} failed its integrity check: {}",
            file.display(),
            check.join("; ")
        );
    }
    Ok(version)
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    verify_backup(&args.file)?;
    let dir = &args.data.data;
    let _lock = DataLock::acquire(dir)?;
    let db = dir.join(DB_FILE);
    let incoming = with_suffix(&db, ".restoring");
    std::fs::copy(&args.file, &incoming)?;
    std::fs::File::open(&incoming)?.sync_all()?;
    let mut kept = None;
    if db.exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let old = with_suffix(&db, &format!(".before-restore-{stamp}"));
        std::fs::rename(&db, &old)?;
        // The WAL travels with its database (SQLite finds it by name), so
        // the kept copy stays complete; the shared-memory index is rebuilt.
        let wal = with_suffix(&db, "-wal");
        if wal.exists() {
            std::fs::rename(&wal, with_suffix(&old, "-wal"))?;
        }
        kept = Some(old);
    }
    let _ = std::fs::remove_file(with_suffix(&db, "-shm"));
    std::fs::rename(&incoming, &db)?;
    for d in DERIVED_DIRS {
        let p = dir.join(d);
        if p.exists() {
            std::fs::remove_dir_all(&p)?;
        }
    }
    println!("restored {} into {}", args.file.display(), db.display());
    if let Some(old) = kept {
        println!(
            "the previous database is kept as {} (delete it when no longer needed)",
            old.display()
        );
    }
    println!("the full-text index is rebuilt on the next start");
    Ok(())
}
