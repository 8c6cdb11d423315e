//! Embedded adapters: blobs as files, tables and queues in one SQLite database, all in
//! one data directory. What `mailroom serve` and the tests without AWS run on.
//!
//! SQLite calls are short and synchronous; they run on the calling task. A call holds the
//! connection mutex for well under a millisecond, which costs less than a hop to a
//! blocking thread pool would.

mod files;
mod queue;
mod table;

pub use files::FileBlobStore;
pub use queue::SqliteQueue;
pub use table::SqliteTable;

use crate::error::Result;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// One SQLite database shared by the embedded tables and queues of a data directory.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // WAL: readers never block the writer; NORMAL sync is durable across process
        // crashes (SIGKILL), which is what local mode must survive.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Db { conn: Arc::new(Mutex::new(conn)), path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (it rolls back an open
        // transaction on the next BEGIN), so a poisoned mutex is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS items (
    tbl    TEXT NOT NULL,
    pk     TEXT NOT NULL,
    sk     TEXT NOT NULL,
    gsi1pk TEXT,
    gsi1sk TEXT,
    data   TEXT NOT NULL,
    PRIMARY KEY (tbl, pk, sk)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS items_gsi1 ON items (tbl, gsi1pk, gsi1sk, pk, sk) WHERE gsi1pk IS NOT NULL;
CREATE TABLE IF NOT EXISTS queue_messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    queue         TEXT NOT NULL,
    id            TEXT NOT NULL UNIQUE,
    body          TEXT NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    sent_at_ms    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_visible ON queue_messages (queue, visible_at_ms, seq);
CREATE UNIQUE INDEX IF NOT EXISTS queue_receipt ON queue_messages (receipt) WHERE receipt IS NOT NULL;
";

/// The embedded adapters of one data directory.
#[derive(Clone)]
pub struct Embedded {
    pub dir: PathBuf,
    pub db: Db,
}

impl Embedded {
    pub fn open(dir: &Path) -> Result<Embedded> {
        std::fs::create_dir_all(dir)?;
        let db = Db::open(&dir.join("mailroom.db"))?;
        Ok(Embedded { dir: dir.to_path_buf(), db })
    }
    pub fn blobs(&self) -> FileBlobStore {
        FileBlobStore::new(self.dir.join("blobs"))
    }
    pub fn table(&self, name: &str) -> SqliteTable {
        SqliteTable::new(self.db.clone(), name)
    }
    /// A queue whose messages move to `dlq` after `max_receives` receives.
    pub fn queue(&self, name: &str, dlq: Option<(&str, u32)>) -> SqliteQueue {
        SqliteQueue::new(self.db.clone(), name, dlq.map(|(n, m)| (n.to_string(), m)))
    }
}
