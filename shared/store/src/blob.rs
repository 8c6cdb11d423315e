use crate::error::Result;
use async_trait::async_trait;
use bytes::Bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// An object already had that key; nothing was written.
    AlreadyExists,
}

/// Content-addressed object storage (S3, or files in the data directory).
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Writes `body` under `key` unless an object already exists there. Keys name their
    /// content (they end in its sha256): two writers racing on one key write the same
    /// bytes, and the embedded store may then report `Created` to both.
    async fn put_if_absent(&self, key: &str, body: Bytes, content_type: &str) -> Result<PutOutcome>;
    /// The whole object, or `None` when there is none.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;
    async fn exists(&self, key: &str) -> Result<bool>;
    /// A URL that downloads `key` straight from the store until `ttl` has passed, served
    /// as a download named `filename` of type `content_type`; `None` when the store has no
    /// such URLs (the embedded store: the caller then serves the bytes itself). On AWS this
    /// keeps attachments out of the API function's response, which Lambda caps at 6 MB.
    async fn download_url(
        &self,
        _key: &str,
        _ttl: std::time::Duration,
        _filename: &str,
        _content_type: &str,
    ) -> Result<Option<String>> {
        Ok(None)
    }
}
