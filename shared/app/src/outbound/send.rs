//! Replies, the send side (docs/replies.md): `SendHandler` takes a queued outbox entry
//! (`reply.rs`), sends it through the inbox's provider (Gmail messages.send, Graph
//! sendMail, SMTP for IMAP inboxes), records the outcome, and hands the sent MIME to the
//! ingest path as the inbox's Sent copy, so the reply is threaded, logged and counted like
//! any other message. The provider's own Sent copy, synced later, has the same Message-ID
//! and becomes a second copy of that message.

use crate::keys;
use crate::mailbox::connection::{self, Provider};
use crate::mailbox::oauth;
use crate::mailbox::request::SourceError;
use crate::pipeline::ingest::{CHAT_REPLY_SOURCE, Ingestor, RawMail};
use crate::runtime::config::ProvidersConfig;
use crate::runtime::consumer::MessageHandler;
use crate::runtime::ports::{MAX_RECEIVES, Ports};
use crate::thread::Threader;
use anyhow::{Context, anyhow};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use mailroom_core::{EmailAddress, Folder};
use mailroom_providers::gmail::{GmailClient, GmailError};
use mailroom_providers::graph::{GraphClient, GraphError};
use mailroom_store::{Cond, Item, Key, StoreError, Update};
use serde_json::{Value, json};
use std::sync::Arc;

use crate::keys::item_str as s;
use crate::outbound::reply::SendPointer;

/// How long one attempt may hold an entry in `sending` before another may take it over.
const SENDING_LEASE_SECS: i64 = 300;

#[derive(Debug)]
enum Failure {
    /// The provider refused for good (a 4xx other than 429, revoked access, no
    /// connection): the entry fails and the conversation gets a `send_failed` event.
    Terminal(String),
    /// Try again later through the queue.
    Transient(String),
}

/// What the provider said when it took the message.
#[derive(Debug, Default)]
struct Accepted {
    provider_id: Option<String>,
    thread_id: Option<String>,
    /// A step after the send that failed without undoing it (IMAP APPEND).
    note: Option<String>,
    /// Delivered in a live chat, not by email.
    chat: bool,
}

/// Sends queued replies (the send queue's consumer).
pub struct SendHandler {
    ports: Ports,
    cfg: Arc<ProvidersConfig>,
    ingestor: Ingestor,
    /// On AWS, where a chat visitor's socket is API Gateway's: a reply delivered in the
    /// chat is pushed there (`mailroom serve`'s hub pushes it from the feed instead).
    chat_push: Option<Arc<dyn crate::chat::push::Push>>,
}

impl SendHandler {
    pub fn new(ports: Ports, cfg: Arc<ProvidersConfig>) -> SendHandler {
        SendHandler { ingestor: Ingestor::new(ports.clone()), ports, cfg, chat_push: None }
    }

    /// Pushes replies delivered in a live chat through `push` (the chat's WebSocket API).
    pub fn with_chat_push(mut self, push: Arc<dyn crate::chat::push::Push>) -> SendHandler {
        self.chat_push = Some(push);
        self
    }

    /// Shows a reply delivered in the chat to the visitor's open connections.
    async fn push_to_visitor(&self, item: &Item) -> anyhow::Result<()> {
        let Some(push) = &self.chat_push else { return Ok(()) };
        let blob = s(item, "blob").context("outbox entry has no blob")?;
        let bytes =
            self.ports.blobs.get(&blob).await?.with_context(|| format!("sent MIME {blob} is missing"))?;
        let conv = s(item, "conversation").unwrap_or_default();
        let root = Threader::new(&self.ports).find(&conv).await?.id;
        let (Some(session), Some(line)) = (
            crate::chat::session_to_answer(&self.ports, &root).await?,
            crate::chat::line_of_raw(&bytes, false),
        ) else {
            return Ok(());
        };
        let n = crate::chat::push::to_session(
            &self.ports,
            push.as_ref(),
            &session,
            &crate::chat::line_frame(&line),
        )
        .await?;
        tracing::info!(session = %session, connections = n, "reply pushed to the chat visitor");
        Ok(())
    }

