//! Classification of a parsed message: normal, auto-reply, bounce or list mail.
//!
//! Importing and auto-responding are separate decisions (DESIGN.md §4): noise is stored and
//! shown, but never opens a ticket or triggers an auto-reply. This module only says what a
//! message *is*; callers decide what to do with it.
//!
//! Precedence, strongest first:
//!
//! 1. [`Kind::Bounce`]: an RFC 3464 delivery-status report (`multipart/report;
//!    report-type=delivery-status` and/or a `message/delivery-status` part), an Amazon SES
//!    bounce/complaint/delivery notification, or one of the common non-standard bounces
//!    (Postfix, qmail, Exim, Sendmail, Exchange, Lotus Domino, Gmail, list-manager rejections,
//!    ...) recognised by a machine sender together with bounce wording. A person forwarding a
//!    bounce ("Fwd: Undeliverable: ...") is writing to us and stays [`Kind::Normal`].
//! 2. [`Kind::AutoReply`] by a *strong* signal: `Auto-Submitted: auto-replied`,
//!    `X-Autoreply`, `X-Autorespond`, Exchange inbox-rule headers, `Precedence: auto_reply`,
//!    a read receipt (`report-type=disposition-notification`), or an out-of-office subject.
//! 3. [`Kind::List`]: `List-Id`, `List-Unsubscribe`, `List-Post`, `Precedence: list`, or
//!    the marks of older list managers (`Mailing-List`, `X-Mailman-Version`, a list-owner
//!    `Sender`).
//! 4. [`Kind::AutoReply`] by *weak* signals only: `Precedence: bulk|junk`, or an
//!    `Auto-Submitted` value other than `no` and `auto-replied` (e.g. `auto-generated`).
//! 5. [`Kind::Normal`].
//!
//! The non-standard bounce formats are plain text written for humans, so they are read with
//! small hand-written scanners (addresses, RFC 3463 status codes, SMTP reply codes and the
//! "original message follows" markers) rather than with a MIME parser: `mail-parser` gives
//! us the decoded text, but what it says is up to each mail server.

use mail_parser::{Message, MimeHeaders, PartType};
use serde::{Deserialize, Serialize};

/// What kind of mail a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Mail written by a person (or anything not recognised as one of the others).
    Normal,
    /// An automatic answer: out-of-office, vacation notice, autoresponder, read receipt.
    AutoReply,
    /// A delivery-status report: a bounce, a delay warning, a positive delivery report, or an
    /// Amazon SES complaint notification (machine noise about a recipient, like a bounce).
    Bounce,
    /// Mailing-list or newsletter mail.
    List,
}

/// One recipient named by a delivery-status report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BounceRecipient {
    /// The recipient address, lower-cased.
    pub email: String,
    /// The RFC 3463 status code, e.g. `"5.1.1"`, or `""` when the report gives none.
    ///
    /// When a plain-text bounce gives only an SMTP reply code for the recipient (e.g. `550`
    /// with no enhanced code), the class is derived from it as `"5.0.0"` / `"4.0.0"`
    /// ("other undefined status" of that class, RFC 3463 §3.1): the first digit of an SMTP
    /// reply code reliably tells permanent from transient failures (RFC 5321 §4.2.1), the
    /// rest does not map onto a status detail.
    pub status: String,
    /// The RFC 3464 action (`failed`, `delayed`, `delivered`, `relayed`, `expanded`) when
    /// the report states it; plain-text bounces report `failed` (or `delayed` for a delay
    /// warning).
    pub action: Option<String>,
    /// The remote server's diagnostic (the `Diagnostic-Code` without its type, or the line
    /// of a plain-text bounce that carries the status), when there is one.
    pub diagnostic: Option<String>,
}

