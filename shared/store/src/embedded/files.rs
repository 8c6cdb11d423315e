use crate::blob::{BlobStore, PutOutcome};
use crate::error::{Result, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// Blobs as files under a root directory, one file per key.
#[derive(Debug, Clone)]
pub struct FileBlobStore {
    root: PathBuf,
}

impl FileBlobStore {
    pub fn new(root: PathBuf) -> Self {
        FileBlobStore { root }
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

#[async_trait]
impl BlobStore for FileBlobStore {
    async fn put_if_absent(&self, key: &str, body: Bytes, _content_type: &str) -> Result<PutOutcome> {
        let path = self.path(key)?;
        if path.exists() {
            return Ok(PutOutcome::AlreadyExists);
        }
        let dir = path.parent().ok_or_else(|| StoreError::Invalid(key.into()))?;
        std::fs::create_dir_all(dir)?;
        // Write a temporary file, sync it, then hard-link it into place: the link fails if
        // the key exists (no overwrite race), and a crash never leaves a partial object
        // under the real key.
        let mut tmp = tempfile_in(dir)?;
        tmp.1.write_all(&body)?;
        tmp.1.sync_all()?;
        let res = std::fs::hard_link(&tmp.0, &path);
        let _ = std::fs::remove_file(&tmp.0);
        match res {
            Ok(()) => Ok(PutOutcome::Created),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(PutOutcome::AlreadyExists),
            Err(e) => Err(e.into()),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
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

fn tempfile_in(dir: &Path) -> Result<(PathBuf, std::fs::File)> {
    for _ in 0..16 {
        let name = format!(".tmp-{:016x}", rand::random::<u64>());
        let p = dir.join(name);
        match std::fs::OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(f) => return Ok((p, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Backend("could not create a temporary file".into()))
}
