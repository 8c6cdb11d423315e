//! One normalised message from raw bytes: addresses, subject, dates, ids, text and
//! sanitised HTML, the new text of a reply, attachments, and its classification.
//! Parsing is mail-parser's; this module only normalises what it gives.

use crate::classify::{self, Bounce, Kind};
use crate::ids::{EmailAddress, sha256};
use crate::quote;
use crate::subject::{self, SubjectInfo};
use chrono::{DateTime, Utc};
use mail_parser::{Address, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use thiserror::Error;

/// A display name and an address (domain lower-cased).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mailbox {
    pub name: Option<String>,
    pub email: String,
    /// Read from a header RFC 5322 parsing could not read (`MAILER-DAEMON`, a missing `<`,
    /// an unquoted name with dots): the best reading, not what the header says exactly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repaired: bool,
}

/// What we keep of an attachment; its bytes go to the blob store under its sha256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub name: Option<String>,
    pub content_type: String,
    pub size: u64,
    pub sha256: String,
    /// Shown in the body (Content-Disposition inline, or referenced by Content-ID).
    pub inline: bool,
    pub content_id: Option<String>,
    /// An attached message (message/rfc822: a forwarded mail, a bounce's original), read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<AttachedMessage>,
}

/// What is shown of an attached message before it is opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedMessage {
    pub message_id: Option<String>,
    pub from: Option<Mailbox>,
    pub subject: String,
    pub date: Option<DateTime<Utc>>,
}

/// The normalised message. `mailroom parse --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParsedMessage {
    /// Message-ID without angle brackets; `{sha256}@sha256.mailroom.invalid` when missing.
    pub message_id: String,
    pub synthetic_id: bool,
    pub from: Option<Mailbox>,
    pub sender: Option<Mailbox>,
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    /// Only a sent copy has one (a received message never shows its Bcc).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub subject: String,
    /// Normalised subject key used for threading.
    pub subject_key: String,
    /// UTC, RFC 3339; null when missing or implausible.
    pub date: Option<DateTime<Utc>>,
    /// When the message reached the receiving server: the date of the topmost Received
    /// header (the hop that delivered it to the mailbox); null when there is none (a Sent
    /// copy) or it is implausible.
    pub received: Option<DateTime<Utc>>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub text: String,
    /// Sanitised (`html::sanitize`): no scripts, event handlers or remote-content tricks;
    /// remote images kept (the API and the web inbox block them until asked).
    pub html: Option<String>,
    pub new_text: String,
    pub quoted_text: Option<String>,
    pub signature: Option<String>,
    pub attachments: Vec<Attachment>,
    pub kind: Kind,
    pub bounce: Option<Bounce>,
    pub signals: Vec<String>,
    pub list_id: Option<String>,
    /// Message-IDs of the original message a bounce or auto-reply carries (attached or
    /// quoted), used to thread it when it has no In-Reply-To.
    pub original_message_ids: Vec<String>,
    /// `X-Mailroom-Loop`: set on everything Mailroom sends.
    pub loop_header: Option<String>,
    /// The topmost `Authentication-Results` header (the last receiving host's checks).
    #[serde(default)]
    pub auth_results: Option<crate::auth_results::AuthResults>,
    /// Raw sha256 of the whole message.
    pub sha256: String,
    pub size: u64,
    /// Problems met while reading (lenient parsing goes on).
    pub defects: Vec<String>,
}

impl ParsedMessage {
    /// Parent ids in the order threading tries them: In-Reply-To, References newest first,
    /// then ids of an attached original.
    pub fn parent_ids(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for id in
            self.in_reply_to.iter().chain(self.references.iter().rev()).chain(&self.original_message_ids)
        {
            if id != &self.message_id && !out.contains(id) {
                out.push(id.clone());
            }
        }
        out
    }

    pub fn subject_info(&self) -> SubjectInfo {
        subject::analyse(&self.subject)
    }
}

/// A parsed message and its decoded attachment bodies (in the order of `attachments`).
pub struct Understood {
    pub message: ParsedMessage,
    pub bodies: Vec<Vec<u8>>,
}

#[derive(Debug, Error)]
pub enum ParseError {
    #[error("empty input: nothing to parse")]
    Empty,
    #[error("no message could be read from the input")]
    Unreadable,
    #[error("the MIME parser failed on this input (kept raw; please report it)")]
    ParserPanic,
}

