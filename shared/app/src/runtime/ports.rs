use mailroom_core::ThreadSigner;
use mailroom_store::aws::{AwsClients, DynamoTable, KmsSecrets, NoSecrets, S3BlobStore, SqsQueue};
use mailroom_store::{BlobStore, Clock, Queue, Secrets, SystemClock, Table};
#[cfg(any(test, feature = "embedded"))]
use std::path::Path;
use std::sync::Arc;

/// The storage a process works on, behind the ports.
#[derive(Clone)]
pub struct Ports {
    pub blobs: Arc<dyn BlobStore>,
    pub table: Arc<dyn Table>,
    pub ingest_queue: Arc<dyn Queue>,
    pub ingest_dlq: Option<Arc<dyn Queue>>,
    /// match -> route: one pointer per newly recorded message.
    pub route_queue: Arc<dyn Queue>,
    pub route_dlq: Option<Arc<dyn Queue>>,
    /// route -> ticket.
    pub ticket_queue: Arc<dyn Queue>,
    pub ticket_dlq: Option<Arc<dyn Queue>>,
    /// webhooks and schedules -> mailbox sync: which mailbox to sync, and why.
    pub sync_queue: Arc<dyn Queue>,
    pub sync_dlq: Option<Arc<dyn Queue>>,
    /// API -> send: one pointer per queued reply (an outbox entry).
    pub send_queue: Arc<dyn Queue>,
    pub send_dlq: Option<Arc<dyn Queue>>,
    pub clock: Arc<dyn Clock>,
    /// Signs and checks our thread identifiers (the workspace's secret key).
    pub signer: ThreadSigner,
    /// Encrypts mailbox credentials (KMS in AWS, a key file locally).
    pub secrets: Arc<dyn Secrets>,
    /// Markers this process has written and never needs to write again.
    pub written: Arc<WrittenOnce>,
}

/// Keys of items that, once written, stay as they are (such as the report's list of
/// days): a process writes each once and then skips it. Without this, every new
/// conversation of the day wrote the same `rpt-days` item, the one item that would pass
/// DynamoDB's 1,000 write units a second first at 10 million messages a day
/// (docs/scale.md). Per process: a Lambda container writes each at most once.
#[derive(Debug, Default)]
pub struct WrittenOnce(std::sync::Mutex<std::collections::HashSet<String>>);

impl WrittenOnce {
    pub fn contains(&self, key: &str) -> bool {
        self.0.lock().is_ok_and(|s| s.contains(key))
    }
    /// Records keys whose write succeeded.
    pub fn note(&self, keys: impl IntoIterator<Item = String>) {
        if let Ok(mut s) = self.0.lock() {
            s.extend(keys);
        }
    }
}

/// Queue names of the embedded store, and the receives before a dead-letter move (the
/// template's `maxReceiveCount`).
pub const INGEST_QUEUE: &str = "ingest";
pub const INGEST_DLQ: &str = "ingest-dlq";
pub const ROUTE_QUEUE: &str = "route";
pub const ROUTE_DLQ: &str = "route-dlq";
pub const TICKET_QUEUE: &str = "ticket";
pub const TICKET_DLQ: &str = "ticket-dlq";
pub const SYNC_QUEUE: &str = "sync";
pub const SYNC_DLQ: &str = "sync-dlq";
pub const SEND_QUEUE: &str = "send";
pub const SEND_DLQ: &str = "send-dlq";
pub const MAX_RECEIVES: u32 = 5;
pub const TABLE: &str = "main";

impl Ports {
    /// Makes every write so far durable (see `Table::flush`): call it before telling a
    /// sender that will not send again (a webhook's provider, an HTTP client) that a
    /// message is stored.
    pub fn flush(&self) -> mailroom_store::error::Result<()> {
        self.table.flush()
    }

