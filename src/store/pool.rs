//! A small pool of read-only connections.
//!
//! WAL lets readers run beside the writer, each on its own snapshot. The pool
//! uses a `parking_lot::Mutex` (held only to push or pop a connection, never
//! across a query) rather than an async mutex: callers are blocking threads.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};

use super::payload::Codec;
use super::{Result, StoreOptions};

/// Idle connections kept for reuse; more are opened on demand under load.
const MAX_IDLE: usize = 8;

pub(super) struct ReadPool {
    path: PathBuf,
    opts: StoreOptions,
    codec: Arc<Codec>,
    idle: Mutex<Vec<Connection>>,
    /// Reads started so far; the idle trimmer watches it.
    uses: AtomicU64,
}

impl ReadPool {
    pub(super) fn new(path: PathBuf, opts: StoreOptions, codec: Arc<Codec>) -> Self {
        Self {
            path,
            opts,
            codec,
            idle: Mutex::new(Vec::new()),
            uses: AtomicU64::new(0),
        }
    }

    pub(super) fn uses(&self) -> u64 {
        self.uses.load(Ordering::Relaxed)
    }

    /// Frees the page caches of the idle connections (they refill from the
    /// OS page cache on the next reads).
    pub(super) fn release_idle_memory(&self) {
        for conn in self.idle.lock().iter() {
            let _ = conn.release_memory();
        }
    }

    pub(super) fn with<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.uses.fetch_add(1, Ordering::Relaxed);
        self.with_unseen(f)
    }

    /// [`ReadPool::with`] without counting as a use (timer-driven polls).
    pub(super) fn with_unseen<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
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
        super::functions::register(&conn, &self.codec)?;
        // Read connections must never write: a bug here should fail loudly.
        // 8 MB of page cache each (not the 16 of the writer): up to eight
        // readers run at once under a query burst, and a page they miss is
        // a read from the OS page cache, not the disk.
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -8000;")?;
        let _ = OpenFlags::SQLITE_OPEN_READ_ONLY; // documented alternative; query_only keeps WAL shm writable
        Ok(conn)
    }
}
