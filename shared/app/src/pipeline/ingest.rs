//! The ingest path every source shares: raw bytes to the blob store first
//! (content-addressed, put-if-absent), a copy record, then a small pointer on the ingest
//! queue. Safe to repeat at any point: a copy that was stored but whose pointer may not
//! have been sent is sent again; the consumer is idempotent.

use crate::keys;
use crate::runtime::ports::Ports;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use mailroom_core::{EmailAddress, Envelope, Folder, IngestPointer, raw_key, sha256};
use mailroom_store::{Cond, Query, StoreError};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Mutex;
use thiserror::Error;

/// The source name of `mailroom import` (files from a mailbox export).
pub const IMPORT_SOURCE: &str = "import";
/// The source name of web form submissions (a customer's message, always).
pub const FORM_SOURCE: &str = "form";
/// The `source` of a chat visitor's messages (`crate::chat`).
pub const CHAT_SOURCE: &str = "chat";
/// The `source` of an agent's reply delivered in a live chat (`outbound::send`).
pub const CHAT_REPLY_SOURCE: &str = "chat-reply";

/// The reports' channel of a message: told by its source, never by a header anyone can
/// write.
pub fn channel_of_source(source: &str) -> &'static str {
    match source {
        FORM_SOURCE => "form",
        CHAT_SOURCE | CHAT_REPLY_SOURCE => "chat",
        _ => "email",
    }
}

/// A raw message as a source hands it over.
#[derive(Debug, Clone)]
pub struct RawMail {
    pub bytes: Bytes,
    /// The inbox, when the source knows it (a connected mailbox always does).
    pub inbox: Option<EmailAddress>,
    /// `None`: inbox, or sent when the inbox is told from a From that is a known inbox.
    pub folder: Option<Folder>,
    pub source: String,
    pub source_id: Option<String>,
    pub thread_hint: Option<String>,
    /// When the mailbox received it (IMAP INTERNALDATE, Gmail internalDate, ...).
    pub received_at: Option<DateTime<Utc>>,
}

