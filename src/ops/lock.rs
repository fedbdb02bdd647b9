//! The data directory's lock file: a running server holds an exclusive
//! advisory lock on `DIR/tracebox.lock`, so a second server, `restore` and
//! `import` can tell that the directory is in use instead of corrupting it.
//! Read-only tools (`backup`, `export`) do not take it: SQLite's WAL lets
//! them read beside a live server.
//!
//! The lock is released by the operating system when the process exits,
//! even on `kill -9`, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "tracebox.lock";

/// Held for as long as the directory is in exclusive use.
#[derive(Debug)]
pub struct DataLock {
    _file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the data directory {0} is in use by another tracebox process (it holds {0}/tracebox.lock); \
         stop that server first"
    )]
    Busy(PathBuf),
    #[error("cannot lock the data directory {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

impl DataLock {
    /// Takes the lock without waiting.
    pub fn acquire(dir: &Path) -> Result<DataLock, LockError> {
        std::fs::create_dir_all(dir).map_err(|e| LockError::Io(dir.to_path_buf(), e))?;
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| LockError::Io(dir.to_path_buf(), e))?;
        match file.try_lock() {
            Ok(()) => Ok(DataLock { _file: file, path }),
            Err(TryLockError::WouldBlock) => Err(LockError::Busy(dir.to_path_buf())),
            Err(TryLockError::Error(e)) => Err(LockError::Io(dir.to_path_buf(), e)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataLock::acquire(dir.path()).unwrap();
        let err = DataLock::acquire(dir.path()).unwrap_err();
        assert!(err.to_string().contains("in use"), "{err}");
        drop(first);
        DataLock::acquire(dir.path()).unwrap();
    }
}
