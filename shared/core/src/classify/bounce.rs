//! Bounces: the decision, and the recipients and statuses of structured and embedded reports.

use super::*;

// Bounces: decision

/// How deep bounces embedded in bounces are followed (a relay returning a bounce it could not
/// deliver, a security gateway wrapping one).
pub(super) const MAX_NESTING: usize = 2;

/// Recognises a delivery-status report and reads its recipients.
pub(super) fn detect_bounce(
    msg: &Message<'_>,
    headers: &Headers,
    signals: &mut Vec<String>,
) -> Option<Bounce> {
    detect_bounce_at(msg, headers, signals, 0)
}

/// [`detect_bounce`] for a message found `depth` levels inside another.
pub(super) fn detect_bounce_at(
    msg: &Message<'_>,
    headers: &Headers,
    signals: &mut Vec<String>,
    depth: usize,
) -> Option<Bounce> {
    let texts = BodyTexts::read(msg);
    let evidence = Evidence::gather(msg, headers, &texts);
    if !evidence.is_bounce() {
        return None;
    }
    signals.extend(evidence.signals());
    let recipients = read_recipients(msg, headers, &texts, evidence.text_found, depth);
    Some(Bounce { recipients })
}

/// The text bodies of a message, each split where the returned original message starts.
pub(super) struct BodyTexts {
    /// The notification parts: what the reporting system wrote.
    pub(super) notices: Vec<String>,
    /// What follows each notice in the same part (usually the returned message), if anything.
    pub(super) rest: Vec<String>,
}

impl BodyTexts {
    /// The text bodies (HTML converted to text by `mail-parser`). When `mail-parser` finds
    /// none (a multipart without usable boundaries), the raw body is read as text instead.
    fn read(msg: &Message<'_>) -> BodyTexts {
        let mut texts: Vec<String> =
            (0..msg.text_body_count()).filter_map(|i| msg.body_text(i)).map(|t| t.into_owned()).collect();
        if texts.iter().all(|t| t.trim().is_empty()) {
            let start = msg.root_part().offset_body as usize;
            texts = msg
                .raw_message
                .get(start..)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .into_iter()
                .collect();
        }
        let (notices, rest) = texts
            .iter()
            .map(|t| {
                let (notice, rest) = split_at_original(t);
                (truncate(notice, MAX_NOTICE).to_string(), truncate(rest, MAX_NOTICE).to_string())
            })
            .unzip();
        BodyTexts { notices, rest }
    }
}

/// How much of each text body is read (bytes). Bounce notices are a few kilobytes; this
/// bounds the work spent on a large newsletter or an attachment-only message read raw.
pub(super) const MAX_NOTICE: usize = 64 * 1024;

/// `text` cut to at most `max` bytes, at a character boundary.
pub(super) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// What a message shows of being a bounce.
pub(super) struct Evidence {
    /// Wording-independent evidence (report structure, SES JSON, bounce-only headers).
    pub(super) structural: Vec<String>,
    pub(super) daemon: bool,
    pub(super) list_admin: bool,
    pub(super) null_sender: bool,
    pub(super) machine: bool,
    pub(super) forward: bool,
    pub(super) subject: Option<&'static str>,
    pub(super) phrase: Option<&'static str>,
    /// The recipients the plain-text notice names (read once, used by the decision and later).
    pub(super) text_found: Vec<BounceRecipient>,
}

impl Evidence {
    fn gather(msg: &Message<'_>, headers: &Headers, texts: &BodyTexts) -> Evidence {
        let subject = msg.subject().unwrap_or("");
        let mut evidence = Evidence {
            structural: structural_evidence(msg, headers, &texts.notices),
            daemon: daemon_sender(headers),
            list_admin: list_admin_sender(headers),
            null_sender: headers.values("return-path").any(|v| v.trim() == "<>"),
            machine: machine_sent(headers),
            forward: is_forward(subject),
            subject: bounce_subject(subject),
            phrase: texts.notices.iter().find_map(|n| bounce_phrase(n)),
            text_found: Vec::new(),
        };
        // Reading recipients scans every address of the text: only worth it with evidence.
        let any = !evidence.structural.is_empty()
            || evidence.daemon
            || evidence.list_admin
            || evidence.subject.is_some()
            || evidence.phrase.is_some();
        if any {
            evidence.text_found = text_recipients(&texts.notices, headers);
        }
        evidence
    }