/// Parses and normalises `raw`. Lenient: a damaged message is read as far as possible and
/// the problems are listed in `defects`; an error only where nothing could be read.
pub fn understand(raw: &[u8]) -> Result<Understood, ParseError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ParseError::Empty);
    }
    let digest = sha256(raw).to_string();
    // A parser bug must cost one message, not the batch or the process: the raw bytes are
    // already stored, and the error names the problem.
    read(raw, |mut msg, mut defects| {
        if msg.headers().is_empty() {
            defects.push("no header block".to_string());
        }
        let (message_id, synthetic_id) = match msg.message_id().map(str::trim).filter(|m| !m.is_empty()) {
            Some(m) => (m.to_string(), false),
            None => {
                defects.push("no Message-ID: a synthetic id from the raw sha256 is used".into());
                (format!("{digest}@sha256.mailroom.invalid"), true)
            }
        };
        let date = msg
            .date()
            .and_then(utc)
            .filter(|d| d.timestamp() > 631_152_000 && *d < Utc::now() + chrono::Duration::days(2));
        if date.is_none() {
            defects.push("no usable Date header".into());
        }
        let received = msg
            .received_all()
            .next()
            .and_then(|r| r.date.as_ref())
            .and_then(utc)
            .filter(|d| d.timestamp() > 631_152_000 && *d < Utc::now() + chrono::Duration::days(2));
        let text = body_text(&msg);
        // Only a real text/html part: mail-parser also offers a plain-text body as HTML.
        let has_html = msg.html_part(0).is_some_and(|p| matches!(p.body, mail_parser::PartType::Html(_)));
        let html = msg
            .body_html(0)
            .filter(|_| has_html)
            .map(|h| crate::html::sanitize(&h, crate::html::RemoteImages::Allow).html);
        let split = quote::split(&text);
        let class = classify::classify(&msg);
        let original_message_ids =
            if matches!(class.kind, Kind::Bounce | Kind::AutoReply) { original_ids(&msg) } else { vec![] };
        let subject = msg.subject().unwrap_or_default().trim().to_string();
        let domain = fallback_domain(&msg, if synthetic_id { "" } else { &message_id });
        let mut read =
            |name: &str, parsed: Option<&Address<'_>>| addresses(&msg, name, parsed, &domain, &mut defects);
        let from = read("From", msg.from()).into_iter().next();
        let sender = read("Sender", msg.sender()).into_iter().next();
        let (to, cc, reply_to) =
            (read("To", msg.to()), read("Cc", msg.cc()), read("Reply-To", msg.reply_to()));
        let bcc = read("Bcc", msg.bcc());
        let (in_reply_to, references) = (ids(msg.in_reply_to()), ids(msg.references()));
        let loop_header = msg.header_raw("X-Mailroom-Loop").map(|s| s.trim().to_string());
        let auth_results = first_header_raw(&msg, "Authentication-Results")
            .and_then(crate::auth_results::AuthResults::parse);
        let (attachments, bodies) = take_attachments(&mut msg);
        let message = ParsedMessage {
            message_id,
            synthetic_id,
            from,
            sender,
            to,
            cc,
            bcc,
            reply_to,
            subject_key: subject::analyse(&subject).key,
            subject,
            date,
            received,
            in_reply_to,
            references,
            new_text: split.new_text,
            quoted_text: split.quoted,
            signature: split.signature,
            text,
            html,
            attachments,
            kind: class.kind,
            bounce: class.bounce,
            signals: class.signals,
            list_id: class.list_id,
            original_message_ids,
            loop_header,
            auth_results,
            sha256: digest,
            size: raw.len() as u64,
            defects,
        };
        Understood { message, bodies }
    })
}

