use crate::error::Result;
use async_trait::async_trait;
use std::time::Duration;

/// One received message. `receipt` deletes it or changes its visibility; it is only valid
/// for this receive.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub id: String,
    pub receipt: String,
    pub body: String,
    /// How many times it has been received, this time included (SQS
    /// `ApproximateReceiveCount`).
    pub receive_count: u32,
}

/// An at-least-once queue with visibility timeouts and a dead-letter queue: a message that
/// has been received `max_receives` times without being deleted moves to the DLQ on the
/// next receive (SQS redrive semantics).
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends the bodies; returns the message ids in order. Batches of any size are split
    /// as the backend requires.
    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<String>>;
    async fn send(&self, body: &str) -> Result<String> {
        let ids = self.send_batch(&[body.to_string()]).await?;
        ids.into_iter().next().ok_or_else(|| crate::StoreError::Backend("send returned no id".into()))
    }
    /// Receives up to `max` (at most 10) messages, hiding them for `visibility`; waits up
    /// to `wait` for the first one.
    async fn receive(&self, max: u32, visibility: Duration, wait: Duration) -> Result<Vec<QueueMessage>>;
    async fn delete(&self, receipt: &str) -> Result<()>;
    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()>;
    /// Messages visible or in flight (approximate on SQS).
    async fn approximate_len(&self) -> Result<u64>;
}
