//! Replies (docs/replies.md), the queue side: `queue_reply` composes the MIME of an
//! agent's reply now, so its signed Message-ID is fixed before anything is sent, stores
//! it, records an outbox entry (idempotent per conversation and client request id) and
//! queues a pointer on the send queue, where `send.rs` takes it. `reply_recipients` says
//! who a reply goes to by default, and who of them is new to the conversation.
//!
//! Items (docs/storage.md):
//! - `outbox#{conversation}` / `req#{request_id}`: the entry (status `queued`, `sending`,
//!   `sent`, `failed`; attempts, last error, provider ids);
//! - `sent#{message_id}` / `sent`: who wrote the reply with that Message-ID, for the match
//!   stage (the From of a shared inbox's reply is the inbox, not the agent).

use crate::keys;
use crate::keys::conv_key;
use crate::records::Message;
use crate::runtime::ports::Ports;
use crate::thread::Threader;
use anyhow::{Context, anyhow};
use bytes::Bytes;
use mailroom_core::workspace::{InboxType, Workspace};
use mailroom_core::{EmailAddress, Folder, IngestPointer, sha256, understand};
use mailroom_store::{Cond, Item, Query, StoreError, TransactOp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use thiserror::Error;

/// A reply as the API hands it over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyRequest {
    /// The client's id for this reply: the same id again is the same reply.
    pub request_id: String,
    /// The workspace user who writes it.
    pub author: String,
    pub text: String,
    /// The HTML version; without it the HTML part is made from `text`.
    #[serde(default)]
    pub html: Option<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    /// The recipients as the agent confirmed them; `None`: the default ones
    /// ([`reply_recipients`]), which must then all be people already in the conversation.
    #[serde(default)]
    pub to: Option<Vec<String>>,
    /// Uploads and forwarded attachments (`crate::outbound::attach`).
    #[serde(default)]
    pub attachments: Vec<crate::outbound::attach::ReplyAttachment>,
}

/// Who a reply goes to by default, and who of them is new to the conversation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recipients {
    pub to: Vec<String>,
    /// Addresses of `to` that were not in the conversation before the message replied to
    /// (a third party who joined the thread, a Reply-To elsewhere): a reply goes to them
    /// only when the agent names them.
    pub new: Vec<String>,
    /// The message replied to.
    pub in_reply_to: Option<String>,
}

/// An outbox entry (`outbox#{conversation}` / `req#{request_id}`), as stored and as the
/// conversation view shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct OutboxView {
    pub conversation: String,
    pub request_id: String,
    /// `queued`, `sending`, `sent` or `failed`.
    pub status: String,
    pub message_id: String,
    pub inbox: String,
    pub author: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub in_reply_to: Option<String>,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The provider's id of the sent message (Gmail message id; none for Graph and SMTP).
    pub provider_id: Option<String>,
    pub created_at: String,
    pub sent_at: Option<String>,
    /// The files the reply carries.
    pub attachments: Vec<crate::outbound::attach::SentFile>,
}

#[derive(Debug, Error)]
pub enum SendError {
    #[error("conversation {0} does not exist")]
    ConversationNotFound(String),
    /// The request is wrong (400/422): the message says what to change.
    #[error("{0}")]
    Invalid(String),
    #[error(
        "request id {request_id:?} was already used for a different reply in this conversation: send the same body to retry it, or use a new request id"
    )]
    Conflict { request_id: String },
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<crate::outbound::attach::AttachError> for SendError {
    fn from(e: crate::outbound::attach::AttachError) -> Self {
        match e {
            crate::outbound::attach::AttachError::Invalid(m) => SendError::Invalid(m),
            crate::outbound::attach::AttachError::Other(e) => SendError::Other(e),
        }
    }
}

impl From<StoreError> for SendError {
    fn from(e: StoreError) -> SendError {
        SendError::Other(e.into())
    }
}

/// The send queue's message: which entry to send.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendPointer {
    pub conversation: String,
    pub request_id: String,
}

use crate::keys::item_str as s;

pub(crate) fn view(item: &Item) -> OutboxView {
    crate::records::read(item)
}

fn valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
}

