//! The chat channel: a visitor's chat session and its messages, stored like mail. Each
//! message a visitor writes becomes an RFC 5322 message from the visitor to the widget's
//! inbox (`Message-ID: <chat.{session}.{n}@{inbox domain}>`, each one after the first
//! answering the first) and goes to the [`Ingestor`] like every other source, so the same
//! match, routing and ticket stages apply and the conversation is on the visitor's
//! contact with channel `chat`. An agent's reply reaches the visitor live while they are
//! connected, else by email (`outbound::send`); the visitor's emailed answer threads into
//! the same conversation through its `In-Reply-To`.
//!
//! The live transport (WebSockets, the hub) is `crate::live`; docs/chat.md has the
//! protocol and the decisions.

pub mod push;

use crate::keys;
use crate::keys::item_str as s;
use crate::pipeline::ingest::{CHAT_SOURCE, Ingestor, RawMail};
use crate::runtime::ports::Ports;
use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use mailroom_core::workspace::ChatWidget;
use mailroom_core::{EmailAddress, Folder};
use mailroom_store::{Cond, Item, Update};
use serde::Serialize;
use serde_json::{Value, json};

/// The longest message a visitor may send, in characters.
pub const MAX_TEXT: usize = 4000;
/// A visitor whose connection has not been seen for this long is gone: replies go by email.
pub const ONLINE_FOR: Duration = Duration::seconds(60);
const TOKEN_PURPOSE: &str = "chat-session";

/// A chat session: who the visitor said they are, and on which widget.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: String,
    pub widget: String,
    pub name: Option<String>,
    pub email: EmailAddress,
}

/// One line of a chat's history as the visitor sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Line {
    /// `visitor` or `agent`.
    pub from: &'static str,
    pub name: Option<String>,
    pub text: String,
    pub at: String,
    pub message_id: String,
}

/// The token the visitor's browser keeps: the session id and our signature over it and
/// the widget, so a visitor can only ever resume their own session.
pub fn token(ports: &Ports, widget: &str, session: &str) -> String {
    let sig = ports.signer.sign(TOKEN_PURPOSE, &format!("{widget}\0{session}"));
    format!("{session}.{sig}")
}

/// The session id of a token, when we signed it for this widget.
pub fn verify_token(ports: &Ports, widget: &str, token: &str) -> Option<String> {
    let (session, sig) = token.split_once('.')?;
    let ok = session.len() == 32 && session.chars().all(|c| c.is_ascii_hexdigit());
    (ok && ports.signer.verify(TOKEN_PURPOSE, &format!("{widget}\0{session}"), sig))
        .then(|| session.to_string())
}

/// One line, no control characters, at most `max` characters: names go into headers.
fn one_line(v: &str, max: usize) -> String {
    v.chars().map(|c| if c.is_control() { ' ' } else { c }).take(max).collect::<String>().trim().to_string()
}

/// Opens a session for a visitor who gave their email (and maybe their name).
pub async fn start(ports: &Ports, widget: &ChatWidget, name: &str, email: &str) -> Result<Session, String> {
    let email = EmailAddress::parse(email.trim())
        .map_err(|_| format!("{:?} is not an email address we can answer", one_line(email, 80)))?;
    let name = Some(one_line(name, 100)).filter(|n| !n.is_empty());
    let id = hex::encode(rand::random::<[u8; 16]>());
    let mut item = keys::chat_session_key(&id).item();
    item.insert("widget".into(), json!(widget.id));
    item.insert("inbox".into(), json!(widget.inbox));
    item.insert("email".into(), json!(email.key()));
    item.insert("name".into(), json!(name));
    item.insert("count".into(), json!(0));
    item.insert("created_at".into(), json!(ports.clock.now().to_rfc3339()));
    ports.table.put(item, Some(Cond::NotExists)).await.map_err(|e| format!("storing the session: {e}"))?;
    Ok(Session { id, widget: widget.id.clone(), name, email })
}