    /// The decision. Structure alone suffices; wording needs a sender that only machines use,
    /// so that a customer writing "my mail could not be delivered" stays a customer.
    fn is_bounce(&self) -> bool {
        if !self.structural.is_empty() {
            return true;
        }
        if self.forward {
            return false;
        }
        let worded = self.subject.is_some() || self.phrase.is_some();
        ((self.daemon || self.list_admin) && worded)
            || (self.subject.is_some() && self.phrase.is_some() && self.machine)
            || (self.phrase.is_some() && self.null_sender && !self.text_found.is_empty())
    }

    fn signals(&self) -> Vec<String> {
        let mut out = self.structural.clone();
        out.extend(self.daemon.then(|| "from:mailer-daemon".to_string()));
        out.extend(self.list_admin.then(|| "from:list-admin".to_string()));
        out.extend(self.null_sender.then(|| "header:return-path=<>".to_string()));
        out.extend(self.subject.map(|s| format!("subject:{s}")));
        out.extend(self.phrase.map(|p| format!("body:{p}")));
        out
    }
}

/// Evidence that does not depend on wording: the report structure, a `message/delivery-status`
/// part, an Amazon SES notification, `X-Failed-Recipients`, Exchange's NDR marker.
pub(super) fn structural_evidence(msg: &Message<'_>, headers: &Headers, notices: &[String]) -> Vec<String> {
    let mut evidence = Vec::new();
    if report_type(msg).as_deref() == Some("delivery-status") {
        evidence.push("dsn:multipart/report".to_string());
    }
    if !delivery_status_parts(msg).is_empty() {
        evidence.push("dsn:message/delivery-status".to_string());
    }
    if notices.iter().any(|n| ses_notification(n).is_some()) {
        evidence.push("body:ses-notification".to_string());
    }
    for name in ["x-failed-recipients", "x-ms-exchange-message-is-ndr"] {
        if headers.has(name) {
            evidence.push(format!("header:{name}"));
        }
    }
    evidence
}

/// Reads the recipients of a message already judged a bounce, from the most to the least
/// structured source: delivery-status parts, delivery-status fields written into the text,
/// an SES notification, the plain-text notice; then `X-Failed-Recipients`; then a bounce
/// embedded in this one; last, the recipients of the returned original message.
pub(super) fn read_recipients(
    msg: &Message<'_>,
    headers: &Headers,
    texts: &BodyTexts,
    text_found: Vec<BounceRecipient>,
    depth: usize,
) -> Vec<BounceRecipient> {
    let mut found = structured_recipients(msg, &texts.notices);
    let structured = !found.is_empty();
    let listed = failed_recipients_header(headers);
    if !structured {
        // `X-Failed-Recipients` names exactly the failed recipients: when present, it vetoes
        // addresses the wording heuristics picked up (greetings, quoted sender addresses).
        found = text_found.into_iter().filter(|r| listed.is_empty() || listed.contains(&r.email)).collect();
    } else {
        refine_statuses(&mut found, &text_found);
    }
    for email in listed.into_iter().filter(|e| !found.iter().any(|r| r.email == *e)).collect::<Vec<_>>() {
        let action = Some("failed".to_string());
        found.push(BounceRecipient { email, status: String::new(), action, diagnostic: None });
    }
    if found.iter().all(|r| r.status.is_empty()) && depth < MAX_NESTING {
        let inner = embedded_bounce(msg, texts, depth);
        if found.is_empty() || inner.iter().any(|r| !r.status.is_empty()) {
            found = inner;
        }
    }
    if found.is_empty() {
        found = returned_message_recipients(msg, texts);
    }
    fill_statuses(&mut found, &texts.notices);
    if !structured {
        // A plain-text notice says "could not be delivered" (or "delayed") in words; a
        // structured record without an `Action` field is left without one.
        let delayed = is_delay_notice(msg.subject().unwrap_or(""));
        for r in found.iter_mut().filter(|r| r.action.is_none()) {
            r.action = Some(text_action(&r.status, delayed).to_string());
        }
    }
    dedupe(&mut found);
    found
}

/// Recipients of the structured formats: delivery-status parts, else delivery-status fields
/// written into the text (some servers do that), plus those of an SES notification.
pub(super) fn structured_recipients(msg: &Message<'_>, notices: &[String]) -> Vec<BounceRecipient> {
    let mut found: Vec<BounceRecipient> =
        delivery_status_parts(msg).iter().flat_map(|t| parse_dsn_fields(t)).collect();
    if found.is_empty() {
        found = notices.iter().flat_map(|n| parse_dsn_fields(n)).collect();
    }
    found.extend(notices.iter().filter_map(|n| ses_notification(n)).flatten());
    found
}

