//! The `match` stage: take a queued copy, read its raw bytes, understand the message
//! (parse, classify), store its attachments and parsed form, thread it into a
//! conversation and record it once per Message-ID across every inbox, noting each inbox
//! copy. The copy record flips from `queued` to `processed` in the same transaction as the
//! message record, so a redelivered pointer changes nothing, and a crash before that
//! transaction simply runs every (idempotent) step again.

use crate::keys;
use crate::pipeline::StagePointer;
use crate::runtime::consumer::MessageHandler;
use crate::runtime::ports::Ports;
use crate::thread::{ThreadInput, Threader};
use anyhow::{Context, bail};
use async_trait::async_trait;
use bytes::Bytes;
use mailroom_core::classify::Kind;
use mailroom_core::{EmailAddress, Folder, IngestPointer, ParsedMessage, understand};
use mailroom_store::{Cond, Item, StoreError, TransactOp, Update};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long "this address is not ours" is believed before it is looked up again.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);

pub struct MatchHandler {
    ports: Ports,
    /// Own addresses (inboxes and users) seen so far; negatives expire.
    own: Mutex<HashMap<String, (bool, Instant)>>,
    /// The workspace's trusted receiving hosts (`[security] trusted_receivers`).
    config: crate::pipeline::WorkspaceCache,
}

/// See [`MatchHandler::direction`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Inbound,
    Outbound,
    /// Inbound, claiming one of our addresses without proof.
    Spoofed,
}

impl MatchHandler {
    pub fn new(ports: Ports) -> MatchHandler {
        MatchHandler {
            config: crate::pipeline::WorkspaceCache::new(ports.clone()),
            ports,
            own: Mutex::new(HashMap::new()),
        }
    }

    /// An address is ours when it is a known inbox or user, or in the domain of the
    /// inbox that holds the copy.
    async fn is_own(&self, addr: &str, inbox: &EmailAddress) -> anyhow::Result<bool> {
        let key = addr.to_lowercase();
        if key.rsplit_once('@').map(|(_, d)| d) == Some(inbox.domain()) {
            return Ok(true);
        }
        let cached = self.own.lock().ok().and_then(|map| map.get(&key).copied());
        if let Some((yes, _)) = cached.filter(|(yes, at)| *yes || at.elapsed() < NEGATIVE_TTL) {
            return Ok(yes);
        }
        let yes = match EmailAddress::parse(&key) {
            Ok(a) => {
                self.ports.table.get(&keys::inbox(&a)).await?.is_some()
                    || self.ports.table.get(&keys::user(&a)).await?.is_some()
            }
            Err(_) => false,
        };
        if let Ok(mut map) = self.own.lock() {
            map.insert(key, (yes, Instant::now()));
        }
        Ok(yes)
    }