/// A conversation's messages in the order we received them (the `gsi1sk` of a message is
/// its receipt time, then its id: written by us, never by the sender).
async fn messages_by_receipt(ports: &Ports, root: &str, inbox: &str) -> anyhow::Result<Vec<Item>> {
    let mut items = crate::views::conversations::messages_of(ports, root).await?;
    let mut ids: Vec<String> = Vec::new();
    if items.is_empty() {
        // Not yet through the report stage: read the inbox's messages instead.
        let mut roots = crate::thread::RootCache::new(ports);
        let addr = mailroom_core::EmailAddress::parse(inbox)?;
        for m in crate::views::conversations::inbox_messages(ports, &addr).await? {
            let Some(conv) = s(&m, "conversation") else { continue };
            if roots.root(&conv).await?.id == root
                && let Some(mid) = s(&m, "message_id")
                && !ids.contains(&mid)
            {
                ids.push(mid);
                items.push(m);
            }
        }
    }
    items.sort_by_key(|m| s(m, "gsi1sk").unwrap_or_default());
    Ok(items)
}

/// The message a reply answers: the normal inbound message we received last, else the
/// last message of any kind. By receipt, never by the Date header: a message with a
/// forged Date must not take the agent's reply.
fn reply_target(items: &[Item]) -> Option<&Item> {
    let normal_inbound = |m: &&Item| {
        let m = Message::from_item(m);
        m.direction.as_deref() == Some("inbound") && m.kind() == "normal"
    };
    items.iter().rev().find(normal_inbound).or_else(|| items.last())
}

/// Every address in the From, To and Cc of these messages (lower case).
fn participants(items: &[Item]) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for m in items.iter().map(Message::from_item) {
        out.extend(m.from.iter().chain(&m.to).chain(&m.cc).map(|a| a.to_lowercase()));
    }
    out
}

/// Who a reply to `conversation` goes to by default: the sender (or Reply-To) of the
/// message replied to, or the recipients of our own message when the last one is ours;
/// our own addresses left out. Addresses that were in none of the messages received
/// before that one are listed in `new` (for the first message, its sender is the
/// customer: nothing is new).
pub async fn reply_recipients(
    ports: &Ports,
    ws: &Workspace,
    conversation: &str,
) -> anyhow::Result<Recipients> {
    let root = Threader::new(ports).find(conversation).await?;
    let inbox = s(&root.item, "inbox").context("conversation has no inbox")?;
    let items = messages_by_receipt(ports, &root.id, &inbox).await?;
    let Some(target) = reply_target(&items) else { return Ok(Recipients::default()) };
    let raw_key = s(target, "raw_key").context("message has no raw_key")?;
    let raw =
        ports.blobs.get(&raw_key).await?.with_context(|| format!("raw message {raw_key} is missing"))?;
    let parsed = understand(&raw).with_context(|| format!("raw message {raw_key}"))?.message;
    let own =
        |a: &str| a.eq_ignore_ascii_case(&inbox) || ws.users.iter().any(|u| u.email.eq_ignore_ascii_case(a));
    let inbound = s(target, "direction").as_deref() != Some("outbound");
    let people = if !inbound {
        parsed.to.clone()
    } else if !parsed.reply_to.is_empty() {
        parsed.reply_to.clone()
    } else {
        parsed.from.clone().into_iter().collect()
    };
    let mut to: Vec<String> = Vec::new();
    for p in people {
        if let Ok(a) = EmailAddress::parse(&p.email)
            && !own(&a.key())
            && !to.contains(&a.key())
        {
            to.push(a.key());
        }
    }
    let position = items.iter().position(|m| std::ptr::eq(m, target)).unwrap_or(0);
    let before = participants(&items[..position]);
    let new =
        if position == 0 { vec![] } else { to.iter().filter(|a| !before.contains(*a)).cloned().collect() };
    Ok(Recipients { to, new, in_reply_to: Some(parsed.message_id).filter(|_| !parsed.synthetic_id) })
}

/// The Gmail thread (or Graph conversation) of the message replied to, from the copy of
/// it in `inbox` (the source's thread hint, see gmail.rs).
async fn provider_thread(
    ports: &Ports,
    target: &Item,
    inbox: &EmailAddress,
) -> anyhow::Result<Option<String>> {
    let copies = target.get("copies").and_then(Value::as_array).cloned().unwrap_or_default();
    for c in copies {
        if c.get("inbox").and_then(Value::as_str) != Some(inbox.key().as_str()) {
            continue;
        }
        let (Some(sha), Some(folder)) = (
            c.get("sha256").and_then(|v| serde_json::from_value(v.clone()).ok()),
            c.get("folder").and_then(|v| serde_json::from_value::<Folder>(v.clone()).ok()),
        ) else {
            continue;
        };
        if let Some(copy) = ports.table.get(&keys::raw_copy(&sha, inbox, folder)).await?
            && let Some(p) =
                copy.get("pointer").and_then(|p| serde_json::from_value::<IngestPointer>(p.clone()).ok())
            && p.thread_hint.is_some()
        {
            return Ok(p.thread_hint);
        }
    }
    Ok(None)
}