/// Replaces an empty or undefined (`X.0.0`) status of a structured record by the more specific
/// status of the same class that the plain-text notice gives for the same recipient.
pub(super) fn refine_statuses(found: &mut [BounceRecipient], text_found: &[BounceRecipient]) {
    for r in found.iter_mut().filter(|r| r.status.is_empty() || r.status.ends_with(".0.0")) {
        let better = text_found.iter().find(|t| {
            t.email == r.email
                && !t.status.is_empty()
                && !t.status.ends_with(".0.0")
                && (r.status.is_empty() || t.status[..1] == r.status[..1])
        });
        if let Some(t) = better {
            r.status = t.status.clone();
            if r.diagnostic.is_none() {
                r.diagnostic = t.diagnostic.clone();
            }
        }
    }
}

/// Gives recipients without a status the failure status of the notices when that is
/// unambiguous: the only status code they contain, or any one when there is one recipient.
pub(super) fn fill_statuses(found: &mut [BounceRecipient], notices: &[String]) {
    if found.iter().all(|r| !r.status.is_empty()) {
        return;
    }
    let lines: Vec<&str> = notices.iter().flat_map(|n| n.lines()).collect();
    let codes = distinct_codes(&lines);
    let single = found.len() == 1;
    let fallback = match codes.as_slice() {
        [only] => Some(only.clone()),
        [first, ..] if single => Some(first.clone()),
        _ if single => lines.iter().find_map(|l| reply_code_class(l)),
        _ => None,
    };
    if let Some(code) = fallback {
        for r in found.iter_mut().filter(|r| r.status.is_empty()) {
            r.status = code.clone();
        }
    }
}

/// The recipients of a bounce carried inside this one: a nested `message/rfc822` part, or a
/// message pasted as text after the notice.
pub(super) fn embedded_bounce(msg: &Message<'_>, texts: &BodyTexts, depth: usize) -> Vec<BounceRecipient> {
    let nested = msg.parts.iter().filter_map(|p| match &p.body {
        PartType::Message(inner) => Some(inner_bounce(inner, depth)),
        _ => None,
    });
    let pasted = texts.rest.iter().filter_map(|rest| {
        let start = rest.find(|c: char| c.is_ascii_alphabetic())?;
        let inner = mail_parser::MessageParser::default().parse(&rest.as_bytes()[start..])?;
        Some(inner_bounce(&inner, depth))
    });
    nested.chain(pasted).find(|r| !r.is_empty()).unwrap_or_default()
}

/// The recipients of `inner` if it is itself a bounce.
pub(super) fn inner_bounce(inner: &Message<'_>, depth: usize) -> Vec<BounceRecipient> {
    let headers = Headers::read(inner);
    detect_bounce_at(inner, &headers, &mut Vec::new(), depth + 1).map(|b| b.recipients).unwrap_or_default()
}

/// Last resort for reports that name no recipient (old Sendmail, MMS gateways): the `To` and
/// `Cc` of the returned original message.
pub(super) fn returned_message_recipients(msg: &Message<'_>, texts: &BodyTexts) -> Vec<BounceRecipient> {
    let nested: Vec<String> = msg
        .parts
        .iter()
        .filter_map(|p| match &p.body {
            PartType::Message(inner) => Some(inner),
            _ => None,
        })
        .flat_map(|inner| [inner.to(), inner.cc()])
        .flatten()
        .flat_map(|a| a.iter().filter_map(|x| x.address()).map(str::to_lowercase).collect::<Vec<_>>())
        .collect();
    let pasted = texts.rest.iter().flat_map(|r| r.lines()).filter(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("to:") || l.starts_with("cc:")
    });
    let pasted: Vec<String> = pasted.flat_map(find_addresses).map(|(_, a)| a).collect();
    let emails = if nested.is_empty() { pasted } else { nested };
    emails
        .into_iter()
        .map(|email| BounceRecipient { email, status: String::new(), action: None, diagnostic: None })
        .collect()
}

/// The `report-type` of a `multipart/report` root, lower-cased.
pub(super) fn report_type(msg: &Message<'_>) -> Option<String> {
    let ct = msg.root_part().content_type()?;
    let is_report = ct.ctype().eq_ignore_ascii_case("multipart")
        && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"));
    if !is_report {
        return None;
    }
    Some(ct.attribute("report-type").unwrap_or("").trim().to_ascii_lowercase())
}