    async fn process(&self, ptr: &IngestPointer) -> anyhow::Result<()> {
        let table = &self.ports.table;
        let copy_key = keys::raw_copy(&ptr.sha256, &ptr.inbox, ptr.folder);
        let copy_state = table.get(&copy_key).await?.context("copy record missing")?;
        if copy_state.get("state").and_then(Value::as_str) == Some("processed") {
            // A redelivery, perhaps after a crash between the transaction and the send:
            // pass the message on again (the route stage is idempotent).
            if let Some(mid) = copy_state.get("message_id").and_then(Value::as_str) {
                self.send_to_route(mid).await?;
            }
            return Ok(());
        }
        let raw = self
            .ports
            .blobs
            .get(&ptr.key)
            .await?
            .with_context(|| format!("raw object {} is missing from the blob store", ptr.key))?;
        let understood = understand(&raw).with_context(|| format!("raw object {}", ptr.key))?;
        drop(raw);
        let m = understood.message;
        for (meta, body) in m.attachments.iter().zip(understood.bodies) {
            self.ports
                .blobs
                .put_if_absent(&keys::attachment_key(&meta.sha256), Bytes::from(body), &meta.content_type)
                .await?;
        }

        let msg_key = keys::message(&m.message_id);
        let copy =
            json!({"inbox": ptr.inbox.key(), "folder": ptr.folder, "sha256": ptr.sha256, "key": ptr.key});
        let now = self.ports.clock.now().to_rfc3339();
        // Two copies of one message may be processed at once: a lost race on the message
        // item is retried with the other branch. The first attempt goes on from the copy
        // record read above (the transaction's condition checks it is still queued).
        for attempt in 0..5 {
            if attempt > 0 {
                let current = table.get(&copy_key).await?.context("copy record missing")?;
                if current.get("state").and_then(Value::as_str) == Some("processed") {
                    return Ok(());
                }
            }
            let mark = TransactOp::Update {
                key: copy_key.clone(),
                actions: vec![
                    Update::Set("state".into(), json!("processed")),
                    Update::Set("message_id".into(), json!(m.message_id)),
                    Update::Set("processed_at".into(), json!(now)),
                    Update::Add("process_count".into(), 1),
                ],
                cond: Some(Cond::Eq("state".into(), json!("queued"))),
            };
            let existing = table.get(&msg_key).await?;
            let first_copy = existing.is_none();
            // A Sent copy turning a recorded inbound message outbound: the reports must
            // count it again (the ticket stage records reports and leaves outbound alone).
            let flips = ptr.folder == Folder::Sent
                && existing.as_ref().is_some_and(|e| {
                    e.get("direction").and_then(Value::as_str) != Some("outbound") && e.get("test").is_none()
                });
            let mut ops = vec![mark];
            if !first_copy {
                let mut actions = vec![Update::Append("copies".into(), vec![copy.clone()])];
                // A Sent copy tells the truth about direction whichever copy came first
                // (a verification's test message excepted: it is inbound by design).
                if flips {
                    actions.push(Update::Set("direction".into(), json!("outbound")));
                    actions.push(Update::Remove("spoofed".into()));
                }
                ops.push(TransactOp::Update { key: msg_key.clone(), actions, cond: Some(Cond::Exists) });
            } else {
                let item = self.new_message_item(ptr, &m, &copy, &now).await?;
                // The domain event, in the same transaction: written once per message.
                let conv = keys::item_str(&item, "conversation").unwrap_or_default();
                ops.push(crate::feed::message_logged_put(&conv, &item, self.ports.clock.now()));
                ops.push(TransactOp::Put { item, cond: Some(Cond::NotExists) });
            }
            match table.transact_write(ops).await {
                Ok(()) => {
                    tracing::info!(inbox = %ptr.inbox, message_id = %m.message_id, key = %ptr.key, kind = ?m.kind, "message recorded");
                    if first_copy {
                        self.send_to_route(&m.message_id).await?;
                    } else if flips {
                        let body = serde_json::to_string(&StagePointer {
                            message_id: m.message_id.clone(),
                            logged: None,
                            log_reason: None,
                        })?;
                        self.ports.ticket_queue.send(&body).await?;
                    }
                    return Ok(());
                }
                Err(StoreError::TransactionCanceled { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        bail!("message {}: gave up after 5 conflicting attempts", m.message_id)
    }

    /// The run and test contact of a verification's test message, told by the record
    /// the run wrote before sending it; only Message-IDs with the run's prefix are looked
    /// up, so other mail costs nothing here.
    /// Only while the run waits for it, and only in the inbox it was sent to: a copy
    /// that comes later, or elsewhere, is ordinary mail (whoever saw the Message-ID could
    /// otherwise hide mail of theirs from lists and reports with it).
    async fn verification(
        &self,
        message_id: &str,
        inbox: &EmailAddress,
    ) -> anyhow::Result<Option<(String, String)>> {
        if !message_id.starts_with(crate::keys::VERIFY_MID_PREFIX) {
            return Ok(None);
        }
        let Some(rec) = self.ports.table.get(&keys::verify_message_key(message_id)).await? else {
            return Ok(None);
        };
        if rec.get("done").is_some() || keys::item_str(&rec, "inbox").as_deref() != Some(inbox.key().as_str())
        {
            return Ok(None);
        }
        Ok(keys::item_str(&rec, "run").zip(keys::item_str(&rec, "contact")))
    }

    async fn send_to_route(&self, message_id: &str) -> anyhow::Result<()> {
        let body = serde_json::to_string(&StagePointer {
            message_id: message_id.to_string(),
            logged: None,
            log_reason: None,
        })?;
        self.ports.route_queue.send(&body).await?;
        Ok(())
    }

    /// Which way a message went, told by where its copy came from and never by a header
    /// anyone can write (docs/security.md, "Direction"):
    /// - a Sent-folder copy (IMAP `\Sent`, Gmail's SENT label, Graph's sentitems, our own
    ///   send path, an import with `--folder sent`) is ours;
    /// - an inbound copy whose Message-ID we signed and whose outbox record exists is ours
    ///   coming back (a loop, or a copy to another of our inboxes);
    /// - an inbound copy whose From is one of our addresses is ours only when the receiving
    ///   host the workspace trusts saw DMARC pass for that domain; otherwise it is a
    ///   customer's message flagged as spoofed;
    /// - a form submission or a chat visitor's message is always a customer's message,
    ///   whatever address was typed.
    async fn direction(
        &self,
        ptr: &IngestPointer,
        m: &ParsedMessage,
        from: Option<&str>,
        from_own: bool,
    ) -> anyhow::Result<Direction> {
        use crate::pipeline::ingest::{CHAT_SOURCE, FORM_SOURCE};
        if ptr.source == FORM_SOURCE || ptr.source == CHAT_SOURCE {
            return Ok(Direction::Inbound);
        }
        if ptr.folder == Folder::Sent {
            return Ok(Direction::Outbound);
        }
        if self.ports.signer.verify_message_id(&m.message_id).is_some()
            && self.ports.table.get(&crate::keys::sent_key(&m.message_id)).await?.is_some()
        {
            return Ok(Direction::Outbound);
        }
        if !from_own {
            return Ok(Direction::Inbound);
        }
        let domain = from.and_then(|f| f.rsplit_once('@')).map(|(_, d)| d).unwrap_or_default();
        let cfg = self.config.get().await?;
        let trusted = &cfg.0.security.trusted_receivers;
        if m.auth_results.as_ref().is_some_and(|a| a.dmarc_pass_for(domain, trusted)) {
            Ok(Direction::Outbound)
        } else {
            tracing::warn!(inbox = %ptr.inbox, message_id = %m.message_id, from = ?from, "our own address in From without proof: taken as a customer's message");
            Ok(Direction::Spoofed)
        }
    }

    /// Threads a first-seen message and builds its record.
    async fn new_message_item(
        &self,
        ptr: &IngestPointer,
        m: &ParsedMessage,
        copy: &Value,
        now: &str,
    ) -> anyhow::Result<Item> {
        let from = m.from.as_ref().map(|f| f.email.to_lowercase());
        let from_own = match &from {
            Some(f) => self.is_own(f, &ptr.inbox).await?,
            None => false,
        };
        // A verification's test message (crate::verify) is a customer's message from its
        // run's test contact, whatever its From says: the record proves we sent it.
        let test = self.verification(&m.message_id, &ptr.inbox).await?;
        let direction = match &test {
            Some(_) => Direction::Inbound,
            None => self.direction(ptr, m, from.as_deref(), from_own).await?,
        };
        let outbound = direction == Direction::Outbound;
        // Primary external parties: the sender of inbound mail, the To of outbound mail.
        let mut parties: Vec<String> = test.iter().map(|(_, contact)| contact.clone()).collect();
        let primary: Vec<&mailroom_core::Mailbox> =
            if outbound { m.to.iter().collect() } else { m.from.iter().collect() };
        for a in primary.into_iter().filter(|_| test.is_none()) {
            let e = a.email.to_lowercase();
            if !parties.contains(&e) && !self.is_own(&e, &ptr.inbox).await? {
                parties.push(e);
            }
        }
        let external_to = if outbound { parties.first().cloned() } else { None };
        let mut cc_parties: Vec<String> = Vec::new();
        for a in &m.cc {
            let e = a.email.to_lowercase();
            if !parties.contains(&e) && !cc_parties.contains(&e) && !self.is_own(&e, &ptr.inbox).await? {
                cc_parties.push(e);
            }
        }
        let parents = m.parent_ids();
        let signer = &self.ports.signer;
        let signed = parents
            .iter()
            .find_map(|p| signer.verify_message_id(p))
            .or_else(|| signer.find_body_marker(&m.text));
        let subject = m.subject_info();
        let header_less_reply = parents.is_empty()
            && signed.is_none()
            && !subject.forward
            && (subject.reply || subject.auto_reply || m.kind == Kind::AutoReply);
        let subject_link_party = match (header_less_reply, outbound) {
            (false, _) => None,
            (true, false) => from.clone().filter(|_| !from_own),
            (true, true) => external_to,
        };
        let date = m.date.unwrap_or(ptr.received_at);
        let input = ThreadInput {
            message_id: m.message_id.clone(),
            parents: parents.clone(),
            signed,
            provider_thread: ptr.thread_hint.clone(),
            inbox: ptr.inbox.key(),
            subject: m.subject.clone(),
            subject_key: m.subject_key.clone(),
            date,
            received: ptr.received_at,
            parties,
            cc_parties,
            outbound,
            subject_link_party,
            auto_reply: m.kind == Kind::AutoReply,
        };
        let conversation = Threader::new(&self.ports).assign(&input).await?;
        // Our own outbound coming back into an inbox (a loop), told by the header we set
        // on everything we send or by our signed Message-ID.
        let looped = ptr.folder == Folder::Inbox
            && (m.loop_header.is_some() || signer.verify_message_id(&m.message_id).is_some());

        let mut item: Item = keys::message(&m.message_id).item();
        let put = |item: &mut Item, k: &str, v: Value| {
            item.insert(k.into(), v);
        };
        put(&mut item, "message_id", json!(m.message_id));
        put(&mut item, "inbox", json!(ptr.inbox.key()));
        put(&mut item, "folder", json!(ptr.folder));
        put(&mut item, "raw_key", json!(ptr.key));
        put(&mut item, "sha256", json!(ptr.sha256));
        put(&mut item, "from", json!(from));
        put(&mut item, "from_name", json!(m.from.as_ref().and_then(|f| f.name.clone())));
        put(&mut item, "to", json!(m.to.iter().map(|a| &a.email).collect::<Vec<_>>()));
        put(&mut item, "cc", json!(m.cc.iter().map(|a| &a.email).collect::<Vec<_>>()));
        if !m.bcc.is_empty() {
            put(&mut item, "bcc", json!(m.bcc.iter().map(|a| &a.email).collect::<Vec<_>>()));
        }
        put(&mut item, "subject", json!(m.subject));
        put(&mut item, "date", json!(m.date.map(|d| d.to_rfc3339())));
        // Arrival in the mailbox, for reports: the delivering hop's time, else the Date,
        // else when we received it (a message with neither must still be counted and
        // shown: it used to be left out of the conversation).
        put(&mut item, "arrived", json!(m.received.or(m.date).unwrap_or(ptr.received_at).to_rfc3339()));
        put(&mut item, "synthetic_id", json!(m.synthetic_id));
        put(&mut item, "kind", json!(m.kind));
        put(&mut item, "bounce", json!(m.bounce));
        put(&mut item, "loop", json!(looped));
        put(&mut item, "direction", json!(if outbound { "outbound" } else { "inbound" }));
        if direction == Direction::Spoofed {
            put(&mut item, "spoofed", json!(true));
        }
        if let Some((run, contact)) = &test {
            put(&mut item, "test", json!(run));
            put(&mut item, "test_contact", json!(contact));
        }
        // The reports' channel: told by the source, never by a header anyone can write.
        put(&mut item, "channel", json!(crate::pipeline::ingest::channel_of_source(&ptr.source)));
        put(&mut item, "parents", json!(parents));
        put(&mut item, "conversation", json!(conversation));
        put(&mut item, "attachments", json!(m.attachments));
        put(&mut item, "preview", json!(m.new_text.chars().take(280).collect::<String>()));
        put(&mut item, "copies", json!([copy]));
        // A reply sent through Mailroom: the agent who wrote it (its From is the inbox).
        if signer.verify_message_id(&m.message_id).is_some()
            && let Some(sent) = self.ports.table.get(&crate::keys::sent_key(&m.message_id)).await?
        {
            put(&mut item, "author", sent.get("author").cloned().unwrap_or(Value::Null));
            // A verification's reply is a test message too.
            if let Some(run) = sent.get("test").filter(|v| v.is_string()) {
                put(&mut item, "test", run.clone());
            }
        }
        put(&mut item, "created_at", json!(now));
        put(&mut item, "gsi1pk", json!(keys::messages_index_pk(&ptr.inbox, &m.message_id)));
        put(&mut item, "gsi1sk", json!(format!("{}#{}", ptr.received_at.to_rfc3339(), m.message_id)));
        Ok(item)
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
