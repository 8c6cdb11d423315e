//! The `match` stage, first step: take a queued copy, read its raw bytes and record the
//! message, once per Message-ID across every inbox, noting each inbox copy. The copy
//! record flips from `queued` to `processed` in the same transaction, so a redelivered
//! pointer changes nothing.

use crate::consumer::MessageHandler;
use crate::keys;
use crate::ports::Ports;
use anyhow::{Context, bail};
use async_trait::async_trait;
use mailroom_core::{Envelope, IngestPointer};
use mailroom_store::{Cond, Item, StoreError, TransactOp, Update};
use serde_json::{Value, json};

pub struct MatchHandler {
    ports: Ports,
}

impl MatchHandler {
    pub fn new(ports: Ports) -> MatchHandler {
        MatchHandler { ports }
    }

    /// The stable id of a message: its Message-ID, or one made from the raw sha256 when
    /// it has none.
    fn message_id(env: &Envelope, ptr: &IngestPointer) -> String {
        match &env.message_id {
            Some(m) => m.clone(),
            None => format!("{}@sha256.mailroom.invalid", ptr.sha256),
        }
    }

    async fn process(&self, ptr: &IngestPointer) -> anyhow::Result<()> {
        let table = &self.ports.table;
        let copy_key = keys::raw_copy(&ptr.sha256, &ptr.inbox, ptr.folder);
        let raw = self
            .ports
            .blobs
            .get(&ptr.key)
            .await?
            .with_context(|| format!("raw object {} is missing from the blob store", ptr.key))?;
        let env = Envelope::read(&raw);
        let mid = Self::message_id(&env, ptr);
        let msg_key = keys::message(&mid);
        let copy =
            json!({"inbox": ptr.inbox.key(), "folder": ptr.folder, "sha256": ptr.sha256, "key": ptr.key});
        let now = self.ports.clock.now().to_rfc3339();

        // Two copies of one message may be processed at once: a lost race on the message
        // item is retried with the other branch.
        for _ in 0..5 {
            let current = table.get(&copy_key).await?.context("copy record missing")?;
            if current.get("state").and_then(Value::as_str) == Some("processed") {
                return Ok(());
            }
            let mark = TransactOp::Update {
                key: copy_key.clone(),
                actions: vec![
                    Update::Set("state".into(), json!("processed")),
                    Update::Set("message_id".into(), json!(mid)),
                    Update::Set("processed_at".into(), json!(now)),
                    Update::Add("process_count".into(), 1),
                ],
                cond: Some(Cond::Eq("state".into(), json!("queued"))),
            };
            let msg_op = if table.get(&msg_key).await?.is_some() {
                TransactOp::Update {
                    key: msg_key.clone(),
                    actions: vec![Update::Append("copies".into(), vec![copy.clone()])],
                    cond: Some(Cond::Exists),
                }
            } else {
                let mut item: Item = msg_key.item();
                item.insert("message_id".into(), json!(mid));
                item.insert("inbox".into(), json!(ptr.inbox.key()));
                item.insert("folder".into(), json!(ptr.folder));
                item.insert("raw_key".into(), json!(ptr.key));
                item.insert("sha256".into(), json!(ptr.sha256));
                item.insert("from".into(), json!(env.from.as_ref().map(|f| f.to_string())));
                item.insert("date".into(), json!(env.date.map(|d| d.to_rfc3339())));
                item.insert("synthetic_id".into(), json!(env.message_id.is_none()));
                item.insert("copies".into(), json!([copy]));
                item.insert("created_at".into(), json!(now));
                item.insert("gsi1pk".into(), json!(keys::messages_index_pk(&ptr.inbox)));
                item.insert("gsi1sk".into(), json!(format!("{}#{mid}", ptr.received_at.to_rfc3339())));
                TransactOp::Put { item, cond: Some(Cond::NotExists) }
            };
            match table.transact_write(vec![mark, msg_op]).await {
                Ok(()) => {
                    tracing::info!(inbox = %ptr.inbox, message_id = %mid, key = %ptr.key, "message recorded");
                    return Ok(());
                }
                Err(StoreError::TransactionCanceled { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        bail!("message {mid}: gave up after 5 conflicting attempts")
    }
}

#[async_trait]
impl MessageHandler for MatchHandler {
    async fn handle(&self, body: &str) -> anyhow::Result<()> {
        let ptr: IngestPointer =
            serde_json::from_str(body).context("ingest queue message is not an ingest pointer")?;
        self.process(&ptr).await
    }
}