fn html_escape(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn text_to_html(t: &str) -> String {
    html_escape(t).replace("\r\n", "\n").replace('\n', "<br>\n")
}

/// `Re: ` once: a subject that already is a reply keeps its prefix.
pub fn reply_subject(subject: &str) -> String {
    let subject = subject.trim();
    if mailroom_core::subject::analyse(subject).reply {
        subject.to_string()
    } else {
        format!("Re: {subject}")
    }
}

/// The display name of a shared inbox: its local part, capitalised ("Support").
fn inbox_label(inbox: &EmailAddress) -> String {
    let local = inbox.key().split('@').next().unwrap_or_default().to_string();
    let mut c = local.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => local,
    }
}

/// What a composed reply is.
struct Composed {
    mime: Vec<u8>,
    message_id: String,
    to: Vec<String>,
    cc: Vec<String>,
    subject: String,
    in_reply_to: Option<String>,
}

struct ComposeInput<'a> {
    ports: &'a Ports,
    root: &'a str,
    inbox: &'a EmailAddress,
    from_name: String,
    nonce: &'a str,
    to: Vec<String>,
    cc: Vec<String>,
    subject: String,
    parent: Option<String>,
    references: Vec<String>,
    text: String,
    html: Option<String>,
    signatures: Vec<String>,
    tracking_base: Option<&'a str>,
    attachments: &'a [crate::outbound::attach::Resolved],
}

fn compose(c: ComposeInput<'_>) -> Result<Composed, SendError> {
    use lettre::message::header::{HeaderName, HeaderValue};
    use lettre::message::{Mailbox, MultiPart};
    let signer = &c.ports.signer;
    let message_id = signer.message_id(c.root, c.nonce, c.inbox.domain());
    let marker = signer.body_marker(c.root, c.nonce);
    let mut text = c.text.trim_end().to_string();
    let mut sig_html = String::new();
    if !c.signatures.is_empty() {
        text.push_str("\n\n-- \n");
        text.push_str(&c.signatures.join("\n\n"));
        sig_html = format!(
            "<div class=\"mr-signature\">-- <br>\n{}</div>\n",
            c.signatures.iter().map(|s| format!("<p>{}</p>", text_to_html(s))).collect::<Vec<_>>().join("\n")
        );
    }
    // The marker is the fallback for providers that rewrite Message-IDs: a customer's
    // reply quoting our text still finds its conversation.
    text.push_str(&format!("\n\n{marker}\n"));
    let body_html =
        c.html.clone().unwrap_or_else(|| format!("<div>{}</div>", text_to_html(c.text.trim_end())));
    let mut html = format!(
        "<!DOCTYPE html>\n<html><body>\n{body_html}\n<br>\n{sig_html}<div style=\"display:none;font-size:1px;color:#ffffff\">{marker}</div>\n</body></html>\n"
    );
    let recipients: Vec<String> = c.to.iter().chain(&c.cc).cloned().collect();
    if let Some(base) = c.tracking_base {
        html = crate::outbound::track::add_trackers(signer, base, &message_id, &recipients, &html);
    }
    let invalid = |what: &str, e: &dyn std::fmt::Display| SendError::Invalid(format!("{what}: {e}"));
    let from = Mailbox::new(
        Some(c.from_name.clone()),
        c.inbox.key().parse().map_err(|e| invalid("inbox address", &e))?,
    );
    let mut b = lettre::Message::builder()
        .from(from)
        .subject(c.subject.clone())
        .message_id(Some(format!("<{message_id}>")))
        .date(std::time::SystemTime::from(c.ports.clock.now()));
    for t in &c.to {
        b = b.to(Mailbox::new(None, t.parse().map_err(|e| invalid(&format!("recipient {t}"), &e))?));
    }
    for t in &c.cc {
        b = b.cc(Mailbox::new(None, t.parse().map_err(|e| invalid(&format!("Cc {t}"), &e))?));
    }
    if let Some(p) = &c.parent {
        b = b.in_reply_to(format!("<{p}>"));
    }
    if !c.references.is_empty() {
        b = b.references(c.references.iter().map(|r| format!("<{r}>")).collect::<Vec<_>>().join(" "));
    }
    // Tells our own pipeline that this message came from us if it ever loops back in.
    let loop_name =
        HeaderName::new_from_ascii("X-Mailroom-Loop".into()).map_err(|e| anyhow!("header name: {e}"))?;
    b = b.raw_header(HeaderValue::new(loop_name, c.inbox.key()));
    let body = MultiPart::alternative_plain_html(text, html);
    let body = if c.attachments.is_empty() {
        body
    } else {
        // lettre writes a non-ASCII file name as RFC 2231 (`filename*=utf-8''...`).
        let mut mixed = MultiPart::mixed().multipart(body);
        for a in c.attachments {
            let ct = lettre::message::header::ContentType::parse(&a.content_type)
                .map_err(|e| invalid(&format!("content type of {}", a.name), &e))?;
            mixed =
                mixed.singlepart(lettre::message::Attachment::new(a.name.clone()).body(a.bytes.to_vec(), ct));
        }
        mixed
    };
    let msg = b.multipart(body).map_err(|e| SendError::Invalid(format!("cannot build the message: {e}")))?;
    Ok(Composed {
        mime: msg.formatted(),
        message_id,
        to: c.to,
        cc: c.cc,
        subject: c.subject,
        in_reply_to: c.parent,
    })
}