/// The text of every top-level `message/delivery-status` (or RFC 6533 global) part.
/// `mail-parser` exposes these as binary parts (only `message/rfc822` and `message/global`
/// become nested messages), or as text when they were mislabelled.
pub(super) fn delivery_status_parts(msg: &Message<'_>) -> Vec<String> {
    msg.parts
        .iter()
        .filter(|p| {
            p.content_type().is_some_and(|ct| {
                ct.ctype().eq_ignore_ascii_case("message")
                    && ct.subtype().is_some_and(|s| {
                        s.eq_ignore_ascii_case("delivery-status")
                            || s.eq_ignore_ascii_case("global-delivery-status")
                    })
            })
        })
        .filter_map(|p| match &p.body {
            PartType::Text(t) | PartType::Html(t) => Some(t.to_string()),
            PartType::Binary(b) | PartType::InlineBinary(b) => Some(String::from_utf8_lossy(b).into_owned()),
            PartType::Message(_) | PartType::Multipart(_) => None,
        })
        .collect()
}

/// Lines that announce the returned original message, after trimming `-`, `=`, `*`, `:`, `.`
/// and white space and lower-casing: exact matches.
pub(super) const ORIGINAL_EXACT: &[&str] = &[
    "original message",
    "original message follows",
    "original message headers",
    "original message header",
    "returned message",
    "unsent message follows",
    "message headers follow",
    "original mail as follows",
    "undelivered message",
    "original message text",
    "header of original message",
];

/// Lines that announce the returned original message: substrings.
pub(super) const ORIGINAL_CONTAINS: &[&str] = &[
    "below this line is a copy of the message",
    "this is a copy of the message",
    "header of the original message",
    "copy of the original message",
    "included is a copy of the message header",
    "contains the original mail headers",
    "original message follows",
    "unsent message follows",
    "original message headers",
    "text of the returned message",
];

/// Header names that start a copied header block when they begin a line.
pub(super) const COPIED_HEADER_STARTS: &[&str] =
    &["received:", "return-path:", "dkim-signature:", "x-received:"];

/// `text` split before the first line that starts the returned original message.
pub(super) fn split_at_original(text: &str) -> (&str, &str) {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if starts_original(line) {
            return text.split_at(offset);
        }
        offset += line.len();
    }
    (text, "")
}

/// Whether `line` marks the start of the returned original message.
pub(super) fn starts_original(line: &str) -> bool {
    let lower = line.to_lowercase();
    if COPIED_HEADER_STARTS.iter().any(|h| lower.starts_with(h)) {
        return true;
    }
    let core = lower
        .trim()
        .trim_matches(|c: char| matches!(c, '-' | '=' | '*' | ':' | '.' | '_' | '>') || c.is_whitespace());
    ORIGINAL_EXACT.contains(&core) || ORIGINAL_CONTAINS.iter().any(|m| core.contains(m))
}

/// Senders that only send bounces: `MAILER-DAEMON`, `postmaster`, "Mail Delivery System",
/// Exchange's `MicrosoftExchange<guid>` system mailbox, or an empty `From: <>`.
pub(super) fn daemon_sender(headers: &Headers) -> bool {
    let Some(from) = headers.first("from") else {
        return false;
    };
    let from = from.to_lowercase();
    DAEMON_MARKERS.iter().any(|m| from.contains(m)) || from.trim() == "<>" || from.ends_with("<>")
}

/// Substrings of a lower-cased `From` value that mark a bounce sender.
pub(super) const DAEMON_MARKERS: &[&str] = &[
    "mailer-daemon",
    "mailer_daemon",
    "mailerdaemon",
    "mailer daemon",
    "mail-daemon",
    "postmaster",
    "post_master",
    "mail delivery",
    "mail.delivery",
    "maildelivery",
    "microsoftexchange",
    "ndr administrator",
];

/// A `From` that is a mailing-list manager's own address (see [`is_list_owner`]): list
/// managers send post rejections and loop alerts from there.
pub(super) fn list_admin_sender(headers: &Headers) -> bool {
    headers.values("from").flat_map(find_addresses).any(|(_, a)| is_list_owner(&a))
}

/// Headers showing that no person sent the message: an `Auto-Submitted` value, a null
/// `Return-Path`, a daemon-like or no-reply sender.
pub(super) fn machine_sent(headers: &Headers) -> bool {
    headers.values("auto-submitted").any(|v| header_token(v) != "no")
        || headers.values("return-path").any(|v| v.trim() == "<>")
        || daemon_sender(headers)
        || headers.values("from").any(|v| {
            let v = v.to_lowercase();
            ["no-reply", "noreply", "do-not-reply", "donotreply", "sysadmin"].iter().any(|m| v.contains(m))
        })
}

