//! What `mailroom import` reads: a folder of .eml files (recursive), an mbox file, or a
//! maildir (a folder with cur/ and new/).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// One message to import, read lazily so that a large folder is not held in memory.
pub enum Item {
    File(PathBuf),
    /// The n-th message of an mbox file, already split out.
    Mbox {
        path: PathBuf,
        index: usize,
        bytes: Vec<u8>,
    },
}

impl Item {
    pub fn label(&self) -> String {
        match self {
            Item::File(p) => p.display().to_string(),
            Item::Mbox { path, index, .. } => format!("{}#{}", path.display(), index + 1),
        }
    }
    pub fn read(self) -> Result<Vec<u8>> {
        match self {
            Item::File(p) => std::fs::read(&p).with_context(|| format!("reading {}", p.display())),
            Item::Mbox { bytes, .. } => Ok(bytes),
        }
    }
}

pub fn collect(path: &Path) -> Result<Vec<Item>> {
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    if meta.is_file() {
        let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if mailroom_core::mbox::looks_like_mbox(&data) {
            for (index, bytes) in mailroom_core::mbox::split(&data).into_iter().enumerate() {
                out.push(Item::Mbox { path: path.to_path_buf(), index, bytes });
            }
        } else {
            out.push(Item::File(path.to_path_buf()));
        }
        return Ok(out);
    }
    walk(path, &mut out)?;
    Ok(out)
}

fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() && dir.join("new").is_dir()
}

fn walk(dir: &Path, out: &mut Vec<Item>) -> Result<()> {
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
                out.push(Item::File(p));
            } else if name.ends_with(".mbox") || name.ends_with(".mbx") {
                out.extend(collect(&p)?);
            }
        }
    }
    Ok(())
}