/// The recipients of a delivery-status report.
///
/// A report with `Action: delivered` (status `2.x.x`) is a positive delivery notification;
/// it is still classified as [`Kind::Bounce`] because it is a delivery-status report and just
/// as much machine noise, and its recipients are listed here with their `2.x.x` status.
/// Callers that act on failures must look at [`BounceRecipient::status`] /
/// [`BounceRecipient::action`], not at the kind alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounce {
    /// The recipients the report is about, in report order, without duplicates. Can be empty
    /// when a message is clearly a bounce but names no recipient we could read.
    pub recipients: Vec<BounceRecipient>,
}

/// The result of [`classify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Classification {
    /// The decided kind (see the module documentation for the precedence).
    pub kind: Kind,
    /// The delivery-status details, present exactly when `kind` is [`Kind::Bounce`].
    pub bounce: Option<Bounce>,
    /// Why: every piece of evidence seen, e.g. `"header:auto-submitted=auto-replied"`,
    /// `"subject:out of office"`, `"dsn:multipart/report"`, `"header:list-id"`. It also lists
    /// evidence that did not decide the kind (a list message with `Precedence: bulk` lists
    /// both), so it explains decisions rather than restating them.
    pub signals: Vec<String>,
    /// The list identifier of a `List-Id` header: the part in angle brackets (RFC 2919), or
    /// the whole trimmed value when it has none.
    pub list_id: Option<String>,
}

/// Classifies a message parsed by `mail_parser::MessageParser`. Never fails: a message that
/// cannot be read is [`Kind::Normal`].
pub fn classify(msg: &Message<'_>) -> Classification {
    let headers = Headers::read(msg);
    let mut signals = Vec::new();
    let bounce = detect_bounce(msg, &headers, &mut signals);
    let auto = auto_reply_strength(msg, &headers, &mut signals);
    let list = list_signals(&headers, &mut signals);
    let kind = decide(bounce.is_some(), auto, list);
    Classification { kind, bounce, signals, list_id: list_id(&headers) }
}

/// Applies the precedence documented on the module.
fn decide(bounce: bool, auto: Strength, list: bool) -> Kind {
    if bounce {
        Kind::Bounce
    } else if auto == Strength::Strong {
        Kind::AutoReply
    } else if list {
        Kind::List
    } else if auto == Strength::Weak {
        Kind::AutoReply
    } else {
        Kind::Normal
    }
}

// ------------------------------------------------------------------------------------------
// Header access

/// The top-level header fields, names lower-cased, values raw (not RFC 2047-decoded) and
/// unfolded. Raw values are what the token-valued headers (`Auto-Submitted`, `Precedence`)
/// need; the subject is taken decoded from `mail-parser` instead.
struct Headers {
    fields: Vec<(String, String)>,
}

impl Headers {
    fn read(msg: &Message<'_>) -> Headers {
        let raw = msg.raw_message.as_ref();
        let fields = msg
            .headers()
            .iter()
            .map(|h| {
                let value = raw
                    .get(h.offset_start as usize..h.offset_end as usize)
                    .map(|b| unfold(&String::from_utf8_lossy(b)))
                    .unwrap_or_default();
                (h.name.as_str().to_ascii_lowercase(), value)
            })
            .collect();
        Headers { fields }
    }

    /// All values of the (lower-case) `name`, in header order.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn first<'a>(&'a self, name: &str) -> Option<&'a str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|(n, _)| n == name)
    }
}

/// Joins folded lines and collapses runs of white space.
fn unfold(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The first token of a header value, lower-cased, without parameters or comments
/// (`"auto-replied (vacation)"` -> `"auto-replied"`).
fn header_token(value: &str) -> String {
    value
        .split(|c: char| c == ';' || c == '(' || c == ',' || c.is_whitespace())
        .find(|t| !t.is_empty())
        .unwrap_or("")
        .to_ascii_lowercase()
}

// ------------------------------------------------------------------------------------------

mod autoreply;
mod bounce;
mod dsn;
mod list;
mod scan;
mod ses;
mod text;
use autoreply::*;
use bounce::*;
use dsn::*;
use list::*;
use scan::*;
use ses::*;
use text::*;

#[cfg(test)]
mod tests;