/// Whether the subject is a forward ("Fwd:", "FW:", "WG:", "TR:", "RV:"): a person passing a
/// bounce on is writing to us, so wording alone never makes it a bounce.
pub(super) fn is_forward(subject: &str) -> bool {
    let s = normalise_subject(subject);
    ["fwd:", "fw:", "wg:", "tr:", "rv:", "fwd :", "fw :", "tr :", "enc:", "vs:", "doorst:", "転送:", "转发:"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// Subjects of non-standard bounces (lower-case prefixes, after reply prefixes).
pub(super) const BOUNCE_SUBJECTS: &[&str] = &[
    "undelivered mail returned to sender",
    "undeliverable",
    "undelivered mail",
    "undelivered message",
    "delivery status notification",
    "mail delivery failed",
    "mail delivery failure",
    "mail delivery system",
    "failure notice",
    "returned mail",
    "delivery failure",
    "delivery failed",
    "delivery notification",
    "mail system error",
    "message delivery has failed",
    "message could not be delivered",
    "mail could not be delivered",
    "message not delivered",
    "non-delivery",
    "nondeliverable",
    "non delivery",
    "warning: could not send message",
    "there was an error sending your mail",
    "mail failure",
    "delivery report",
    "loop alert",
    "unzustellbar",
    "nicht zustellbar",
    "non remis",
    "non recapitabile",
    "no se puede entregar",
    "onbestelbaar",
    "olevererbart",
    "ej levererbart",
    "ваше сообщение не доставлено",
    "недоставленное сообщение",
    "配信不能",
    "メールエラー",
    "无法投递",
];

/// The bounce subject pattern a subject starts with.
pub(super) fn bounce_subject(subject: &str) -> Option<&'static str> {
    let s = strip_reply_prefixes(&normalise_subject(subject));
    BOUNCE_SUBJECTS.iter().find(|p| s.starts_with(**p)).copied()
}

/// Wording of delivery failures (lower-case substrings of the notification text).
pub(super) const BOUNCE_PHRASES: &[&str] = &[
    "could not be delivered",
    "couldn't be delivered",
    "could not deliver",
    "couldn't deliver",
    "was not delivered",
    "wasn't delivered",
    "not be delivered",
    "has not yet been delivered",
    "delivery has failed",
    "delivery failed",
    "delivery to the following recipient",
    "delevery to the following recipient",
    "did not reach the following recipient",
    "permanent error",
    "permanent fatal error",
    "failed permanently",
    "unable to deliver",
    "wasn't able to deliver",
    "error delivering your mail",
    "had delivery problems",
    "had delivery errors",
    "had permanent delivery errors",
    "address(es) failed",
    "following address failed",
    "following recipients failed",
    "trouble delivering your message",
    "recipients returned permanent errors",
    "rejected by a remote mail server",
    "error: invalid user address",
    "transcript of session follows",
    "delivery status notification",
    "returned mail",
    "undeliverable",
    "user unknown",
    "unknown user",
    "no such user",
    "mailbox is full",
    "mailbox full",
    "mailbox exceeds",
    "you are not a member",
    "duplicated message-id",
    "not listed in domino directory",
    "the following addresses had",
];

/// The first bounce phrase found in `text`.
pub(super) fn bounce_phrase(text: &str) -> Option<&'static str> {
    let lower = text.to_lowercase();
    BOUNCE_PHRASES.iter().find(|p| lower.contains(**p)).copied()
}

/// Whether the subject announces a delay warning rather than a failure.
pub(super) fn is_delay_notice(subject: &str) -> bool {
    let s = normalise_subject(subject);
    s.contains("delay") || s.starts_with("warning:") || s.contains("still being retried")
}

/// The action reported for a recipient of a plain-text bounce.
pub(super) fn text_action(status: &str, delayed: bool) -> &'static str {
    if status.starts_with('2') {
        "delivered"
    } else if delayed {
        "delayed"
    } else {
        "failed"
    }
}

/// The addresses of `X-Failed-Recipients` (Exim, Gmail).
pub(super) fn failed_recipients_header(headers: &Headers) -> Vec<String> {
    let mut listed: Vec<String> = Vec::new();
    for (_, email) in headers.values("x-failed-recipients").flat_map(find_addresses) {
        if !listed.contains(&email) {
            listed.push(email);
        }
    }
    listed
}

/// Removes repeated (email, status, action) records, keeping the first.
pub(super) fn dedupe(recipients: &mut Vec<BounceRecipient>) {
    let mut seen: Vec<(String, String, Option<String>)> = Vec::new();
    recipients.retain(|r| {
        let key = (r.email.clone(), r.status.clone(), r.action.clone());
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
}

// ------------------------------------------------------------------------------------------
