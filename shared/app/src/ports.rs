use mailroom_store::aws::{AwsClients, DynamoTable, S3BlobStore, SqsQueue};
use mailroom_store::embedded::Embedded;
use mailroom_store::{BlobStore, Clock, Queue, SystemClock, Table};
use std::path::Path;
use std::sync::Arc;

/// The storage a process works on, behind the ports.
#[derive(Clone)]
pub struct Ports {
    pub blobs: Arc<dyn BlobStore>,
    pub table: Arc<dyn Table>,
    pub ingest_queue: Arc<dyn Queue>,
    pub ingest_dlq: Option<Arc<dyn Queue>>,
    pub clock: Arc<dyn Clock>,
}

/// Queue names of the embedded store, and the receives before a dead-letter move (the
/// template's `maxReceiveCount`).
pub const INGEST_QUEUE: &str = "ingest";
pub const INGEST_DLQ: &str = "ingest-dlq";
pub const MAX_RECEIVES: u32 = 5;
pub const TABLE: &str = "main";

impl Ports {
    /// Embedded storage in a data directory.
    pub fn embedded(dir: &Path) -> mailroom_store::error::Result<Ports> {
        let e = Embedded::open(dir)?;
        Ok(Ports {
            blobs: Arc::new(e.blobs()),
            table: Arc::new(e.table(TABLE)),
            ingest_queue: Arc::new(e.queue(INGEST_QUEUE, Some((INGEST_DLQ, MAX_RECEIVES)))),
            ingest_dlq: Some(Arc::new(e.queue(INGEST_DLQ, None))),
            clock: Arc::new(SystemClock),
        })
    }

    /// AWS storage named by the function's configuration.
    pub fn aws(clients: &AwsClients, cfg: &crate::config::AwsConfig) -> Ports {
        Ports {
            blobs: Arc::new(S3BlobStore::new(clients.s3.clone(), &cfg.bucket)),
            table: Arc::new(DynamoTable::new(clients.dynamodb.clone(), &cfg.table)),
            ingest_queue: Arc::new(SqsQueue::new(
                clients.sqs.clone(),
                cfg.ingest_queue_url.clone().unwrap_or_default(),
            )),
            ingest_dlq: None,
            clock: Arc::new(SystemClock),
        }
    }
}
