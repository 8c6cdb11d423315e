//! What `mailroom import` reads: a folder of .eml files (recursive), an mbox file, or a
//! maildir (a folder with cur/ and new/). Nothing is read ahead: a file is read when its
//! turn comes, and an mbox streams one message at a time (`mailroom_core::mbox::Reader`),
//! so a multi-gigabyte export is imported in constant memory.

use anyhow::{Context, Result};
use mailroom_core::mbox;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// One file to import: a message of its own, or an mbox holding many.
pub enum Source {
    File(PathBuf),
    Mbox(PathBuf),
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::File(p) | Source::Mbox(p) => p,
        }
    }

    /// Its size in bytes (0 when it cannot be read: the read reports why).
    pub fn size(&self) -> u64 {
        std::fs::metadata(self.path()).map(|m| m.len()).unwrap_or(0)
    }
}

/// Where a message can be read again: a deferred message keeps its place, not its bytes.
#[derive(Debug, Clone)]
pub enum Locator {
    File(PathBuf),
    /// The message whose `From ` line is at `start` in the mbox `path`.
    Mbox {
        path: PathBuf,
        start: u64,
    },
}

impl Locator {
    pub fn label(&self) -> String {
        match self {
            Locator::File(p) => p.display().to_string(),
            Locator::Mbox { path, start } => format!("{} at byte {start}", path.display()),
        }
    }

    pub fn read(&self) -> Result<Vec<u8>> {
        match self {
            Locator::File(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display())),
            Locator::Mbox { path, start } => mbox_reader(path, *start)?
                .next_message()
                .with_context(|| format!("reading {}", self.label()))?
                .map(|m| m.bytes)
                .with_context(|| format!("{}: no message there", self.label())),
        }
    }
}

/// An mbox reader from byte `start` (the start of the file or of a `From ` line).
pub fn mbox_reader(path: &Path, start: u64) -> Result<mbox::Reader<BufReader<File>>> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    f.seek(SeekFrom::Start(start)).with_context(|| format!("seeking in {}", path.display()))?;
    Ok(mbox::Reader::new(BufReader::with_capacity(1 << 16, f), start))
}

/// Whether the file at `path` has a `From ` line at byte `offset` (an mbox message starts
/// there).
pub fn from_line_at(path: &Path, offset: u64) -> bool {
    let mut head = [0u8; 5];
    File::open(path)
        .and_then(|mut f| {
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(&mut head)
        })
        .is_ok_and(|_| mbox::looks_like_mbox(&head))
}

pub fn collect(path: &Path) -> Result<Vec<Source>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    if meta.is_file() {
        out.push(if from_line_at(path, 0) { Source::Mbox(path.into()) } else { Source::File(path.into()) });
        return Ok(out);
    }
    walk(path, &mut out)?;
    Ok(out)
}

/// Every message of `sources` in order, each read when the iterator reaches it.
pub fn messages(sources: Vec<Source>) -> impl Iterator<Item = Result<Vec<u8>>> {
    sources.into_iter().flat_map(|s| -> Box<dyn Iterator<Item = Result<Vec<u8>>>> {
        match s {
            Source::File(p) => Box::new(std::iter::once(Locator::File(p).read())),
            Source::Mbox(p) => match mbox_reader(&p, 0) {
                Ok(mut r) => Box::new(
                    std::iter::from_fn(move || {
                        r.next_message().with_context(|| format!("reading {}", p.display())).transpose()
                    })
                    .map(|m| m.map(|m| m.bytes)),
                ),
                Err(e) => Box::new(std::iter::once(Err(e))),
            },
        }
    })
}

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() && dir.join("new").is_dir()
}

fn walk(dir: &Path, out: &mut Vec<Source>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    let maildir = is_maildir(dir);
    for e in entries {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let ft = e.file_type()?;
        if ft.is_dir() {
            // A maildir's tmp/ holds messages still being delivered.
            if maildir && name == "tmp" {
                continue;
            }
            walk(&p, out)?;
        } else if ft.is_file() {
            let in_maildir = dir.file_name().is_some_and(|n| n == "cur" || n == "new")
                && dir.parent().is_some_and(is_maildir);
            if in_maildir || name.to_ascii_lowercase().ends_with(".eml") {
                out.push(Source::File(p));
            } else if name.ends_with(".mbox") || name.ends_with(".mbx") {
                // By its name, even when it does not start with a `From ` line (an
                // empty export has no message at all; it is not one broken message).
                out.push(Source::Mbox(p));
            }
        }
    }
    Ok(())
}