    /// Embedded storage in a data directory (the `embedded` feature: `mailroom` and the
    /// tests; the Lambda functions run on [`Ports::aws`] and leave SQLite out).
    #[cfg(any(test, feature = "embedded"))]
    pub fn embedded(dir: &Path) -> mailroom_store::error::Result<Ports> {
        let e = mailroom_store::embedded::Embedded::open(dir)?;
        Ok(Ports {
            blobs: Arc::new(e.blobs()),
            table: Arc::new(e.table(TABLE)),
            ingest_queue: Arc::new(e.queue(INGEST_QUEUE, Some((INGEST_DLQ, MAX_RECEIVES)))),
            ingest_dlq: Some(Arc::new(e.queue(INGEST_DLQ, None))),
            route_queue: Arc::new(e.queue(ROUTE_QUEUE, Some((ROUTE_DLQ, MAX_RECEIVES)))),
            route_dlq: Some(Arc::new(e.queue(ROUTE_DLQ, None))),
            ticket_queue: Arc::new(e.queue(TICKET_QUEUE, Some((TICKET_DLQ, MAX_RECEIVES)))),
            ticket_dlq: Some(Arc::new(e.queue(TICKET_DLQ, None))),
            sync_queue: Arc::new(e.queue(SYNC_QUEUE, Some((SYNC_DLQ, MAX_RECEIVES)))),
            sync_dlq: Some(Arc::new(e.queue(SYNC_DLQ, None))),
            send_queue: Arc::new(e.queue(SEND_QUEUE, Some((SEND_DLQ, MAX_RECEIVES)))),
            send_dlq: Some(Arc::new(e.queue(SEND_DLQ, None))),
            clock: Arc::new(SystemClock),
            signer: ThreadSigner::new(local_secret(dir, "secret.key")?),
            secrets: Arc::new(mailroom_store::LocalSecrets::new(&local_secret(dir, "secrets.key")?)?),
            written: Arc::default(),
        })
    }

    /// AWS storage named by the function's configuration.
    pub fn aws(clients: &AwsClients, cfg: &crate::runtime::config::AwsConfig) -> Ports {
        let sqs = |url: &Option<String>| -> Arc<dyn Queue> {
            Arc::new(SqsQueue::new(clients.sqs.clone(), url.clone().unwrap_or_default()))
        };
        Ports {
            blobs: Arc::new(S3BlobStore::new(clients.s3.clone(), &cfg.bucket)),
            table: Arc::new(DynamoTable::new(clients.dynamodb.clone(), &cfg.table)),
            ingest_queue: sqs(&cfg.ingest_queue_url),
            ingest_dlq: None,
            route_queue: sqs(&cfg.route_queue_url),
            route_dlq: None,
            ticket_queue: sqs(&cfg.ticket_queue_url),
            ticket_dlq: None,
            sync_queue: sqs(&cfg.sync_queue_url),
            sync_dlq: None,
            send_queue: sqs(&cfg.send_queue_url),
            send_dlq: None,
            clock: Arc::new(SystemClock),
            signer: ThreadSigner::new(cfg.thread_key.clone()),
            secrets: match &cfg.kms_key_id {
                Some(k) => Arc::new(KmsSecrets::new(clients.kms.clone(), k)),
                None => Arc::new(NoSecrets),
            },
            written: Arc::default(),
        }
    }
}

/// A key of the embedded store: 32 random bytes in `DATA/{name}` (mode 0600), made on
/// first use. `secret.key` signs thread ids; `secrets.key` encrypts mailbox credentials.
#[cfg(any(test, feature = "embedded"))]
fn local_secret(dir: &Path, name: &str) -> mailroom_store::error::Result<Vec<u8>> {
    use mailroom_store::StoreError;
    let path = dir.join(name);
    let io = |e: std::io::Error| StoreError::Backend(format!("secret key {}: {e}", path.display()));
    match std::fs::read(&path) {
        Ok(k) if k.len() >= 32 => return Ok(k),
        Ok(_) => {
            return Err(StoreError::Backend(format!(
                "secret key {} is shorter than 32 bytes",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let key: [u8; 32] = rand::random();
    let tmp = dir.join(format!("{name}.tmp-{}", std::process::id()));
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(io)?;
        f.write_all(&key).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    // A hard link never replaces a key another process made first.
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key.to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read(&path).map_err(io),
        Err(e) => Err(io(e)),
    }
}