/// Reads `raw` with mail-parser, and where that reading shows a problem it cannot fix
/// itself (raw 8-bit headers, broken base64, uuencode, a runaway attached message), reads
/// a repaired copy instead (`repair`; the stored raw message stays as it came); a repair
/// can uncover the next one (a second truncated forward), so a few rounds. `f` gets the
/// final reading and the repairs made.
fn read<T>(raw: &[u8], f: impl FnOnce(Message<'_>, Vec<String>) -> T) -> Result<T, ParseError> {
    let first = parse(raw)?;
    let plan = crate::repair::plan(raw, &first);
    if plan.is_empty() {
        return Ok(f(first, Vec::new()));
    }
    drop(first);
    let mut notes = plan.notes.clone();
    let mut bytes = plan.apply(raw);
    for _ in 0..3 {
        let next = crate::repair::plan(&bytes, &parse(&bytes)?);
        if next.is_empty() {
            break;
        }
        notes.extend(next.notes.iter().cloned());
        bytes = next.apply(&bytes);
    }
    Ok(f(parse(&bytes)?, notes))
}

/// mail-parser's reading; a panic in it costs this message only.
fn parse(bytes: &[u8]) -> Result<Message<'_>, ParseError> {
    std::panic::catch_unwind(|| MessageParser::default().parse(bytes))
        .map_err(|_| ParseError::ParserPanic)?
        .ok_or(ParseError::Unreadable)
}

/// The raw value of the *first* (topmost) header called `name`: mail-parser's
/// `header_raw` gives the last one.
fn first_header_raw<'m>(msg: &'m Message<'_>, name: &str) -> Option<&'m str> {
    let h = msg.headers().iter().find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
    let raw = msg.raw_message();
    std::str::from_utf8(raw.get(h.offset_start as usize..h.offset_end as usize)?).ok()
}

/// The addresses of one header: mail-parser's reading, and where any of its entries is not
/// a valid address (or it found none), the lenient reading of the header's text for the
/// addresses it missed, marked repaired.
fn addresses(
    msg: &Message<'_>,
    header: &str,
    parsed: Option<&Address<'_>>,
    domain: &str,
    defects: &mut Vec<String>,
) -> Vec<Mailbox> {
    let mut out = Vec::new();
    let mut all_valid = true;
    for x in parsed.iter().flat_map(|a| a.iter()) {
        match mailbox(x) {
            Some(m) => out.push(m),
            None => all_valid = false,
        }
    }
    if all_valid && !out.is_empty() {
        return out;
    }
    let Some(text) = first_header_raw(msg, header).map(decode_words) else { return out };
    // Only a sender is completed with a domain (`MAILER-DAEMON`, the null sender): a
    // recipient without one is no one we can name.
    let sender = matches!(header, "From" | "Sender");
    for (name, local) in crate::repair::address::lenient(&text) {
        let full = match local.contains('@') {
            true => local,
            false if sender => format!("{local}@{domain}"),
            false => continue,
        };
        let Ok(email) = EmailAddress::parse(&full) else { continue };
        let email = email.to_string();
        if !out.iter().any(|m: &Mailbox| m.email.eq_ignore_ascii_case(&email)) {
            defects.push(format!("{header} header not RFC 5322: read as {email}"));
            out.push(Mailbox { name, email, repaired: true });
        }
    }
    out
}

/// A header date in UTC.
fn utc(d: &mail_parser::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(d.to_timestamp(), 0)
}

/// One address as mail-parser read it, if it is a valid one.
fn mailbox(x: &mail_parser::Addr<'_>) -> Option<Mailbox> {
    let email = EmailAddress::parse(x.address()?).ok()?.to_string();
    let name = x.name().map(|n| n.trim().trim_matches('"').trim().to_string()).filter(|n| !n.is_empty());
    Some(Mailbox { name, email, repaired: false })
}

/// RFC 2047 encoded words in a header's raw text, decoded by mail-parser itself (read as
/// an unstructured header).
fn decode_words(text: &str) -> String {
    let text = text.trim();
    if !text.contains("=?") {
        return text.to_string();
    }
    let wrapped = format!("Subject: {}\r\n\r\n", text.replace(['\r', '\n'], " "));
    MessageParser::default()
        .parse(wrapped.as_bytes())
        .and_then(|m| m.subject().map(str::to_string))
        .unwrap_or_else(|| text.to_string())
}

/// The domain that completes an address without one (`MAILER-DAEMON`): the Message-ID's,
/// else the host that handed the message to our server (the topmost Received `from`),
/// else `unknown.invalid`.
fn fallback_domain(msg: &Message<'_>, message_id: &str) -> String {
    let from_id = message_id.rsplit_once('@').map(|(_, d)| d.trim_end_matches('>').to_string());
    let from_received = || {
        msg.received_all().next().and_then(|r| r.from().map(|h| h.to_string())).filter(|h| h.contains('.'))
    };
    from_id
        .filter(|d| d.contains('.') && d.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c)))
        .or_else(from_received)
        .unwrap_or_else(|| "unknown.invalid".into())
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    let list: Vec<&str> = match v {
        HeaderValue::Text(t) => vec![t.as_ref()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.as_ref()).collect(),
        _ => vec![],
    };
    let mut out: Vec<String> = Vec::new();
    for id in list.into_iter().map(str::trim).filter(|s| !s.is_empty()) {
        if !out.iter().any(|o| o == id) {
            out.push(id.to_string());
        }
    }
    out
}

