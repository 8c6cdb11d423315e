//! Embedded adapters: blobs as files, tables and queues in one SQLite database, all in
//! one data directory. What `mailroom serve` and the tests without AWS run on.
//!
//! SQLite calls are short and synchronous; they run on the calling task. A call holds the
//! connection mutex for well under a millisecond (no fsync: writes are group-committed,
//! see `Db`), which costs less than a hop to a blocking thread pool would.

//!
//! The SQLite part (tables, queues, [`Embedded`]) is behind the `sqlite` feature: the
//! Lambda functions leave it out (they run on the AWS adapters), `mailroom` and the tests
//! turn it on. The files, the spool bus and the SMTP sender need no SQLite.

#[cfg(feature = "sqlite")]
mod db;
mod files;
mod outbox;
#[cfg(feature = "sqlite")]
mod queue;
#[cfg(feature = "sqlite")]
mod table;

#[cfg(feature = "sqlite")]
pub use db::{Db, Durability, Embedded, GROUP_COMMIT};
pub use files::FileBlobStore;
pub use outbox::{SmtpSender, SpoolBus};
#[cfg(feature = "sqlite")]
pub use queue::SqliteQueue;
#[cfg(feature = "sqlite")]
pub use table::SqliteTable;

use std::path::Path;

/// Creates `dir` (and its parents) readable by its owner only (0700), and takes the group
/// and others' access away from an existing one: the data directory holds customers'
/// mail, sealed tokens and the workspace keys.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
}

/// Makes an existing file readable and writable by its owner only (0600).
pub fn private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
