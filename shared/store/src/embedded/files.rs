use crate::blob::{BlobStore, PutOutcome};
use crate::error::{Result, StoreError};
use crate::meter;
use async_trait::async_trait;
use bytes::Bytes;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Blobs as files under a root directory, one file per key.
#[derive(Debug, Clone)]
pub struct FileBlobStore {
    root: PathBuf,
    /// fsync each blob before `put_if_absent` returns (`Durability::Machine`).
    sync: bool,
}

impl FileBlobStore {
    pub fn new(root: PathBuf) -> Self {
        FileBlobStore { root, sync: false }
    }

    pub fn with_sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        let rel = Path::new(key);
        let ok = !key.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
        if !ok {
            return Err(StoreError::Invalid(format!("blob key {key:?} is not a relative path")));
        }
        Ok(self.root.join(rel))
    }
}

fn put_file(path: &Path, body: &[u8], sync: bool) -> Result<PutOutcome> {
    if path.exists() {
        return Ok(PutOutcome::AlreadyExists);
    }
    let dir = path.parent().ok_or_else(|| StoreError::Invalid(path.display().to_string()))?;
    // Write a temporary file (synced when asked), then rename it into place: a crash never
    // leaves a partial object under the real key. Keys name their content (a sha256), so
    // when two writers race, the second rename replaces the file with the same bytes.
    // (A hard link plus an unlink cost one more directory operation per blob.)
    // The directory usually exists: create it only when the temporary file cannot be.
    let mut tmp = match tempfile_in(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            super::private_dir(dir)?;
            tempfile_in(dir)?
        }
        other => other?,
    };
    tmp.1.write_all(body)?;
    if sync {
        tmp.1.sync_all()?;
    }
    if let Err(e) = std::fs::rename(&tmp.0, path) {
        let _ = std::fs::remove_file(&tmp.0);
        return Err(e.into());
    }
    Ok(PutOutcome::Created)
}

#[async_trait]
impl BlobStore for FileBlobStore {
    async fn put_if_absent(&self, key: &str, body: Bytes, _content_type: &str) -> Result<PutOutcome> {
        let path = self.path(key)?;
        let sync = self.sync;
        meter::record("embedded-blobs", "PutObject", 1.0, body.len() as u64);
        // File writes (and the fsync) block: keep them off the async workers.
        tokio::task::spawn_blocking(move || put_file(&path, &body, sync))
            .await
            .map_err(|e| StoreError::Backend(format!("blob write task: {e}")))?
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        meter::record("embedded-blobs", "GetObject", 1.0, 0);
        match std::fs::read(self.path(key)?) {
            Ok(b) => Ok(Some(Bytes::from(b))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.path(key)?.is_file())
    }
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    for _ in 0..16 {
        let name = format!(".tmp-{:016x}", rand::random::<u64>());
        let p = dir.join(name);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        // Customers' mail: the owner's only (0600).
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        match opts.open(&p) {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("could not create a temporary file"))
}