/// A session by id, when it belongs to `widget`.
pub async fn load(ports: &Ports, widget: &str, id: &str) -> anyhow::Result<Option<Session>> {
    let Some(item) = ports.table.get(&keys::chat_session_key(id)).await? else { return Ok(None) };
    if s(&item, "widget").as_deref() != Some(widget) {
        return Ok(None);
    }
    let email = EmailAddress::parse(&s(&item, "email").unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("chat session {id}: {e}"))?;
    Ok(Some(Session { id: id.to_string(), widget: widget.to_string(), name: s(&item, "name"), email }))
}

fn domain_of(inbox: &str) -> &str {
    inbox.rsplit_once('@').map_or("mailroom.invalid", |x| x.1)
}

/// The Message-ID (without brackets) of a session's `n`th message.
pub fn message_id(session: &str, n: i64, inbox: &str) -> String {
    format!("chat.{session}.{n}@{}", domain_of(inbox))
}

/// The session a chat message's id names.
pub fn session_of_message_id(message_id: &str) -> Option<&str> {
    let rest = message_id.trim_matches(['<', '>']).strip_prefix("chat.")?;
    let (session, _) = rest.split_once('.')?;
    (session.len() == 32 && session.chars().all(|c| c.is_ascii_hexdigit())).then_some(session)
}

/// The RFC 5322 message of a visitor's `n`th line.
pub fn build_message(
    widget: &ChatWidget,
    session: &Session,
    n: i64,
    text: &str,
    page: Option<&str>,
    date: DateTime<Utc>,
) -> anyhow::Result<Vec<u8>> {
    use lettre::message::Mailbox;
    use lettre::message::header::{ContentType, HeaderName, HeaderValue};
    let inbox: lettre::Address =
        widget.inbox.parse().with_context(|| format!("chat inbox {:?}", widget.inbox))?;
    let from = Mailbox::new(session.name.clone(), session.email.key().parse().context("visitor address")?);
    let who = session.name.clone().unwrap_or_else(|| session.email.key());
    let mut b = lettre::Message::builder()
        .from(from)
        .to(Mailbox::new(None, inbox))
        .subject(format!("Chat with {who}"))
        .date(date.into())
        .message_id(Some(format!("<{}>", message_id(&session.id, n, &widget.inbox))));
    if n > 1 {
        let first = format!("<{}>", message_id(&session.id, 1, &widget.inbox));
        b = b.in_reply_to(first.clone()).references(first);
    }
    let mut msg =
        b.header(ContentType::TEXT_PLAIN).body(text.to_string()).context("building the chat message")?;
    let raw = |name: &'static str, value: &str| {
        HeaderValue::new(HeaderName::new_from_ascii_str(name), value.to_string())
    };
    msg.headers_mut().insert_raw(raw("X-Mailroom-Channel", "chat"));
    msg.headers_mut().insert_raw(raw("X-Mailroom-Chat-Widget", &widget.id));
    if let Some(p) = page {
        msg.headers_mut().insert_raw(raw("X-Mailroom-Chat-Page", &one_line(p, 500)));
    }
    Ok(msg.formatted())
}

/// Stores a visitor's message and hands it to the pipeline; returns its Message-ID.
pub async fn post(
    ports: &Ports,
    ingestor: &Ingestor,
    widget: &ChatWidget,
    session: &Session,
    text: &str,
    page: Option<&str>,
) -> anyhow::Result<String> {
    let text = text.trim();
    anyhow::ensure!(!text.is_empty(), "an empty message");
    anyhow::ensure!(text.chars().count() <= MAX_TEXT, "a message longer than {MAX_TEXT} characters");
    let key = keys::chat_session_key(&session.id);
    let mut up = vec![Update::Add("count".into(), 1)];
    if let Some(p) = page {
        up.push(Update::Set("page".into(), json!(one_line(p, 500))));
    }
    let item = ports.table.update(&key, up, Some(Cond::Exists)).await?;
    let n = item.get("count").and_then(Value::as_i64).context("chat session count")?;
    let now = ports.clock.now();
    let date = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let raw = build_message(widget, session, n, text, page, date)?;
    let inbox = EmailAddress::parse(&widget.inbox).map_err(|e| anyhow::anyhow!("chat inbox: {e}"))?;
    let mut mail = RawMail::new(raw, CHAT_SOURCE);
    mail.inbox = Some(inbox);
    mail.folder = Some(Folder::Inbox);
    mail.source_id = Some(format!("{}.{n}", session.id));
    mail.received_at = Some(now);
    ingestor.ingest(mail).await?;
    ports.flush()?;
    Ok(message_id(&session.id, n, &widget.inbox))
}