/// Queues a reply to `conversation`: composes and stores its MIME, records the outbox
/// entry and puts a pointer on the send queue. Idempotent per (conversation,
/// `request_id`): the same request again returns the existing entry (and queues its
/// pointer again while it is still `queued`, in case the first call died before that);
/// a different body under the same request id is a `Conflict`.
/// `track_base`: the public URL tracking links point to, when the inbox has `tracking`.
pub async fn queue_reply(
    ports: &Ports,
    ws: &Workspace,
    conversation: &str,
    req: ReplyRequest,
    track_base: Option<&str>,
) -> Result<OutboxView, SendError> {
    if !valid_request_id(&req.request_id) {
        return Err(SendError::Invalid(
            "request_id must be 1-128 characters of letters, digits, '-', '_', '.', ':'".into(),
        ));
    }
    if req.text.trim().is_empty() && req.html.as_deref().is_none_or(|h| h.trim().is_empty()) {
        return Err(SendError::Invalid("the reply is empty: give text (and optionally html)".into()));
    }
    let user = ws
        .users
        .iter()
        .find(|u| u.email.eq_ignore_ascii_case(&req.author))
        .ok_or_else(|| SendError::Invalid(format!("author {} is not a workspace user", req.author)))?;
    let mut cc = Vec::new();
    for c in &req.cc {
        let a = EmailAddress::parse(c).map_err(|e| SendError::Invalid(format!("cc {c:?}: {e}")))?;
        if !cc.contains(&a.key()) {
            cc.push(a.key());
        }
    }
    let fingerprint = sha256(
        serde_json::to_string(&json!([
            user.email.to_lowercase(),
            req.text,
            req.html,
            cc,
            req.to,
            req.attachments
        ]))
        .map_err(|e| anyhow!(e))?
        .as_bytes(),
    )
    .to_string();
    let key = keys::outbox_key(conversation, &req.request_id);
    if let Some(existing) = ports.table.get(&key).await? {
        return same_request(ports, existing, &fingerprint, &req.request_id).await;
    }

    if ports.table.get(&conv_key(conversation)).await?.is_none() {
        return Err(SendError::ConversationNotFound(conversation.to_string()));
    }
    let root = Threader::new(ports).find(conversation).await?;
    let inbox_addr = s(&root.item, "inbox").context("conversation has no inbox")?;
    let inbox =
        EmailAddress::parse(&inbox_addr).map_err(|e| anyhow!("conversation inbox {inbox_addr}: {e}"))?;
    let ws_inbox = ws.inboxes.iter().find(|i| i.address.eq_ignore_ascii_case(&inbox.key()));
    let items = messages_by_receipt(ports, &root.id, &inbox.key()).await?;
    let target = reply_target(&items).cloned().ok_or_else(|| {
        SendError::Invalid(format!("conversation {conversation} has no message to reply to"))
    })?;
    let provider = ws_inbox.map(|i| i.provider).unwrap_or_default();
    let files =
        crate::outbound::attach::resolve(ports, &user.email, &items, &req.attachments, provider).await?;
    let raw_key = s(&target, "raw_key").context("message has no raw_key")?;
    let raw =
        ports.blobs.get(&raw_key).await?.with_context(|| format!("raw message {raw_key} is missing"))?;
    let parsed = understand(&raw).with_context(|| format!("raw message {raw_key}"))?.message;
    drop(raw);

    let test_run = s(&root.item, "test");
    let own = |a: &str| {
        a.eq_ignore_ascii_case(&inbox.key()) || ws.users.iter().any(|u| u.email.eq_ignore_ascii_case(a))
    };
    let to: Vec<String> = match &req.to {
        // The agent named the recipients: they saw them.
        Some(list) => {
            let mut to = Vec::new();
            for t in list {
                let a = EmailAddress::parse(t).map_err(|e| SendError::Invalid(format!("to {t:?}: {e}")))?;
                // A verification (crate::verify) replies to the inbox itself: the reply
                // proves the send path and comes back as a copy of our own message.
                let to_self = test_run.is_some() && a.key() == inbox.key();
                if own(&a.key()) && !to_self {
                    return Err(SendError::Invalid(format!("{} is one of our own addresses", a.key())));
                }
                if !to.contains(&a.key()) {
                    to.push(a.key());
                }
            }
            to
        }
        None => {
            let r = reply_recipients(ports, ws, &root.id).await?;
            if !r.new.is_empty() {
                return Err(SendError::Invalid(format!(
                    "the message replied to asks for a reply to {}, who {} not in this conversation before: name the recipients (`to`) to confirm",
                    r.new.join(", "),
                    if r.new.len() == 1 { "was" } else { "were" }
                )));
            }
            r.to
        }
    };
    if to.is_empty() {
        return Err(SendError::Invalid(format!(
            "the message replied to ({}) has no external sender or recipient to answer",
            parsed.message_id
        )));
    }
    cc.retain(|c| !to.contains(c) && !c.eq_ignore_ascii_case(&inbox.key()));

    let (parent, mut references) = if parsed.synthetic_id {
        (None, Vec::new())
    } else {
        (Some(parsed.message_id.clone()), parsed.references.clone())
    };
    if let Some(p) = &parent
        && !references.contains(p)
    {
        references.push(p.clone());
    }
    let subject_src = if parsed.subject.trim().is_empty() {
        s(&root.item, "subject").unwrap_or_default()
    } else {
        parsed.subject.clone()
    };
    let signatures: Vec<String> = [user.signature.clone(), ws_inbox.and_then(|i| i.signature.clone())]
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let from_name = match ws_inbox.map(|i| i.kind) {
        Some(InboxType::Individual) => user.name.clone(),
        _ => format!("{} via {}", user.name, inbox_label(&inbox)),
    };
    // Derived, so that the same request always gets the same Message-ID.
    let nonce = sha256(format!("{}\0{}", root.id, req.request_id).as_bytes()).to_string()[..16].to_string();
    let tracking_base = track_base.filter(|_| ws_inbox.is_some_and(|i| i.tracking));
    let composed = compose(ComposeInput {
        ports,
        root: &root.id,
        inbox: &inbox,
        from_name,
        nonce: &nonce,
        to,
        cc,
        subject: reply_subject(&subject_src),
        parent,
        references,
        text: req.text.clone(),
        html: req.html.clone(),
        signatures,
        tracking_base,
        attachments: &files,
    })?;
    let thread = provider_thread(ports, &target, &inbox).await?;

    let mime_sha = sha256(&composed.mime);
    let blob = format!("out/{}/{mime_sha}.eml", root.id);
    ports.blobs.put_if_absent(&blob, Bytes::from(composed.mime), "message/rfc822").await?;
    let now = ports.clock.now().to_rfc3339();
    let mut item = key.item();
    let put = |item: &mut Item, k: &str, v: Value| {
        item.insert(k.into(), v);
    };
    put(&mut item, "conversation", json!(conversation));
    put(&mut item, "root", json!(root.id));
    put(&mut item, "request_id", json!(req.request_id));
    put(&mut item, "fingerprint", json!(fingerprint));
    put(&mut item, "status", json!("queued"));
    put(&mut item, "message_id", json!(composed.message_id));
    put(&mut item, "inbox", json!(inbox.key()));
    put(&mut item, "author", json!(user.email.to_lowercase()));
    put(&mut item, "to", json!(composed.to));
    put(&mut item, "cc", json!(composed.cc));
    put(&mut item, "subject", json!(composed.subject));
    put(&mut item, "in_reply_to", json!(composed.in_reply_to));
    put(&mut item, "reply_thread", json!(thread));
    put(&mut item, "blob", json!(blob));
    let files: Vec<_> = files.iter().map(crate::outbound::attach::Resolved::sent_file).collect();
    put(&mut item, "attachments", json!(files));
    put(&mut item, "attempts", json!(0));
    put(&mut item, "created_at", json!(now));
    let mut sent = keys::sent_key(&composed.message_id).item();
    sent.insert("author".into(), json!(user.email.to_lowercase()));
    sent.insert("conversation".into(), json!(conversation));
    sent.insert("request_id".into(), json!(req.request_id));
    if let Some(run) = &test_run {
        sent.insert("test".into(), json!(run));
    }
    let ops = vec![
        TransactOp::Put { item: item.clone(), cond: Some(Cond::NotExists) },
        TransactOp::Put { item: sent, cond: Some(Cond::NotExists) },
    ];
    match ports.table.transact_write(ops).await {
        Ok(()) => {}
        Err(StoreError::TransactionCanceled { .. } | StoreError::ConditionFailed) => {
            // A concurrent call with the same request id won.
            let existing = ports.table.get(&key).await?.context("outbox entry vanished")?;
            return same_request(ports, existing, &fingerprint, &req.request_id).await;
        }
        Err(e) => return Err(e.into()),
    }
    enqueue(ports, conversation, &req.request_id).await?;
    tracing::info!(conversation, request_id = %req.request_id, message_id = %s(&item, "message_id").unwrap_or_default(), "reply queued");
    Ok(view(&item))
}

