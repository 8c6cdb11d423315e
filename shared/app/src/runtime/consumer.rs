//! The queue-consumer runtime shared by Lambda and local mode. A handler takes one
//! message body; the runtime reports per-message failures (Lambda's
//! `ReportBatchItemFailures`) or, locally, leaves failed messages on the queue to be
//! received again after a backoff, until the queue's dead-letter move takes them.

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use mailroom_store::Queue;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

#[async_trait]
pub trait MessageHandler: Send + Sync {
    /// Handles one message. Must be idempotent: any message may arrive more than once.
    async fn handle(&self, body: &str) -> anyhow::Result<()>;
}

/// Runs a Lambda SQS batch; the failed messages are returned for redelivery, the rest
/// are deleted by Lambda.
pub async fn handle_sqs_event(handler: &dyn MessageHandler, event: SqsEvent) -> SqsBatchResponse {
    let mut resp = SqsBatchResponse::default();
    for rec in event.records {
        let id = rec.message_id.clone().unwrap_or_default();
        let body = rec.body.as_deref().unwrap_or_default();
        if let Err(e) = handler.handle(body).instrument(span_of(body)).await {
            tracing::error!(message_id = %id, error = %format!("{e:#}"), "message failed; reported for retry");
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            resp.batch_item_failures.push(f);
        }
    }
    resp
}

/// A local consumer of one queue.
#[derive(Clone)]
pub struct Worker {
    pub queue: Arc<dyn Queue>,
    pub handler: Arc<dyn MessageHandler>,
    /// How long a received message stays hidden while it is handled.
    pub visibility: Duration,
    /// First retry delay after a failure; doubles with each receive.
    pub retry_base: Duration,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchResult {
    pub ok: usize,
    pub failed: usize,
}

impl Worker {
    pub fn new(queue: Arc<dyn Queue>, handler: Arc<dyn MessageHandler>) -> Worker {
        Worker { queue, handler, visibility: Duration::from_secs(60), retry_base: Duration::from_secs(1) }
    }

    /// Receives one batch (waiting up to `wait`) and handles it.
    pub async fn run_once(&self, wait: Duration) -> anyhow::Result<BatchResult> {
        let msgs = self.queue.receive(10, self.visibility, wait).await?;
        self.handle_batch(msgs).await
    }

    /// Handles received messages: deletes the handled ones, delays the failed ones.
    async fn handle_batch(&self, msgs: Vec<mailroom_store::QueueMessage>) -> anyhow::Result<BatchResult> {
        let mut r = BatchResult::default();
        for m in msgs {
            match self.handler.handle(&m.body).instrument(span_of(&m.body)).await {
                Ok(()) => {
                    self.queue.delete(&m.receipt).await?;
                    r.ok += 1;
                }
                Err(e) => {
                    r.failed += 1;
                    let delay =
                        self.retry_base * 2u32.saturating_pow(m.receive_count.saturating_sub(1).min(10));
                    tracing::warn!(message_id = %m.id, receives = m.receive_count, retry_in = ?delay,
                        error = %format!("{e:#}"), "message failed");
                    self.queue.change_visibility(&m.receipt, delay.min(Duration::from_secs(900))).await?;
                }
            }
        }
        Ok(r)
    }

    /// Handles messages until the queue is empty (failed messages included: they are
    /// retried until they succeed or reach the dead-letter queue).
    pub async fn drain(&self) -> anyhow::Result<BatchResult> {
        let mut total = BatchResult::default();
        loop {
            let r = self.run_once(Duration::from_millis(100)).await?;
            total.ok += r.ok;
            total.failed += r.failed;
            if r.ok + r.failed == 0 && self.queue.approximate_len().await? == 0 {
                return Ok(total);
            }
        }
    }

    /// Handles messages until `stop` turns true (or its sender is gone). Only the wait
    /// for messages is cut short: a batch already received is always handled to the end.
    /// Dropping it half-way would leave its messages invisible for the whole visibility
    /// timeout (60 s), which is what `mailroom import` used to wait for after its last
    /// message. (An SQS receive cut off in flight may still hide its messages until then;
    /// that only happens at shutdown.)
    pub async fn run(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        while !*stop.borrow() {
            let received = tokio::select! {
                r = self.queue.receive(10, self.visibility, Duration::from_secs(1)) => r,
                changed = stop.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let r = match received {
                Ok(msgs) => self.handle_batch(msgs).await,
                Err(e) => Err(e.into()),
            };
            if let Err(e) = r {
                tracing::error!(error = %format!("{e:#}"), "queue worker error; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// A handler that records how long each message took (benchmarks: per-stage latency and
/// Lambda duration estimates). Failed messages are recorded too.
pub struct TimedHandler {
    inner: Arc<dyn MessageHandler>,
    samples: std::sync::Mutex<Vec<Duration>>,
}

impl TimedHandler {
    pub fn new(inner: Arc<dyn MessageHandler>) -> TimedHandler {
        TimedHandler { inner, samples: std::sync::Mutex::new(Vec::new()) }
    }

    /// The durations recorded so far, emptied.
    pub fn take(&self) -> Vec<Duration> {
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait]
impl MessageHandler for TimedHandler {
    async fn handle(&self, body: &str) -> anyhow::Result<()> {
        let t = std::time::Instant::now();
        let r = self.inner.handle(body).await;
        self.samples.lock().unwrap_or_else(|p| p.into_inner()).push(t.elapsed());
        r
    }
}

/// The span a message is handled in: every log line of its handling carries the id that
/// follows the message through the stages (docs/runbook.md): the `message_id` after the
/// match stage, the raw `key` before it (the match stage logs both), a reply's
/// `conversation` and `request_id`, a sync's `inbox` and `reason`.
fn span_of(body: &str) -> tracing::Span {
    tracing::info_span!("msg", correlation_id = %correlation_of(body))
}

fn correlation_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let field = |k: &str| v.get(k).and_then(serde_json::Value::as_str).unwrap_or_default().to_string();
    match (field("message_id"), field("request_id"), field("key"), field("inbox")) {
        (m, _, _, _) if !m.is_empty() => m,
        (_, r, _, _) if !r.is_empty() => format!("{}/{r}", field("conversation")),
        (_, _, k, _) if !k.is_empty() => k,
        (_, _, _, i) => format!("{i}/{}", field("reason")),
    }
}

#[cfg(test)]
mod tests {
    use super::correlation_of as c;

    #[test]
    fn every_queue_record_names_what_it_carries() {
        assert_eq!(c(r#"{"message_id":"a@b","logged":true}"#), "a@b");
        assert_eq!(c(r#"{"inbox":"s@x","key":"raw/s@x/1.eml","sha256":"ab"}"#), "raw/s@x/1.eml");
        assert_eq!(c(r#"{"conversation":"c1","request_id":"r9"}"#), "c1/r9");
        assert_eq!(c(r#"{"inbox":"s@x","provider":"gmail","reason":"push"}"#), "s@x/push");
        assert_eq!(c("not json"), "/");
    }
}