/// The conversation (its root) of a session, once its first message is matched.
pub async fn conversation_of(
    ports: &Ports,
    widget: &ChatWidget,
    session: &str,
) -> anyhow::Result<Option<String>> {
    let Some(m) = ports.table.get(&keys::message(&message_id(session, 1, &widget.inbox))).await? else {
        return Ok(None);
    };
    let Some(conv) = s(&m, "conversation") else { return Ok(None) };
    Ok(Some(crate::thread::Threader::new(ports).find(&conv).await?.id))
}

/// The visitor's view of one stored message: the new text of its stored copy.
pub async fn line_of(ports: &Ports, m: &Item) -> Option<Line> {
    let key =
        m.get("copies").and_then(Value::as_array)?.iter().find_map(|c| c.get("key")?.as_str())?.to_string();
    let raw = ports.blobs.get(&key).await.ok()??;
    let inbound = s(m, "direction").as_deref() == Some("inbound");
    line_of_raw(&raw, inbound)
}

/// The visitor's view of a message's bytes (`inbound`: the visitor's own line).
pub fn line_of_raw(raw: &[u8], inbound: bool) -> Option<Line> {
    let parsed = mailroom_core::understand(raw).ok()?.message;
    let text = if parsed.new_text.trim().is_empty() { &parsed.text } else { &parsed.new_text };
    let from = parsed.from.as_ref();
    Some(Line {
        from: if inbound { "visitor" } else { "agent" },
        name: if inbound {
            None
        } else {
            from.and_then(|f| f.name.clone()).or_else(|| from.map(|f| f.email.clone()))
        },
        text: text.trim().to_string(),
        at: parsed.date.map(|d| d.to_rfc3339()).unwrap_or_default(),
        message_id: parsed.message_id,
    })
}

/// The frame that shows a line to the visitor.
pub fn line_frame(line: &Line) -> String {
    let mut v = json!({"type": "message"});
    if let (Some(o), Ok(Value::Object(l))) = (v.as_object_mut(), serde_json::to_value(line)) {
        o.extend(l);
    }
    v.to_string()
}

/// Whether a stored message belongs in the chat of `session`: the visitor's own lines of
/// this session, and the answers given in a chat. Nothing that went by email, either way:
/// the address a visitor types is not verified, so the chat never shows what was written
/// to or from that address by email (its owner's emailed answer threads into the same
/// conversation, and must not reach whoever typed their address).
fn in_chat(m: &Item, session: &str) -> bool {
    if s(m, "kind").is_some_and(|k| k != "normal") || s(m, "channel").as_deref() != Some("chat") {
        return false;
    }
    match s(m, "direction").as_deref() {
        Some("inbound") => s(m, "message_id").as_deref().and_then(session_of_message_id) == Some(session),
        Some("outbound") => true,
        _ => false,
    }
}

/// What the visitor has said and been told in the chat so far, oldest first ([`in_chat`]).
pub async fn history(ports: &Ports, widget: &ChatWidget, session: &str) -> anyhow::Result<Vec<Line>> {
    let Some(root) = conversation_of(ports, widget, session).await? else { return Ok(vec![]) };
    let mut out = Vec::new();
    for m in crate::views::conversations::messages_of(ports, &root).await? {
        if in_chat(&m, session)
            && let Some(l) = line_of(ports, &m).await
        {
            out.push(l);
        }
    }
    Ok(out)
}