/// The text body of raw bytes, exactly as `understand` gives it in `text`, without the
/// rest of its work (classification, HTML sanitising, attachments): what the route stage
/// matches keyword rules on. An unreadable message has no text.
pub fn text_body(raw: &[u8]) -> String {
    read(raw, |m, _| body_text(&m)).unwrap_or_default()
}

/// The text body: the text/plain parts, or mail-parser's text rendering of the HTML.
fn body_text(msg: &Message<'_>) -> String {
    let n = msg.text_body_count().max(1);
    let parts: Vec<Cow<'_, str>> = (0..n).filter_map(|i| msg.body_text(i)).collect();
    parts.join("\n").replace("\r\n", "\n")
}

/// Ids of the original message a bounce or auto-reply carries: an attached message/rfc822
/// or text/rfc822-headers part, `X-Original-Message-ID`, or a quoted `Message-ID:` line.
fn original_ids(msg: &Message<'_>) -> Vec<String> {
    let mut out = Vec::new();
    let mut push = |id: &str| {
        let id = id.trim().trim_start_matches('<').trim_end_matches('>').trim();
        if !id.is_empty() && id.contains('@') && !out.iter().any(|o: &String| o == id) {
            out.push(id.to_string());
        }
    };
    for part in &msg.parts {
        match &part.body {
            PartType::Message(m) => {
                if let Some(id) = m.message_id() {
                    push(id);
                }
            }
            PartType::Text(t) | PartType::Html(t) => scan_id_lines(t, &mut push),
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                if part.content_type().is_some_and(|c| {
                    c.subtype().is_some_and(|s| {
                        s.eq_ignore_ascii_case("rfc822-headers") || s.eq_ignore_ascii_case("delivery-status")
                    })
                }) {
                    scan_id_lines(&String::from_utf8_lossy(b), &mut push);
                }
            }
            PartType::Multipart(_) => {}
        }
    }
    out
}

fn scan_id_lines(text: &str, push: &mut impl FnMut(&str)) {
    for line in text.lines() {
        let t = line.trim_start_matches(['>', ' ', '\t']);
        let lower = t.get(..22).map(str::to_ascii_lowercase).unwrap_or_else(|| t.to_ascii_lowercase());
        for label in ["message-id:", "x-original-message-id:"] {
            if let Some(v) = t.get(label.len()..).filter(|_| lower.starts_with(label)) {
                push(v);
            }
        }
    }
}

/// Attachment metadata, and the decoded bodies moved out of the parsed message (not
/// copied: a 25 MB message must not hold its attachments twice).
fn take_attachments(msg: &mut Message<'_>) -> (Vec<Attachment>, Vec<Vec<u8>>) {
    let mut metas = Vec::new();
    let mut bodies = Vec::new();
    for id in msg.attachments.clone() {
        let Some(part) = msg.parts.get_mut(id as usize) else { continue };
        metas.push(attachment_meta(part, part.contents()));
        let body = std::mem::replace(&mut part.body, PartType::Multipart(Vec::new()));
        bodies.push(match body {
            PartType::Binary(b) | PartType::InlineBinary(b) => b.into_owned(),
            PartType::Text(t) | PartType::Html(t) => t.into_owned().into_bytes(),
            // The nested message's own bytes (its `raw_message` field may hold more).
            PartType::Message(m) => m.raw_message().to_vec(),
            PartType::Multipart(_) => Vec::new(),
        });
    }
    (metas, bodies)
}

