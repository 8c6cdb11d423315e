//! Where an mbox import stopped, so that a run killed half-way through a multi-gigabyte
//! export goes on from there instead of reading (and hashing) it all again.
//!
//! One small JSON file per mbox in `DATA/import/`, rewritten (write, fsync, rename) only
//! after the store has committed every message before its offset: the state never runs
//! ahead of what is stored. Messages that are deferred (their inbox is not known yet) or
//! failed are kept as offsets and tried again at the end of the run that resumes. The file
//! is removed when the whole import has finished, or keeps only the messages that still
//! fail. A re-import without it is still safe (every message is deduplicated), only slower.
//!
//! It guards against the process being killed. The store's default durability
//! (`MAILROOM_DURABILITY=process`) does not fsync its commits, while this file is fsynced:
//! after a power loss or an OS crash the checkpoint may be ahead of what survived, so run
//! that import again with `--restart`, or import with `MAILROOM_DURABILITY=machine`.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct MboxState {
    /// The mbox's canonical path.
    pub path: PathBuf,
    /// Where the next message starts (a `From ` line, or the end of the file).
    pub next: u64,
    /// Messages read before `next`.
    pub index: u64,
    /// `From ` offsets of messages to try again at the end (their inbox was not known
    /// yet, or storing them failed).
    pub retry: Vec<u64>,
    /// Every message was read; only `retry` is left.
    pub done: bool,
}

/// The state file of one mbox under `dir` (the data directory's `import/`).
pub struct Checkpoint {
    file: PathBuf,
}

impl Checkpoint {
    pub fn new(dir: &Path, mbox: &Path) -> Checkpoint {
        let name = mailroom_core::sha256(mbox.as_os_str().as_encoded_bytes()).to_string();
        Checkpoint { file: dir.join(format!("{}.json", &name[..24])) }
    }

    /// The saved state of this mbox, if one is there and still fits the file: the same
    /// path, and a `From ` line (or the end) where it says the next message starts. A state
    /// that does not fit (the file was replaced or cut) is dropped, with a notice.
    pub fn load(&self, mbox: &Path) -> Option<MboxState> {
        let text = std::fs::read(&self.file).ok()?;
        let st: MboxState = match serde_json::from_slice(&text) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{}: unreadable import state ({e}); starting over", self.file.display());
                return None;
            }
        };
        let len = std::fs::metadata(mbox).map(|m| m.len()).unwrap_or(0);
        let fits = st.path == mbox
            && st.next <= len
            && (st.next == len || crate::sources::from_line_at(mbox, st.next))
            && st.retry.iter().all(|&o| crate::sources::from_line_at(mbox, o));
        if !fits {
            eprintln!("{}: changed since the interrupted import; starting over", mbox.display());
            return None;
        }
        Some(st)
    }

    /// Writes `st` so that a crash leaves either the old state or the new one.
    pub fn save(&self, st: &MboxState) -> Result<()> {
        let dir = self.file.parent().context("import state has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = self.file.with_extension(format!("tmp-{}", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
            f.write_all(&serde_json::to_vec(st)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.file).with_context(|| format!("writing {}", self.file.display()))?;
        Ok(())
    }

    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_kept_only_while_it_fits_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("a.mbox");
        let data = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\nhi\n\nFrom c@d Tue Jan  2 00:00:00 2024\nSubject: two\n\nbye\n";
        std::fs::write(&mbox, data).unwrap();
        let second = data.windows(7).rposition(|w| w == b"\nFrom c").unwrap() as u64 + 1;
        let cp = Checkpoint::new(&dir.path().join("import"), &mbox);
        assert_eq!(cp.load(&mbox), None);
        let st = MboxState { path: mbox.clone(), next: second, index: 1, retry: vec![0], done: false };
        cp.save(&st).unwrap();
        assert_eq!(cp.load(&mbox), Some(st.clone()));
        // An offset that is not a message's start: the file changed, the state is dropped.
        cp.save(&MboxState { next: second + 1, ..st.clone() }).unwrap();
        assert_eq!(cp.load(&mbox), None);
        // Another file with the same name under another path has its own state.
        assert_eq!(Checkpoint::new(&dir.path().join("import"), &dir.path().join("b.mbox")).load(&mbox), None);
        cp.remove();
        assert_eq!(cp.load(&mbox), None);
    }
}
