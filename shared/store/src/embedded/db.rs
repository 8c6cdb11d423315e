//! The SQLite database of the embedded tables and queues, and [`Embedded`], the adapters
//! of one data directory (the `sqlite` feature).

use super::{FileBlobStore, SqliteQueue, SqliteTable, private_dir, private_file};
use crate::error::Result;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// One SQLite database shared by the embedded tables and queues of a data directory.
///
/// Writes are group-committed: the first write opens an IMMEDIATE transaction, each
/// operation runs in its own savepoint inside it (so a failed operation leaves nothing),
/// and the transaction commits once it is `GROUP_COMMIT` old (checked on each write and by
/// a background thread) or on `flush`. One commit per window instead of one per operation
/// is what makes the embedded pipeline fast (docs/performance.md: ~130 page writes and
/// ~150 lock calls per message before). A crash loses at most the last window, and loses
/// it whole: queue sends and deletes are in the same transaction as the table writes, so
/// the pipeline re-runs those messages (every stage is idempotent). Raw messages are
/// files, written before the transaction that references them. Whoever acknowledges a
/// message to a sender that will not send it again (a webhook) calls `flush` first.
#[derive(Clone)]
pub struct Db {
    shared: Arc<Shared>,
    path: PathBuf,
}

struct Shared {
    state: Mutex<State>,
}

struct State {
    conn: Connection,
    /// When the open group transaction began.
    open_since: Option<Instant>,
}

/// How long a group transaction stays open.
pub const GROUP_COMMIT: Duration = Duration::from_millis(10);
/// How often the WAL is checkpointed into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// A WAL past this size is checkpointed whole and truncated, with this process's writes
/// held off meanwhile. Passive checkpoints alone never let it restart under steady writes:
/// a 2 GiB mbox import left a 3 GB WAL beside a 383 MB database.
const WAL_TRUNCATE_BYTES: u64 = if cfg!(test) { 1 << 20 } else { 64 << 20 };

/// Runs a statement without parameters, cached: parsing the savepoint statements on
/// every operation was 5% of the pipeline.
fn exec(c: &Connection, sql: &str) -> Result<()> {
    c.prepare_cached(sql)?.execute([])?;
    Ok(())
}

impl State {
    /// Undoes the operation of the open savepoint `op`. Should the rollback to the
    /// savepoint fail, the whole group transaction is rolled back rather than the
    /// half-done operation released into it (the stages redo what it held, as after a
    /// crash).
    fn undo_op(&mut self) -> Result<()> {
        match exec(&self.conn, "ROLLBACK TO op") {
            Ok(()) => exec(&self.conn, "RELEASE op"),
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                self.open_since = None;
                Err(e)
            }
        }
    }

    fn commit(&mut self) -> Result<()> {
        if self.open_since.is_some() {
            let res = self.conn.execute_batch("COMMIT");
            // A COMMIT that failed may have rolled the transaction back (disk full, I/O
            // error): then none is open any more, and the next write must BEGIN again
            // instead of committing each operation alone and failing every later COMMIT.
            if res.is_ok() || self.conn.is_autocommit() {
                self.open_since = None;
            }
            res?;
        }
        Ok(())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = st.commit() {
            tracing::error!(error = %e, "embedded store: final commit failed");
        }
    }
}