    async fn process(&self, ptr: &SendPointer) -> anyhow::Result<()> {
        let ports = &self.ports;
        let key = keys::outbox_key(&ptr.conversation, &ptr.request_id);
        let Some(item) = ports.table.get(&key).await? else {
            tracing::warn!(conversation = %ptr.conversation, request_id = %ptr.request_id, "send pointer to no outbox entry; dropped");
            return Ok(());
        };
        let status = s(&item, "status").unwrap_or_default();
        let now = ports.clock.now();
        match status.as_str() {
            "sent" => return self.log_sent(&key, &item).await,
            "failed" => return Ok(()),
            "sending" => {
                let until = s(&item, "sending_until").and_then(|u| DateTime::parse_from_rfc3339(&u).ok());
                if until.is_some_and(|u| u > now) {
                    anyhow::bail!(
                        "reply {} is being sent by another attempt; retrying later",
                        ptr.request_id
                    );
                }
                // An attempt died in the middle. If the provider's Sent copy has synced
                // back meanwhile, it went out: record that instead of sending twice.
                let mid = s(&item, "message_id").unwrap_or_default();
                if ports.table.get(&keys::message(&mid)).await?.is_some() {
                    tracing::warn!(message_id = %mid, "an earlier attempt sent this reply; recording it as sent");
                    let done = self.mark_sent(&key, &item, Accepted::default()).await?;
                    return self.log_sent(&key, &done).await;
                }
            }
            _ => {}
        }
        let attempts = item.get("attempts").and_then(Value::as_i64).unwrap_or(0);
        // Claim the entry (compare-and-swap on status and attempts).
        let until = (now + Duration::seconds(SENDING_LEASE_SECS)).to_rfc3339();
        let claim = ports
            .table
            .update(
                &key,
                vec![
                    Update::Set("status".into(), json!("sending")),
                    Update::Set("sending_until".into(), json!(until)),
                    Update::Add("attempts".into(), 1),
                ],
                Some(Cond::And(vec![
                    Cond::Eq("status".into(), json!(status)),
                    Cond::Eq("attempts".into(), json!(attempts)),
                ])),
            )
            .await;
        match claim {
            Ok(_) => {}
            Err(StoreError::ConditionFailed) => {
                anyhow::bail!("reply {} changed while claiming it; retrying", ptr.request_id)
            }
            Err(e) => return Err(e.into()),
        }
        // Visible to other processes before the provider is called.
        ports.flush()?;
        let attempt = attempts + 1;
        match self.deliver(&item).await {
            Ok(acc) => {
                let chat = acc.chat;
                let done = self.mark_sent(&key, &item, acc).await?;
                if chat && let Err(e) = self.push_to_visitor(&done).await {
                    // Recorded as sent either way: the visitor reads it in their history.
                    tracing::warn!(error = %format!("{e:#}"), "pushing a chat reply failed");
                }
                self.log_sent(&key, &done).await
            }
            Err(Failure::Transient(e)) if attempt < MAX_RECEIVES as i64 => {
                ports
                    .table
                    .update(
                        &key,
                        vec![
                            Update::Set("status".into(), json!("queued")),
                            Update::Set("last_error".into(), json!(e)),
                            Update::Set("last_error_at".into(), json!(now.to_rfc3339())),
                        ],
                        Some(Cond::Eq("status".into(), json!("sending"))),
                    )
                    .await?;
                Err(anyhow!("sending reply {} (attempt {attempt}): {e}", ptr.request_id))
            }
            Err(Failure::Transient(e)) => {
                self.fail(&key, &item, &format!("gave up after {attempt} attempts: {e}")).await
            }
            Err(Failure::Terminal(e)) => self.fail(&key, &item, &e).await,
        }
    }

    async fn mark_sent(&self, key: &Key, item: &Item, acc: Accepted) -> anyhow::Result<Item> {
        let now = self.ports.clock.now().to_rfc3339();
        let mut up = vec![
            Update::Set("status".into(), json!("sent")),
            Update::Set("sent_at".into(), json!(now)),
            Update::Remove("sending_until".into()),
        ];
        if let Some(id) = &acc.provider_id {
            up.push(Update::Set("provider_id".into(), json!(id)));
        }
        if let Some(t) = &acc.thread_id {
            up.push(Update::Set("provider_thread".into(), json!(t)));
        }
        if let Some(n) = &acc.note {
            up.push(Update::Set("last_error".into(), json!(n)));
        }
        if acc.chat {
            up.push(Update::Set("via".into(), json!("chat")));
        }
        self.ports.table.update(key, up, None).await?;
        // The provider has it: make that durable before anything else can fail.
        self.ports.flush()?;
        tracing::info!(message_id = %s(item, "message_id").unwrap_or_default(), "reply sent");
        self.ports.table.get(key).await?.context("outbox entry vanished")
    }