async fn enqueue(ports: &Ports, conversation: &str, request_id: &str) -> Result<(), SendError> {
    let body = serde_json::to_string(&SendPointer {
        conversation: conversation.into(),
        request_id: request_id.into(),
    })
    .map_err(|e| anyhow!(e))?;
    ports.send_queue.send(&body).await?;
    Ok(())
}

async fn same_request(
    ports: &Ports,
    existing: Item,
    fingerprint: &str,
    request_id: &str,
) -> Result<OutboxView, SendError> {
    if s(&existing, "fingerprint").as_deref() != Some(fingerprint) {
        return Err(SendError::Conflict { request_id: request_id.to_string() });
    }
    if s(&existing, "status").as_deref() == Some("queued") {
        // The first call may have died between the entry and the queue; the handler
        // ignores a second pointer to an entry it has sent.
        enqueue(ports, &s(&existing, "conversation").unwrap_or_default(), request_id).await?;
    }
    Ok(view(&existing))
}

/// The outbox entries of a conversation (and of the conversations merged into it),
/// oldest first.
pub async fn outbox(ports: &Ports, conversation: &str) -> anyhow::Result<Vec<OutboxView>> {
    let mut ids = vec![conversation.to_string()];
    if let Some(_c) = ports.table.get(&conv_key(conversation)).await? {
        let root = Threader::new(ports).find(conversation).await?;
        let merged: Vec<String> =
            root.item.get("merged").and_then(|m| serde_json::from_value(m.clone()).ok()).unwrap_or_default();
        ids.push(root.id);
        ids.extend(merged);
    }
    ids.dedup();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        if !seen.insert(id.clone()) {
            continue;
        }
        for item in ports.table.query_all(Query::new(format!("outbox#{id}"))).await? {
            out.push(view(&item));
        }
    }
    out.sort_by(|a, b| (&a.created_at, &a.request_id).cmp(&(&b.created_at, &b.request_id)));
    Ok(out)
}

/// Why an attempt did not send.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_get_one_re() {
        assert_eq!(reply_subject("Order 12"), "Re: Order 12");
        assert_eq!(reply_subject("Re: Order 12"), "Re: Order 12");
        assert_eq!(reply_subject("AW: Bestellung"), "AW: Bestellung");
    }

    #[test]
    fn request_ids() {
        assert!(valid_request_id("a1-b_2.c:3"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("a b"));
        assert!(!valid_request_id(&"x".repeat(129)));
    }
}