impl RawMail {
    pub fn new(bytes: impl Into<Bytes>, source: &str) -> RawMail {
        RawMail {
            bytes: bytes.into(),
            inbox: None,
            folder: None,
            source: source.to_string(),
            source_id: None,
            thread_hint: None,
            received_at: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum IngestOutcome {
    /// New: stored and queued.
    Stored(IngestPointer),
    /// Stored before and already processed: nothing done.
    Duplicate,
    /// Stored before but not yet processed: the pointer was queued again.
    Requeued(IngestPointer),
}

#[derive(Debug, Error)]
pub enum IngestError {
    #[error(
        "cannot tell which inbox this message belongs to: it has no Delivered-To or X-Original-To header and its From ({from}) is not a known inbox; import it with --inbox ADDRESS"
    )]
    UnknownInbox { from: String },
    #[error("message is empty")]
    Empty,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Hands raw mail to the pipeline.
pub struct Ingestor {
    ports: Ports,
    known_inboxes: Mutex<HashSet<String>>,
}

impl Ingestor {
    pub fn new(ports: Ports) -> Ingestor {
        Ingestor { ports, known_inboxes: Mutex::new(HashSet::new()) }
    }

    /// Works out the inbox and folder: the source's word, else `Delivered-To` /
    /// `X-Original-To`, else the inbox of the message it replies to, else a From that is a
    /// known inbox (in both cases it is that inbox's Sent copy). Anything else is refused
    /// rather than guessed.
    pub async fn resolve(
        &self,
        mail: &RawMail,
        env: &Envelope,
    ) -> Result<(EmailAddress, Folder), IngestError> {
        if let Some(i) = &mail.inbox {
            return Ok((i.clone(), mail.folder.unwrap_or_default()));
        }
        if let Some(i) = env.inbox() {
            return Ok((i.clone(), mail.folder.unwrap_or_default()));
        }
        // A reply with no delivery trace is a Sent copy: it belongs to the inbox of the
        // message it answers, when that is known.
        for parent in &env.parents {
            if let Some(m) = self.ports.table.get(&keys::message(parent)).await?
                && let Some(i) =
                    m.get("inbox").and_then(Value::as_str).and_then(|i| EmailAddress::parse(i).ok())
            {
                return Ok((i, mail.folder.unwrap_or(Folder::Sent)));
            }
        }
        if let Some(from) = &env.from
            && self.is_known_inbox(from).await?
        {
            return Ok((from.clone(), mail.folder.unwrap_or(Folder::Sent)));
        }
        Err(IngestError::UnknownInbox {
            from: env.from.as_ref().map(|f| f.to_string()).unwrap_or_else(|| "none".into()),
        })
    }

    async fn is_known_inbox(&self, addr: &EmailAddress) -> Result<bool, StoreError> {
        if self.known().contains(&addr.key()) {
            return Ok(true);
        }
        let found = self.ports.table.get(&keys::inbox(addr)).await?.is_some();
        if found {
            self.known().insert(addr.key());
        }
        Ok(found)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.known_inboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an inbox (idempotent).
    pub async fn register_inbox(&self, addr: &EmailAddress) -> Result<(), StoreError> {
        if self.known().contains(&addr.key()) {
            return Ok(());
        }
        let mut item = keys::inbox(addr).item();
        item.insert("address".into(), json!(addr.key()));
        item.insert("created_at".into(), json!(self.ports.clock.now().to_rfc3339()));
        item.insert("gsi1pk".into(), json!(keys::INBOXES_INDEX_PK));
        item.insert("gsi1sk".into(), json!(addr.key()));
        match self.ports.table.put(item, Some(Cond::NotExists)).await {
            Ok(()) | Err(StoreError::ConditionFailed) => {}
            Err(e) => return Err(e),
        }
        self.known().insert(addr.key());
        Ok(())
    }

    pub async fn ingest(&self, mail: RawMail) -> Result<IngestOutcome, IngestError> {
        if mail.bytes.is_empty() {
            return Err(IngestError::Empty);
        }
        let sha = sha256(&mail.bytes);
        let table = &self.ports.table;
        // Bytes whose inbox is read from the message itself were stored once already if
        // any copy of them exists: the resolution may give another answer now that more
        // is known (a reply's parent arrived), but they are the same copy.
        let earlier = if mail.inbox.is_none() {
            table.query(Query::new(keys::raw_copies_pk(&sha)).limit(1)).await?.items.into_iter().next()
        } else {
            None
        };
        let env = Envelope::read(&mail.bytes);
        let (inbox, folder) = match &earlier {
            Some(copy) => pointer_of(copy).map(|p| (p.inbox, p.folder))?,
            None => self.resolve(&mail, &env).await?,
        };
        self.register_inbox(&inbox).await?;
        let copy_key = keys::raw_copy(&sha, &inbox, folder);

        let existing = match earlier {
            Some(e) => Some(e),
            None => table.get(&copy_key).await?,
        };
        if let Some(existing) = existing {
            if existing.get("state").and_then(Value::as_str) == Some("processed") {
                return Ok(IngestOutcome::Duplicate);
            }
            // Stored, maybe never queued (a crash between the two): queue it again.
            let ptr = pointer_of(&existing)?;
            self.ports.ingest_queue.send(&pointer_json(&ptr)?).await?;
            return Ok(IngestOutcome::Requeued(ptr));
        }

        let now = self.ports.clock.now();
        // When the mailbox received it: the source's word (IMAP INTERNALDATE, Gmail
        // internalDate, Graph receivedDateTime); for a mailbox export (`import`), the
        // topmost Received header, which the receiving server wrote; else now.
        let from_export = if mail.source == IMPORT_SOURCE { env.received } else { None };
        let received_at = mail.received_at.or(from_export).unwrap_or(now);
        let key = raw_key(&inbox, env.date.unwrap_or(received_at), &sha);
        // Raw bytes first, before anything else looks at them.
        self.ports.blobs.put_if_absent(&key, mail.bytes.clone(), "message/rfc822").await?;

        let ptr = IngestPointer {
            inbox: inbox.clone(),
            folder,
            key,
            sha256: sha,
            size: mail.bytes.len() as u64,
            source: mail.source,
            source_id: mail.source_id,
            thread_hint: mail.thread_hint,
            received_at,
        };
        let mut item = copy_key.item();
        item.insert("pointer".into(), serde_json::to_value(&ptr).map_err(StoreError::backend)?);
        item.insert("state".into(), json!("queued"));
        item.insert("process_count".into(), json!(0));
        item.insert("stored_at".into(), json!(now.to_rfc3339()));
        item.insert("gsi1pk".into(), json!(keys::copies_index_pk(&inbox)));
        item.insert("gsi1sk".into(), json!(format!("{}#{}", received_at.to_rfc3339(), ptr.sha256)));
        match table.put(item, Some(Cond::NotExists)).await {
            Ok(()) => {}
            // Another ingest of the same bytes won the race; it queues the pointer.
            Err(StoreError::ConditionFailed) => return Ok(IngestOutcome::Duplicate),
            Err(e) => return Err(e.into()),
        }
        self.ports.ingest_queue.send(&pointer_json(&ptr)?).await?;
        tracing::debug!(inbox = %ptr.inbox, key = %ptr.key, "stored and queued");
        Ok(IngestOutcome::Stored(ptr))
    }
}

fn pointer_of(copy: &mailroom_store::Item) -> Result<IngestPointer, StoreError> {
    serde_json::from_value(copy.get("pointer").cloned().unwrap_or_default())
        .map_err(|e| StoreError::Backend(format!("corrupt copy record: {e}")))
}

fn pointer_json(p: &IngestPointer) -> Result<String, StoreError> {
    serde_json::to_string(p).map_err(StoreError::backend)
}

/// The ingest function's event: one raw message, base64-encoded.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct IngestRequest {
    pub raw_base64: String,
    #[serde(default)]
    pub inbox: Option<String>,
    #[serde(default)]
    pub folder: Option<Folder>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub source_id: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct IngestResponse {
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Decodes and ingests one request; errors say what was wrong with it.
pub async fn ingest_request(ing: &Ingestor, req: IngestRequest) -> anyhow::Result<IngestResponse> {
    use anyhow::Context;
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(req.raw_base64.trim())
        .context("raw_base64 is not valid base64")?;
    let mut mail = RawMail::new(bytes, req.source.as_deref().unwrap_or("api"));
    mail.inbox = req.inbox.as_deref().map(EmailAddress::parse).transpose()?;
    mail.folder = req.folder;
    mail.source_id = req.source_id;
    ingest_response(ing, mail).await
}

/// Ingests one message and says what happened, for the ingest function and `POST /ingest`.
pub async fn ingest_response(ing: &Ingestor, mail: RawMail) -> anyhow::Result<IngestResponse> {
    Ok(match ing.ingest(mail).await? {
        IngestOutcome::Stored(p) => {
            IngestResponse { outcome: "stored", key: Some(p.key), sha256: Some(p.sha256.0) }
        }
        IngestOutcome::Requeued(p) => {
            IngestResponse { outcome: "requeued", key: Some(p.key), sha256: Some(p.sha256.0) }
        }
        IngestOutcome::Duplicate => IngestResponse { outcome: "duplicate", key: None, sha256: None },
    })
}