/// The chat session an agent's reply answers live: the one whose line is the
/// conversation's latest message from the customer. When they last wrote by email, the
/// answer goes by email (the channel they used last), whoever is connected.
pub async fn session_to_answer(ports: &Ports, root: &str) -> anyhow::Result<Option<String>> {
    let msgs = crate::views::conversations::messages_of(ports, root).await?;
    let last = msgs.iter().rev().find(|m| {
        s(m, "direction").as_deref() == Some("inbound") && s(m, "kind").is_none_or(|k| k == "normal")
    });
    Ok(last
        .filter(|m| s(m, "channel").as_deref() == Some("chat"))
        .and_then(|m| s(m, "message_id"))
        .as_deref()
        .and_then(session_of_message_id)
        .map(str::to_string))
}

/// Marks the session's visitor as connected now (refreshed while the socket is open).
pub async fn mark_online(ports: &Ports, session: &str) -> anyhow::Result<()> {
    let mut item = keys::chat_online_key(session).item();
    let now = ports.clock.now();
    item.insert("seen_at".into(), json!(now.to_rfc3339()));
    // Dropped by DynamoDB's TTL a day later; `is_online` reads the time anyway.
    item.insert("ttl".into(), json!((now + Duration::days(1)).timestamp()));
    ports.table.put(item, None).await?;
    Ok(ports.flush()?)
}

pub async fn mark_offline(ports: &Ports, session: &str) -> anyhow::Result<()> {
    ports.table.delete(&keys::chat_online_key(session), None).await?;
    Ok(ports.flush()?)
}

/// Whether the session's visitor is connected (seen within [`ONLINE_FOR`]).
pub async fn is_online(ports: &Ports, session: &str) -> anyhow::Result<bool> {
    let Some(item) = ports.table.get(&keys::chat_online_key(session)).await? else { return Ok(false) };
    let seen = s(&item, "seen_at").and_then(|t| DateTime::parse_from_rfc3339(&t).ok());
    Ok(seen.is_some_and(|t| ports.clock.now() - t.with_timezone(&Utc) < ONLINE_FOR))
}

/// Whether a session's visitor is connected, and the page they last wrote from.
pub async fn visitor_state(ports: &Ports, session: &str) -> anyhow::Result<(bool, Option<String>)> {
    let page = ports.table.get(&keys::chat_session_key(session)).await?.and_then(|i| s(&i, "page"));
    Ok((is_online(ports, session).await?, page))
}

/// The chat session of a conversation: the one its visitor's messages name.
pub async fn session_of_conversation(ports: &Ports, root: &str) -> anyhow::Result<Option<String>> {
    for m in crate::views::conversations::messages_of(ports, root).await? {
        if s(&m, "channel").as_deref() == Some("chat")
            && let Some(sid) = s(&m, "message_id").as_deref().and_then(session_of_message_id)
        {
            return Ok(Some(sid.to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_name_their_session_and_nothing_else_does() {
        let sid = "0123456789abcdef0123456789abcdef";
        let mid = message_id(sid, 3, "support@acme.example");
        assert_eq!(mid, format!("chat.{sid}.3@acme.example"));
        assert_eq!(session_of_message_id(&format!("<{mid}>")), Some(sid));
        assert_eq!(session_of_message_id("chat.short.1@x"), None);
        assert_eq!(session_of_message_id("form.0123@x"), None);
    }

    #[test]
    fn built_message_threads_on_the_first_and_keeps_headers_single_line() {
        let w = ChatWidget { id: "site".into(), inbox: "support@acme.example".into(), ..Default::default() };
        let sess = Session {
            id: "0123456789abcdef0123456789abcdef".into(),
            widget: "site".into(),
            name: Some(one_line("Ann\r\nBcc: evil@x.example", 100)),
            email: EmailAddress::parse("ann@customer.example").unwrap(),
        };
        let raw =
            build_message(&w, &sess, 2, "Hello <b>there</b>", Some("https://shop.example/cart"), Utc::now())
                .unwrap();
        let text = String::from_utf8(raw).unwrap();
        assert!(
            text.contains("In-Reply-To: <chat.0123456789abcdef0123456789abcdef.1@acme.example>"),
            "{text}"
        );
        assert!(!text.contains("\r\nBcc:"), "{text}");
        let parsed = mailroom_core::understand(text.as_bytes()).unwrap().message;
        assert_eq!(parsed.new_text.trim(), "Hello <b>there</b>");
    }
}
