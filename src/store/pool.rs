//! A small pool of read-only connections.
//!
//! WAL lets readers run beside the writer, each on its own snapshot. The pool
//! uses a `parking_lot::Mutex` (held only to push or pop a connection, never
//! across a query) rather than an async mutex: callers are blocking threads.

use std::path::PathBuf;

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};

use super::{Result, StoreOptions};

/// Idle connections kept for reuse; more are opened on demand under load.
const MAX_IDLE: usize = 8;

pub(super) struct ReadPool {
    path: PathBuf,
    opts: StoreOptions,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub(super) fn new(path: PathBuf, opts: StoreOptions) -> Self {
        Self {
            path,
            opts,
            idle: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = match self.idle.lock().pop() {
            Some(c) => c,
            None => self.open()?,
        };
        let out = f(&conn);
        let mut idle = self.idle.lock();
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        out
    }

    fn open(&self) -> Result<Connection> {
        let conn = super::open_connection(&self.path, &self.opts)?;
        // Read connections must never write: a bug here should fail loudly.
        conn.execute_batch("PRAGMA query_only = ON;")?;
        let _ = OpenFlags::SQLITE_OPEN_READ_ONLY; // documented alternative; query_only keeps WAL shm writable
        Ok(conn)
    }
}