impl Db {
    pub fn open(path: &Path, durability: Durability) -> Result<Db> {
        if let Some(dir) = path.parent() {
            private_dir(dir)?;
        }
        let conn = Connection::open(path)?;
        // Mail, tokens and keys: the owner's only. SQLite gives the -wal and -shm files
        // the database file's mode.
        private_file(path)?;
        // Another process's group transaction holds the write lock for at most
        // GROUP_COMMIT: poll for it every millisecond (SQLite's default handler backs off
        // to 100 ms sleeps and could keep missing the gaps), for up to 30 s.
        conn.busy_handler(Some(|n: i32| {
            std::thread::sleep(Duration::from_millis(1));
            n < 30_000
        }))?;
        // WAL: readers never block the writer. NORMAL sync is durable across process
        // crashes (SIGKILL), FULL across power loss too (an fsync per commit).
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let sync = match durability {
            Durability::Process => "NORMAL",
            Durability::Machine => "FULL",
        };
        conn.pragma_update(None, "synchronous", sync)?;
        // The working set of a busy pipeline (recent conversations, subject index, queue)
        // is tens of MB: a 64 MiB page cache (allocated as used) keeps SQLite from
        // re-reading pages on every transaction (the default 2 MB cache cost ~250 preads
        // per message).
        conn.pragma_update(None, "cache_size", -65536)?;
        conn.execute_batch(SCHEMA)?;
        // Checkpoints (copying the WAL into the database, with an fsync) run on the
        // background thread's own connection, not inside a commit that every task waits
        // for: they took tens of milliseconds under the store's lock.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let checkpointer = Connection::open(path)?;
        checkpointer.busy_timeout(Duration::from_secs(1))?;
        let shared = Arc::new(Shared { state: Mutex::new(State { conn, open_since: None }) });
        // Commits a group transaction that no further write closes, and checkpoints
        // every CHECKPOINT_EVERY. Holds a weak reference: it ends once every handle of the
        // database is gone.
        let weak = Arc::downgrade(&shared);
        let wal = {
            let mut p = path.as_os_str().to_owned();
            p.push("-wal");
            PathBuf::from(p)
        };
        std::thread::Builder::new().name("mailroom-db-commit".into()).spawn(move || {
            let mut last_checkpoint = Instant::now();
            loop {
                std::thread::sleep(GROUP_COMMIT);
                let Some(s) = weak.upgrade() else { return };
                {
                    let mut st = s.state.lock().unwrap_or_else(|p| p.into_inner());
                    if st.open_since.is_some_and(|t| t.elapsed() >= GROUP_COMMIT)
                        && let Err(e) = st.commit()
                    {
                        tracing::error!(error = %e, "embedded store: commit failed; retrying");
                    }
                }
                if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                    last_checkpoint = Instant::now();
                    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > WAL_TRUNCATE_BYTES) {
                        // TRUNCATE under the store's lock: no write of ours can start, the
                        // WAL is copied whole (PASSIVE runs have done most of it) and
                        // emptied. Another process reading: busy, tried again next time.
                        let mut st = s.state.lock().unwrap_or_else(|p| p.into_inner());
                        if let Err(e) = st.commit() {
                            tracing::error!(error = %e, "embedded store: commit failed; retrying");
                        }
                        // A short wait while our writes are held off: a reader in another
                        // process postpones the truncation, it does not stall this one.
                        let _ = checkpointer.busy_timeout(Duration::from_millis(50));
                        if let Err(e) =
                            checkpointer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
                        {
                            tracing::debug!(error = %e, "embedded store: WAL truncation postponed");
                        }
                        let _ = checkpointer.busy_timeout(Duration::from_secs(1));
                    // PASSIVE: copies what it can without blocking the writer.
                    } else if let Err(e) =
                        checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "embedded store: checkpoint failed; retrying");
                    }
                }
                drop(s);
            }
        })?;
        Ok(Db { shared, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves SQLite consistent (`write` rolls back the
        // operation's savepoint before the panic goes on), so a poisoned mutex is safe to
        // reuse.
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a read on the connection (it sees this process's uncommitted writes).
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        f(&self.state().conn)
    }

    /// Runs one write operation atomically inside the group transaction: all of `f`'s
    /// changes, or none of them when it fails.
    pub(crate) fn write<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let mut st = self.state();
        if st.open_since.is_none() {
            st.conn.execute_batch("BEGIN IMMEDIATE")?;
            st.open_since = Some(Instant::now());
        }
        exec(&st.conn, "SAVEPOINT op")?;
        // A panic inside `f` (a handler's bug) must undo the operation as an error does:
        // left open, its savepoint's half-done changes would be committed with the group.
        let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&st.conn)));
        let out = match res {
            Ok(Ok(v)) => {
                exec(&st.conn, "RELEASE op")?;
                Ok(v)
            }
            Ok(Err(e)) => {
                st.undo_op()?;
                Err(e)
            }
            Err(panic) => {
                // The panic goes on either way. The lock is released first, so it is not
                // poisoned, and the next write finds no savepoint open.
                let _ = st.undo_op();
                drop(st);
                std::panic::resume_unwind(panic);
            }
        };
        if st.open_since.is_some_and(|t| t.elapsed() >= GROUP_COMMIT) {
            st.commit()?;
        }
        out
    }

    /// Commits the open group transaction: every write so far is durable across a crash
    /// of this process and visible to other processes.
    pub fn flush(&self) -> Result<()> {
        self.state().commit()
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

/// What a write survives once acknowledged (docs/storage.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// A crash of the process (SIGKILL, OOM, panic): the default. Blobs are written
    /// without fsync and SQLite runs `synchronous=NORMAL`; the machine's page cache
    /// keeps both. fsync on this kind of disk costs 1-15 ms and, on ext4 in ordered
    /// mode, grows with every other file's dirty data: it was the whole cost of the
    /// embedded pipeline (docs/performance.md).
    Process,
    /// Power loss too: every blob fsynced, SQLite `synchronous=FULL`.
    /// `MAILROOM_DURABILITY=machine`.
    Machine,
}

