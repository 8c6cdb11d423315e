//! What the mailbox sources and the sync worker exchange: a sync request (which mailbox,
//! and why), its report, and how a source fails. The webhooks and schedules only queue
//! requests; `sync.rs` dispatches them to the providers (gmail.rs, graph.rs), which
//! import only this.

use crate::mailbox::connection::Provider;
use crate::runtime::ports::Ports;
use mailroom_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub inbox: String,
    pub provider: Provider,
    /// Why: `push`, `notification`, `missed`, `subscription_removed`, `reauthorize`,
    /// `fallback`, `connect`, `reconnect`.
    pub reason: String,
    /// Provider data, e.g. `{"history_id": "123"}` or `{"folder": "inbox"}`.
    #[serde(default)]
    pub hint: Value,
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    /// Messages read from the provider.
    pub fetched: u32,
    /// New messages stored and queued.
    pub stored: u32,
    /// Messages already stored.
    pub duplicates: u32,
    /// Messages that could not be read (deleted meanwhile, or the mailbox was leased by
    /// another sync); each is logged.
    pub skipped: u32,
}

impl SyncReport {
    pub fn add(&mut self, o: &SyncReport) {
        self.fetched += o.fetched;
        self.stored += o.stored;
        self.duplicates += o.duplicates;
        self.skipped += o.skipped;
    }
}

#[derive(Debug, Error)]
pub enum SourceError {
    /// The provider refused the credentials for good; the inbox is `reconnect_required`
    /// and nothing retries until someone connects it again.
    #[error("the mailbox must be connected again: {0}")]
    Reconnect(String),
    /// Worth retrying later (network, 5xx, throttling).
    #[error("{0}")]
    Transient(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Queues a sync request.
pub async fn enqueue(ports: &Ports, req: &SyncRequest) -> Result<(), StoreError> {
    let body = serde_json::to_string(req).map_err(StoreError::backend)?;
    ports.sync_queue.send(&body).await.map(|_| ())
}
