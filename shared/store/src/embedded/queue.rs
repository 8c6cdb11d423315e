use super::Db;
use crate::error::Result;
use crate::meter;
use crate::queue::{Queue, QueueMessage};
use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use std::time::{Duration, Instant};

/// A durable queue in SQLite with SQS semantics: visibility timeout, receive count, and a
/// move to the dead-letter queue on the receive after the `max_receives`-th.
#[derive(Clone)]
pub struct SqliteQueue {
    db: Db,
    name: String,
    dlq: Option<(String, u32)>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn new_id() -> String {
    format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
}

impl SqliteQueue {
    pub fn new(db: Db, name: &str, dlq: Option<(String, u32)>) -> Self {
        SqliteQueue { db, name: name.to_string(), dlq }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn receive_now(&self, max: u32, visibility: Duration) -> Result<Vec<QueueMessage>> {
        self.db.write(|tx| {
        let now = now_ms();
        let mut out = Vec::new();
        {
            let mut select = tx.prepare_cached(
                "SELECT seq, id, body, receive_count FROM queue_messages
                 WHERE queue = ?1 AND visible_at_ms <= ?2 ORDER BY visible_at_ms, seq LIMIT ?3",
            )?;
            // Fetch more than asked so that messages moved to the DLQ do not shrink the batch.
            let rows: Vec<(i64, String, String, u32)> = select
                .query_map(params![self.name, now, i64::from(max) * 2 + 10], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })?
                .collect::<std::result::Result<_, _>>()?;
            for (seq, id, body, count) in rows {
                if out.len() as u32 >= max {
                    break;
                }
                if let Some((dlq, max_receives)) = &self.dlq
                    && count >= *max_receives
                {
                    tx.execute(
                        "UPDATE queue_messages SET queue = ?1, receive_count = 0, receipt = NULL,
                         visible_at_ms = ?2 WHERE seq = ?3",
                        params![dlq, now, seq],
                    )?;
                    tracing::warn!(queue = %self.name, message_id = %id, receives = count, "moved to dead-letter queue");
                    continue;
                }
                let receipt = new_id();
                let vis = now + visibility.as_millis() as i64;
                tx.execute(
                    "UPDATE queue_messages SET receive_count = receive_count + 1, receipt = ?1,
                     visible_at_ms = ?2 WHERE seq = ?3",
                    params![receipt, vis, seq],
                )?;
                out.push(QueueMessage { id, receipt, body, receive_count: count + 1 });
            }
        }
        Ok(out)
        })
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn send_batch(&self, bodies: &[String]) -> Result<Vec<String>> {
        meter::record("embedded-queue", "SendMessageBatch", 1.0, 0);
        self.db.write(|tx| {
            let now = now_ms();
            let mut ids = Vec::with_capacity(bodies.len());
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO queue_messages (queue, id, body, visible_at_ms, sent_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4)",
                )?;
                for b in bodies {
                    let id = new_id();
                    ins.execute(params![self.name, id, b, now])?;
                    ids.push(id);
                }
            }
            Ok(ids)
        })
    }

    async fn receive(&self, max: u32, visibility: Duration, wait: Duration) -> Result<Vec<QueueMessage>> {
        let max = max.clamp(1, 10);
        let deadline = Instant::now() + wait;
        loop {
            let got = self.receive_now(max, visibility)?;
            meter::record("embedded-queue", "ReceiveMessage", 1.0, 0);
            if !got.is_empty() || Instant::now() >= deadline {
                return Ok(got);
            }
            // Long polling by short sleeps: cheap on SQLite, and several processes may share
            // the data directory, so an in-process notification would not be enough.
            let left = deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(50))).await;
        }
    }

    async fn delete(&self, receipt: &str) -> Result<()> {
        meter::record("embedded-queue", "DeleteMessage", 1.0, 0);
        // Deleting with a stale receipt is a no-op, as on SQS.
        self.db.write(|c| {
            c.prepare_cached("DELETE FROM queue_messages WHERE receipt = ?1")?.execute(params![receipt])?;
            Ok(())
        })
    }

    async fn change_visibility(&self, receipt: &str, visibility: Duration) -> Result<()> {
        let vis = now_ms() + visibility.as_millis() as i64;
        self.db.write(|c| {
            c.execute(
                "UPDATE queue_messages SET visible_at_ms = ?1 WHERE receipt = ?2",
                params![vis, receipt],
            )?;
            Ok(())
        })
    }

    async fn approximate_len(&self) -> Result<u64> {
        let n: Option<i64> = self.db.read(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM queue_messages WHERE queue = ?1", params![self.name], |r| {
                r.get(0)
            })
            .optional()?)
        })?;
        Ok(n.unwrap_or(0) as u64)
    }
}