impl Durability {
    /// `MAILROOM_DURABILITY`: `process` (default) or `machine`.
    pub fn from_env() -> Result<Durability> {
        match std::env::var("MAILROOM_DURABILITY").ok().as_deref().map(str::trim) {
            None | Some("") | Some("process") => Ok(Durability::Process),
            Some("machine") => Ok(Durability::Machine),
            Some(other) => Err(crate::error::StoreError::Invalid(format!(
                "MAILROOM_DURABILITY={other:?}: expected \"process\" or \"machine\""
            ))),
        }
    }
}

/// The embedded adapters of one data directory.
#[derive(Clone)]
pub struct Embedded {
    pub dir: PathBuf,
    pub db: Db,
    pub durability: Durability,
}

impl Embedded {
    /// Opens (creating) a data directory, with the durability `MAILROOM_DURABILITY` asks for.
    pub fn open(dir: &Path) -> Result<Embedded> {
        private_dir(dir)?;
        let durability = Durability::from_env()?;
        let db = Db::open(&dir.join("mailroom.db"), durability)?;
        Ok(Embedded { dir: dir.to_path_buf(), db, durability })
    }
    pub fn blobs(&self) -> FileBlobStore {
        FileBlobStore::new(self.dir.join("blobs")).with_sync(self.durability == Durability::Machine)
    }
    pub fn table(&self, name: &str) -> SqliteTable {
        SqliteTable::new(self.db.clone(), name)
    }
    /// A queue whose messages move to `dlq` after `max_receives` receives.
    pub fn queue(&self, name: &str, dlq: Option<(&str, u32)>) -> SqliteQueue {
        SqliteQueue::new(self.db.clone(), name, dlq.map(|(n, m)| (n.to_string(), m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operation_that_panics_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("t.db"), Durability::Process).unwrap();
        let insert = |c: &Connection, k: &str| -> Result<()> {
            c.execute("INSERT INTO items (tbl, pk, sk, data) VALUES ('t', ?1, 's', '{}')", [k])?;
            Ok(())
        };
        db.write(|c| insert(c, "before")).unwrap();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            db.write::<()>(|c| {
                insert(c, "half-done")?;
                panic!("a handler's bug");
            })
        }));
        assert!(panicked.is_err());
        db.write(|c| insert(c, "after")).unwrap();
        db.flush().unwrap();
        // Read from a second connection: what was committed.
        let other = Connection::open(dir.path().join("t.db")).unwrap();
        let mut keys: Vec<String> = other
            .prepare("SELECT pk FROM items ORDER BY pk")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        keys.sort();
        assert_eq!(keys, ["after", "before"]);
    }

    #[test]
    fn a_growing_wal_is_truncated_under_steady_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let db = Db::open(&path, Durability::Process).unwrap();
        let wal = dir.path().join("t.db-wal");
        let data = "x".repeat(1000);
        let mut most = 0;
        for i in 0..6000 {
            db.write(|c| {
                c.execute(
                    "INSERT INTO items (tbl, pk, sk, data) VALUES ('t', ?1, 's', ?2)",
                    rusqlite::params![format!("k{i}"), data],
                )?;
                Ok(())
            })
            .unwrap();
            most = most.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
            if i % 1000 == 999 {
                std::thread::sleep(CHECKPOINT_EVERY * 2);
            }
        }
        db.flush().unwrap();
        std::thread::sleep(CHECKPOINT_EVERY * 3);
        let end = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        assert!(most > WAL_TRUNCATE_BYTES, "the test never grew the WAL past the limit ({most} bytes)");
        assert!(end < WAL_TRUNCATE_BYTES / 2, "WAL still {end} bytes after {most}");
    }
}