    /// Hands the sent MIME to the pipeline as the inbox's Sent copy (once; a redelivery
    /// repeats it harmlessly until `logged` is recorded).
    async fn log_sent(&self, key: &Key, item: &Item) -> anyhow::Result<()> {
        if item.get("logged").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }
        let blob = s(item, "blob").context("outbox entry has no blob")?;
        let bytes =
            self.ports.blobs.get(&blob).await?.with_context(|| format!("sent MIME {blob} is missing"))?;
        let inbox = EmailAddress::parse(&s(item, "inbox").unwrap_or_default())?;
        // A reply delivered in a live chat is a chat message of the conversation.
        let via_chat = s(item, "via").as_deref() == Some("chat");
        let mut mail = RawMail::new(bytes, if via_chat { CHAT_REPLY_SOURCE } else { "send" });
        mail.inbox = Some(inbox);
        mail.folder = Some(Folder::Sent);
        mail.source_id = s(item, "provider_id");
        mail.thread_hint = s(item, "provider_thread").or_else(|| s(item, "reply_thread"));
        mail.received_at = s(item, "sent_at")
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        self.ingestor.ingest(mail).await?;
        self.ports.table.update(key, vec![Update::Set("logged".into(), json!(true))], None).await?;
        Ok(())
    }

    /// A terminal failure: the entry fails with the provider's error, and the
    /// conversation's events get `send_failed`.
    async fn fail(&self, key: &Key, item: &Item, error: &str) -> anyhow::Result<()> {
        let now = self.ports.clock.now();
        self.ports
            .table
            .update(
                key,
                vec![
                    Update::Set("status".into(), json!("failed")),
                    Update::Set("last_error".into(), json!(error)),
                    Update::Set("last_error_at".into(), json!(now.to_rfc3339())),
                    Update::Set("failed_at".into(), json!(now.to_rfc3339())),
                    Update::Remove("sending_until".into()),
                ],
                None,
            )
            .await?;
        let conv = s(item, "conversation").unwrap_or_default();
        let root = match Threader::new(&self.ports).find(&conv).await {
            Ok(r) => r.id,
            Err(_) => conv.clone(),
        };
        let request_id = s(item, "request_id").unwrap_or_default();
        let data = json!({"request_id": request_id, "message_id": s(item, "message_id"), "author": s(item, "author"), "error": error});
        crate::feed::emit(&self.ports, crate::feed::Subject::Conversation(&root), "send_failed", data)
            .await?;
        self.ports.flush()?;
        tracing::error!(conversation = %root, request_id, error, "reply failed");
        Ok(())
    }

    /// Whether the reply answers a chat line whose visitor is connected now
    /// (`chat::session_to_answer`): then the reply is theirs live (`crate::live` pushes it
    /// when its copy is recorded, or [`Self::push_to_visitor`] on AWS), not by email.
    async fn visitor_online(&self, item: &Item) -> anyhow::Result<bool> {
        let conv = s(item, "conversation").unwrap_or_default();
        let Ok(root) = Threader::new(&self.ports).find(&conv).await else { return Ok(false) };
        if root.item.get("channel").and_then(Value::as_str).is_some_and(|c| c != "chat") {
            return Ok(false);
        }
        match crate::chat::session_to_answer(&self.ports, &root.id).await? {
            Some(sid) => crate::chat::is_online(&self.ports, &sid).await,
            None => Ok(false),
        }
    }

    /// One attempt through the inbox's provider.
    async fn deliver(&self, item: &Item) -> Result<Accepted, Failure> {
        let transient = |e: &dyn std::fmt::Display| Failure::Transient(e.to_string());
        let inbox = EmailAddress::parse(&s(item, "inbox").unwrap_or_default())
            .map_err(|e| Failure::Terminal(format!("outbox entry inbox: {e}")))?;
        let blob = s(item, "blob").unwrap_or_default();
        let mime = match self.ports.blobs.get(&blob).await {
            Ok(Some(b)) => b,
            Ok(None) => return Err(Failure::Terminal(format!("the composed message {blob} is missing"))),
            Err(e) => return Err(transient(&e)),
        };
        if self.visitor_online(item).await.map_err(|e| transient(&e))? {
            let id = format!("chat.{}", s(item, "request_id").unwrap_or_default());
            return Ok(Accepted { provider_id: Some(id), chat: true, ..Accepted::default() });
        }
        let conn = connection::get(&self.ports, &inbox).await.map_err(|e| transient(&e))?.ok_or_else(|| {
            Failure::Terminal(format!("{inbox} has no mailbox connection: connect it (Gmail, Microsoft 365 or IMAP with SMTP) to send replies"))
        })?;
        match conn.provider {
            Provider::Gmail => self.gmail(&inbox, &mime, s(item, "reply_thread").as_deref()).await,
            Provider::Graph => {
                let user =
                    conn.settings.get("user_id").and_then(Value::as_str).unwrap_or_default().to_string();
                if user.is_empty() {
                    return Err(Failure::Terminal(format!(
                        "{inbox}: the Graph connection has no user id: connect it again"
                    )));
                }
                self.graph(&inbox, &user, &mime).await
            }
            Provider::Imap => {
                let to: Vec<String> = ["to", "cc"]
                    .iter()
                    .flat_map(|k| item.get(*k).and_then(Value::as_array).cloned().unwrap_or_default())
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                self.smtp(&inbox, conn.settings, &to, &mime, true).await
            }
        }
    }

    /// Sends `mime` from `inbox` to `to` through the inbox's own provider, the way a reply
    /// goes, except that an IMAP inbox files no copy in Sent: the test message of an inbox
    /// verification (`crate::verify`). The error is the provider's reason, for the admin.
    pub async fn submit_test(
        &self,
        inbox: &EmailAddress,
        to: &[String],
        mime: &[u8],
    ) -> Result<String, String> {
        let conn = connection::get(&self.ports, inbox)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("{inbox} has no mailbox connection"))?;
        let r = match conn.provider {
            Provider::Gmail => self.gmail(inbox, mime, None).await,
            Provider::Graph => {
                let user =
                    conn.settings.get("user_id").and_then(Value::as_str).unwrap_or_default().to_string();
                self.graph(inbox, &user, mime).await
            }
            Provider::Imap => self.smtp(inbox, conn.settings.clone(), to, mime, false).await,
        };
        let via = match conn.provider {
            Provider::Imap => {
                let host = conn.settings.pointer("/smtp/host").and_then(Value::as_str).unwrap_or("?");
                let port = conn.settings.pointer("/smtp/port").and_then(Value::as_u64).unwrap_or(0);
                format!("SMTP {host}:{port}")
            }
            Provider::Gmail => "the Gmail API".into(),
            Provider::Graph => "Microsoft Graph".into(),
        };
        match r {
            Ok(_) => Ok(format!("sent from {inbox} to itself through {via}")),
            Err(Failure::Terminal(e) | Failure::Transient(e)) => {
                Err(format!("{via} refused the test message: {e}"))
            }
        }
    }

    async fn gmail(
        &self,
        inbox: &EmailAddress,
        mime: &[u8],
        thread: Option<&str>,
    ) -> Result<Accepted, Failure> {
        let cfg = &self.cfg.google;
        let client = GmailClient::new(&cfg.api_base).map_err(|e| Failure::Transient(e.to_string()))?;
        for retry in [false, true] {
            let token = oauth::access_token(&self.ports, &cfg.oauth, inbox).await.map_err(token_failure)?;
            match client.send_raw(&token, mime, thread).await {
                Ok(sent) => {
                    return Ok(Accepted {
                        provider_id: Some(sent.id),
                        thread_id: sent.thread_id,
                        ..Accepted::default()
                    });
                }
                Err(GmailError::Unauthorized) if !retry => {
                    oauth::expire_access_token(&self.ports, inbox, Some(&token))
                        .await
                        .map_err(|e| Failure::Transient(e.to_string()))?;
                }
                Err(e) if e.is_transient() => return Err(Failure::Transient(e.to_string())),
                Err(e) => return Err(Failure::Terminal(e.to_string())),
            }
        }
        Err(Failure::Transient("Gmail refused a fresh access token; retrying later".into()))
    }

    async fn graph(&self, inbox: &EmailAddress, user: &str, mime: &[u8]) -> Result<Accepted, Failure> {
        let cfg = &self.cfg.microsoft;
        let client = GraphClient::shared(&cfg.api_base).map_err(|e| Failure::Transient(e.to_string()))?;
        for retry in [false, true] {
            let token = oauth::access_token(&self.ports, &cfg.oauth, inbox).await.map_err(token_failure)?;
            match client.send_mail(&token, user, mime).await {
                Ok(()) => return Ok(Accepted::default()),
                Err(GraphError::Unauthorized { .. }) if !retry => {
                    oauth::expire_access_token(&self.ports, inbox, Some(&token))
                        .await
                        .map_err(|e| Failure::Transient(e.to_string()))?;
                }
                Err(e) if e.is_transient() => return Err(Failure::Transient(e.to_string())),
                Err(e) => return Err(Failure::Terminal(e.to_string())),
            }
        }
        Err(Failure::Transient("Graph refused a fresh access token; retrying later".into()))
    }

    async fn smtp(
        &self,
        inbox: &EmailAddress,
        settings: Value,
        to: &[String],
        mime: &[u8],
        file_sent: bool,
    ) -> Result<Accepted, Failure> {
        use crate::mailbox::imap::{ImapSettings, PollOptions, SECRET};
        use mailroom_providers::imap::{Credentials, ImapSession};
        use mailroom_providers::smtp::{self, SmtpEndpoint};
        let settings: ImapSettings = serde_json::from_value(settings).map_err(|e| {
            Failure::Terminal(format!("{inbox}: IMAP settings are unreadable ({e}): connect it again"))
        })?;
        let Some(smtp_cfg) = settings.smtp.clone() else {
            return Err(Failure::Terminal(format!(
                "{inbox} is an IMAP inbox without SMTP settings: run `mailroom inbox connect-imap {inbox} ... --smtp-host HOST` to send replies"
            )));
        };
        let password = match connection::get_secret(&self.ports, inbox, SECRET).await {
            Ok(Some(v)) => String::from_utf8(v.value)
                .map_err(|_| Failure::Terminal("the stored password is not UTF-8".into()))?,
            Ok(None) => {
                return Err(Failure::Terminal(format!("{inbox} has no stored password: connect it again")));
            }
            Err(e) => return Err(Failure::Transient(e.to_string())),
        };
        let ep = SmtpEndpoint {
            host: smtp_cfg.host.clone(),
            port: smtp_cfg.port,
            security: smtp_cfg.security,
            extra_ca_pem: settings.ca_pem.clone(),
            hello_name: inbox.domain().to_string(),
            timeout: std::time::Duration::from_secs(60),
            allow_private: settings.allow_private_host,
        };
        let user = smtp_cfg.user.clone().unwrap_or_else(|| settings.user.clone());
        smtp::send(&ep, Some((user, password.clone())), &inbox.key(), to, mime).await.map_err(|e| {
            if e.is_transient() {
                Failure::Transient(e.to_string())
            } else {
                Failure::Terminal(e.to_string())
            }
        })?;
        let mut acc = Accepted::default();
        if smtp_cfg.append_sent && file_sent {
            // Sent already: a failed APPEND is recorded, never retried as a send.
            let creds = Credentials::Password { user: settings.user.clone(), password };
            let appended = async {
                let mut session =
                    ImapSession::connect(&settings.endpoint(&PollOptions::default()), &creds).await?;
                let folders = session.folders().await;
                let r = match folders.map(|f| settings.sent_of(&f)) {
                    Ok(Some(sent)) => session.append(&sent, mime).await.map(|_| true),
                    Ok(None) => Ok(false),
                    Err(e) => Err(e),
                };
                session.logout().await;
                r
            }
            .await;
            match appended {
                Ok(true) => {}
                Ok(false) => {
                    acc.note =
                        Some("sent; the IMAP server marks no folder \\Sent, so no copy was filed".into())
                }
                Err(e) => {
                    tracing::warn!(inbox = %inbox, error = %e, "reply sent, but APPEND to Sent failed");
                    acc.note = Some(format!("sent; filing the copy in Sent failed: {e}"));
                }
            }
        }
        Ok(acc)
    }
}

fn token_failure(e: SourceError) -> Failure {
    match e {
        SourceError::Reconnect(m) => Failure::Terminal(format!("the inbox must be connected again: {m}")),
        other => Failure::Transient(other.to_string()),
    }
}

#[async_trait]
impl MessageHandler for SendHandler {
    async fn handle(&self, body: &str) -> anyhow::Result<()> {
        let ptr: SendPointer =
            serde_json::from_str(body).context("send queue message is not a send pointer")?;
        self.process(&ptr).await
    }
}
