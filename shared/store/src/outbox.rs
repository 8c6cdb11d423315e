//! The two outbound ports: an event bus the event feed is published to, and a mail sender
//! for notification emails. Each has an AWS adapter (EventBridge, SES v2) and a local one
//! (a JSON-lines spool file, SMTP), and one contract suite runs against both
//! (tests/tests/it/contract.rs).

use crate::StoreError;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// One event for the bus.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BusEvent {
    pub source: String,
    pub detail_type: String,
    /// JSON text.
    pub detail: String,
    pub time: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait EventBus: Send + Sync {
    /// A name for logs and the relay cursor (`eventbridge`, `spool`).
    fn name(&self) -> &str;
    /// Publishes `events` in order. Returns how many leading events were accepted and,
    /// when not all were, why the next one was not (the caller tries it again).
    async fn publish(&self, events: &[BusEvent]) -> (usize, Option<StoreError>);
}

#[async_trait]
pub trait MailSender: Send + Sync {
    /// Submits one RFC 5322 message from `from` to `to`.
    async fn send_raw(&self, from: &str, to: &[String], raw: &[u8]) -> Result<(), StoreError>;
}
