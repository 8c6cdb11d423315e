//! What the ingest path needs to know before a message is understood: which inbox it was
//! delivered to, its Message-ID and its date. Read from the header block only.

use crate::ids::EmailAddress;
use chrono::{DateTime, Utc};
use mail_parser::{HeaderValue, MessageParser};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Envelope {
    /// `Delivered-To` addresses, in header order (the topmost is the final mailbox).
    pub delivered_to: Vec<EmailAddress>,
    pub x_original_to: Vec<EmailAddress>,
    pub from: Option<EmailAddress>,
    pub message_id: Option<String>,
    /// In-Reply-To then References (newest last), without angle brackets.
    pub parents: Vec<String>,
    pub date: Option<DateTime<Utc>>,
    /// The date of the topmost `Received` header: when the last hop (the receiving server
    /// of the mailbox the copy comes from) took it. Headers below it come with the
    /// message and prove nothing; the topmost one was written by the receiving side.
    pub received: Option<DateTime<Utc>>,
}

impl Envelope {
    /// Reads the header block of `raw`. Never fails: what cannot be read is left empty.
    pub fn read(raw: &[u8]) -> Envelope {
        let mut env = Envelope::default();
        let Some(msg) = MessageParser::new().parse_headers(raw) else {
            return env;
        };
        for h in msg.headers() {
            let addrs = |v: &HeaderValue| -> Vec<EmailAddress> {
                match v {
                    HeaderValue::Address(a) => a
                        .iter()
                        .filter_map(|x| x.address())
                        .filter_map(|s| EmailAddress::parse(s).ok())
                        .collect(),
                    HeaderValue::Text(t) => EmailAddress::parse(t).ok().into_iter().collect(),
                    _ => vec![],
                }
            };
            let name = h.name.as_str();
            if name.eq_ignore_ascii_case("Delivered-To") {
                env.delivered_to.extend(header_addresses(raw, h, addrs(&h.value)));
            } else if name.eq_ignore_ascii_case("X-Original-To") {
                env.x_original_to.extend(header_addresses(raw, h, addrs(&h.value)));
            }
        }
        env.from = msg
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .and_then(|s| EmailAddress::parse(s).ok());
        env.message_id = msg.message_id().map(|m| m.trim().to_string()).filter(|m| !m.is_empty());
        for v in [msg.in_reply_to(), msg.references()] {
            match v {
                HeaderValue::Text(t) => env.parents.push(t.trim().to_string()),
                HeaderValue::TextList(l) => env.parents.extend(l.iter().rev().map(|t| t.trim().to_string())),
                _ => {}
            }
        }
        env.parents.retain(|p| !p.is_empty());
        env.date = msg
            .date()
            .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0))
            // A date before 1990 or far in the future is a broken header, not a real date.
            .filter(|d| d.timestamp() > 631_152_000 && *d < Utc::now() + chrono::Duration::days(2));
        env.received = msg
            .received_all()
            .next()
            .and_then(|r| r.date.as_ref())
            .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0))
            .filter(|d| d.timestamp() > 631_152_000 && *d < Utc::now() + chrono::Duration::days(2));
        env
    }

    /// The mailbox this copy was delivered to: `Delivered-To`, then `X-Original-To`.
    pub fn inbox(&self) -> Option<&EmailAddress> {
        self.delivered_to.first().or_else(|| self.x_original_to.first())
    }
}

/// mail-parser leaves headers it does not know as raw text; read the address from the
/// raw bytes when its value did not parse as one.
fn header_addresses(raw: &[u8], h: &mail_parser::Header<'_>, parsed: Vec<EmailAddress>) -> Vec<EmailAddress> {
    if !parsed.is_empty() {
        return parsed;
    }
    let (s, e) = (h.offset_start() as usize, h.offset_end() as usize);
    let text = raw.get(s..e).map(String::from_utf8_lossy).unwrap_or_default();
    text.split([',', ' ', '\t', '\r', '\n']).filter_map(|t| EmailAddress::parse(t).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_delivery_headers() {
        let raw = b"Delivered-To: Billing@Acme.example\r\nX-Original-To: sales@acme.example\r\nFrom: A <a@b.example>\r\nMessage-ID: <x@y>\r\nDate: Mon, 4 Mar 2024 17:43:06 +0100\r\nSubject: hi\r\n\r\nbody";
        let e = Envelope::read(raw);
        assert_eq!(e.inbox().map(|a| a.as_str()), Some("Billing@acme.example"));
        assert_eq!(e.x_original_to.len(), 1);
        assert_eq!(e.from.as_ref().map(|a| a.as_str()), Some("a@b.example"));
        assert_eq!(e.message_id.as_deref(), Some("x@y"));
        assert!(e.parents.is_empty());
        assert_eq!(e.date.map(|d| d.to_rfc3339()), Some("2024-03-04T16:43:06+00:00".into()));
    }

    #[test]
    fn garbage_gives_an_empty_envelope() {
        let e = Envelope::read(b"\x00\xff\xfe not a message");
        assert!(e.inbox().is_none());
        assert!(e.message_id.is_none());
    }
}
