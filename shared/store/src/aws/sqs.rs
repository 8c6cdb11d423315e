use super::describe;
use crate::error::{Result, StoreError};
use crate::meter;
use crate::queue::{Queue, QueueMessage};
use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry};
use std::time::Duration;

/// An SQS queue. The dead-letter move is SQS's own redrive policy, set in the template
/// (and by the tests on moto).
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsQueue { client, url: url.into() }
    }
    pub fn url(&self) -> &str {
        &self.url
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(bodies.len());
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(b).build()
                })
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(StoreError::backend)?;
            // A batch is billed per started 64 KiB of its total payload.
            let bytes: u64 = chunk.iter().map(|b| b.len() as u64).sum();
            meter::record("sqs", "SendMessageBatch", meter::sqs_units(bytes), bytes);
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| StoreError::Backend(format!("sqs send: {}", describe(&e))))?;
            if let Some(f) = out.failed().first() {
                return Err(StoreError::Backend(format!(
                    "sqs send: entry {} failed: {} {}",
                    f.id(),
                    f.code(),
                    f.message().unwrap_or("")
                )));
            }
            let mut ok: Vec<_> =
                out.successful().iter().map(|s| (s.id().to_string(), s.message_id().to_string())).collect();
            ok.sort_by_key(|(i, _)| i.parse::<usize>().unwrap_or(usize::MAX));
            ids.extend(ok.into_iter().map(|(_, m)| m));
        }
        Ok(ids)
    }

    async fn receive(&self, max: u32, visibility: Duration, wait: Duration) -> Result<Vec<QueueMessage>> {
        meter::record("sqs", "ReceiveMessage", 1.0, 0);
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .visibility_timeout(secs(visibility))
            .wait_time_seconds(secs(wait).min(20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| StoreError::Backend(format!("sqs receive: {}", describe(&e))))?;
        Ok(out
            .messages()
            .iter()
            .map(|m| QueueMessage {
                id: m.message_id().unwrap_or_default().to_string(),
                receipt: m.receipt_handle().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        meter::record("sqs", "DeleteMessage", 1.0, 0);
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| StoreError::Backend(format!("sqs delete: {}", describe(&e))))?;
        Ok(())
    }

    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()> {
        meter::record("sqs", "ChangeMessageVisibility", 1.0, 0);
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs(visibility))
            .send()
            .await
            .map_err(|e| StoreError::Backend(format!("sqs change visibility: {}", describe(&e))))?;
        Ok(())
    }

    async fn approximate_len(&self) -> Result<u64> {
        meter::record("sqs", "GetQueueAttributes", 1.0, 0);
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| StoreError::Backend(format!("sqs attributes: {}", describe(&e))))?;
        let attrs = out.attributes();
        let get = |n: QueueAttributeName| -> u64 {
            attrs.and_then(|a| a.get(&n)).and_then(|v| v.parse().ok()).unwrap_or(0)
        };
        Ok(get(QueueAttributeName::ApproximateNumberOfMessages)
            + get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }
}