fn attachment_meta(part: &MessagePart<'_>, bytes: &[u8]) -> Attachment {
    let content_type = part
        .content_type()
        .map(|c| match c.subtype() {
            Some(s) => format!("{}/{}", c.ctype(), s),
            None => c.ctype().to_string(),
        })
        .unwrap_or_else(|| {
            if part.is_message() { "message/rfc822".into() } else { "application/octet-stream".into() }
        })
        .to_ascii_lowercase();
    let content_id =
        part.content_id().map(|c| c.trim().trim_start_matches('<').trim_end_matches('>').to_string());
    let disposition_inline = part.content_disposition().map(|d| d.is_inline());
    let inline = disposition_inline.unwrap_or(content_id.is_some());
    let name = part
        .attachment_name()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .or_else(|| part.message().and_then(|m| m.subject()).map(|s| format!("{}.eml", s.trim())));
    let message = part.message().map(|m| AttachedMessage {
        message_id: m.message_id().map(|i| i.trim().to_string()).filter(|i| !i.is_empty()),
        from: m.from().and_then(|a| a.first()).and_then(mailbox),
        subject: m.subject().unwrap_or_default().trim().to_string(),
        date: m.date().and_then(utc),
    });
    Attachment {
        name,
        content_type,
        size: bytes.len() as u64,
        sha256: sha256(bytes).to_string(),
        inline,
        content_id,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPLY: &[u8] = b"From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <Joerg@Example.DE>\r\n\
To: Acme Support <support@acme.example>, billing@ACME.example\r\n\
Cc: \"Doe, Jane\" <jane@x.example>\r\n\
Reply-To: j2@example.de\r\n\
Subject: =?ISO-8859-1?Q?AW:_Rechnung_f=FCr_M=E4rz?=\r\n\
Date: Mon, 4 Mar 2024 17:43:06 +0100\r\n\
Message-ID: <r1@example.de>\r\n\
In-Reply-To: <p2@acme.example>\r\n\
References: <p1@acme.example> <p2@acme.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Passt, danke.\r\n\
\r\n\
Am 04.03.2024 um 09:00 schrieb Acme Support:\r\n\
> Anbei die Rechnung\r\n\
--b\r\n\
Content-Type: application/pdf; name*=UTF-8''Rechnung%20M%C3%A4rz.pdf\r\n\
Content-Disposition: attachment\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b--\r\n";

    #[test]
    fn normalises_a_reply() {
        let u = understand(REPLY).expect("parses");
        let m = &u.message;
        assert_eq!(
            m.from.as_ref().map(|f| (f.name.as_deref(), f.email.as_str())),
            Some((Some("Jörg Müller"), "Joerg@example.de"))
        );
        assert_eq!(
            m.to.iter().map(|a| a.email.as_str()).collect::<Vec<_>>(),
            ["support@acme.example", "billing@acme.example"]
        );
        assert_eq!(m.cc[0].name.as_deref(), Some("Doe, Jane"));
        assert_eq!(m.reply_to[0].email, "j2@example.de");
        assert_eq!(m.subject, "AW: Rechnung für März");
        assert_eq!(m.subject_key, "rechnung für märz");
        assert_eq!(m.date.map(|d| d.to_rfc3339()), Some("2024-03-04T16:43:06+00:00".into()));
        assert_eq!(m.in_reply_to, ["p2@acme.example"]);
        assert_eq!(m.parent_ids(), ["p2@acme.example", "p1@acme.example"]);
        assert_eq!(m.new_text, "Passt, danke.");
        assert_eq!(m.kind, Kind::Normal);
        assert_eq!(m.attachments.len(), 1);
        let a = &m.attachments[0];
        assert_eq!(a.name.as_deref(), Some("Rechnung März.pdf"));
        assert_eq!(a.content_type, "application/pdf");
        assert_eq!(a.size, 9);
        assert_eq!(a.sha256, sha256(b"%PDF-1.4\n").to_string());
        assert!(!a.inline);
        assert_eq!(u.bodies[0], b"%PDF-1.4\n");
    }

    #[test]
    fn synthetic_id_and_sanitised_html() {
        let raw = b"From: a@b.example\r\nSubject: x\r\nContent-Type: text/html\r\n\r\n<p onclick=\"x()\">Hi<script>alert(1)</script></p>";
        let m = understand(raw).expect("parses").message;
        assert!(m.synthetic_id);
        assert_eq!(m.message_id, format!("{}@sha256.mailroom.invalid", sha256(raw)));
        let html = m.html.unwrap_or_default();
        assert!(html.contains("Hi") && !html.contains("script") && !html.contains("onclick"), "{html}");
        assert!(m.text.contains("Hi"));
        assert_eq!(text_body(raw), m.text);
    }

    #[test]
    fn nothing_readable_is_an_error() {
        assert!(matches!(understand(b" \r\n "), Err(ParseError::Empty)));
    }
}
