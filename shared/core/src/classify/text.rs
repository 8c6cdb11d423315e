//! Bounces: plain-text reports written for humans (Postfix, qmail, Exim, Exchange, ...).

use super::*;

// Bounces: plain-text reports

/// The failed recipients of the first notice that names any. Addresses of the bounce itself
/// (From, To, Cc, Reply-To, Sender, Return-Path: the reporting system and the original
/// sender) are skipped; when that leaves nothing, only the reporting system's are (anonymised
/// samples and local bounces can share one address for everything).
pub(super) fn text_recipients(notices: &[String], headers: &Headers) -> Vec<BounceRecipient> {
    let own = |names: &[&str]| -> Vec<String> {
        names
            .iter()
            .flat_map(|n| headers.values(n))
            .flat_map(|v| find_addresses(v).into_iter().map(|(_, a)| a))
            .collect()
    };
    let contacts: Vec<String> = notices
        .iter()
        .flat_map(|n| n.lines())
        .filter(|l| is_contact_line(l))
        .flat_map(|l| find_addresses(l).into_iter().map(|(_, a)| a))
        .collect();
    let strict = [own(&["from", "to", "cc", "reply-to", "sender", "return-path"]), contacts.clone()].concat();
    let loose = [own(&["from"]), contacts].concat();
    [strict, loose]
        .iter()
        .flat_map(|exclude| notices.iter().map(move |n| recipients_in_notice(n, exclude)))
        .find(|r| !r.is_empty())
        .unwrap_or_default()
}

/// Reads the recipients of one plain-text bounce notice (already cut before the returned
/// message). Every address that is not excluded, not on a copied header line and not in a
/// sender context is a recipient; its status is the failure status code on a line naming it,
/// else the first one in its block (the lines up to the next recipient), else the only one
/// of the notice; failing all that, the class of an SMTP reply code (see
/// [`BounceRecipient::status`]). Success codes (`2.x.x`) are ignored: in a failure notice they
/// come from the transcript of the commands that worked.
pub(super) fn recipients_in_notice(notice: &str, exclude: &[String]) -> Vec<BounceRecipient> {
    let lines: Vec<&str> = notice.lines().collect();
    let found = candidate_recipients(&lines, exclude);
    let all_codes = distinct_codes(&lines);
    found
        .iter()
        .enumerate()
        .map(|(k, (email, start))| {
            let end = found.get(k + 1).map_or(lines.len(), |(_, next)| *next).max(start + 1);
            let (status, diagnostic) = recipient_status(email, &lines, *start, end, &all_codes, found.len());
            BounceRecipient { email: email.clone(), status, action: None, diagnostic }
        })
        .collect()
}

/// Addresses that can be failed recipients, with the line of their first mention.
pub(super) fn candidate_recipients(lines: &[&str], exclude: &[String]) -> Vec<(String, usize)> {
    let mut found: Vec<(String, usize)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if is_copied_header_line(line) || is_contact_line(line) {
            continue;
        }
        for (pos, email) in find_addresses(line) {
            let known = exclude.contains(&email) || found.iter().any(|(e, _)| *e == email);
            if !known && !is_sender_context(&line[..pos]) {
                found.push((email, i));
            }
        }
    }
    found
}

/// Every distinct failure status code (class 4 or 5) of the lines, in order.
pub(super) fn distinct_codes(lines: &[&str]) -> Vec<String> {
    let mut codes: Vec<String> = Vec::new();
    for line in lines {
        for code in failure_codes(line) {
            if !codes.contains(&code) {
                codes.push(code);
            }
        }
    }
    codes
}

/// The status (and the line it came from) of `email`, whose block is `lines[start..end]`:
/// a failure code on a line naming it or in its block; then, for the only recipient, the
/// first code of the notice or any reply code; for one of several, a reply code in its block
/// or the notice's only code (a transcript after the list of recipients).
pub(super) fn recipient_status(
    email: &str,
    lines: &[&str],
    start: usize,
    end: usize,
    all_codes: &[String],
    recipients: usize,
) -> (String, Option<String>) {
    let block = lines.get(start..end).unwrap_or_default();
    let naming = lines.iter().filter(|l| l.to_lowercase().contains(email));
    let coded = naming.chain(block.iter()).find_map(|l| failure_codes(l).into_iter().next().map(|c| (c, *l)));
    let notice_code = |single: bool| {
        let code = match all_codes {
            [only] => Some(only),
            [first, ..] if single => Some(first),
            _ => None,
        }?;
        let line = lines.iter().find(|l| l.contains(code.as_str())).copied().unwrap_or_default();
        Some((code.clone(), line))
    };
    let found = if recipients == 1 {
        coded.or_else(|| notice_code(true)).or_else(|| first_reply_class(lines))
    } else {
        coded.or_else(|| first_reply_class(block)).or_else(|| notice_code(false))
    };
    match found {
        Some((code, line)) => (code, Some(diagnostic_line(line))),
        None => (String::new(), None),
    }
}

/// The first reply-code class of the lines, with its line.
pub(super) fn first_reply_class<'a>(lines: &[&'a str]) -> Option<(String, &'a str)> {
    lines.iter().find_map(|l| reply_code_class(l).map(|c| (c, *l)))
}

/// The failure status codes (class 4 or 5) of a line, in order.
pub(super) fn failure_codes(line: &str) -> Vec<String> {
    status_codes(line).into_iter().map(|(_, c)| c).filter(|c| !c.starts_with('2')).collect()
}

/// A trimmed diagnostic line, at most 500 characters.
pub(super) fn diagnostic_line(line: &str) -> String {
    let line = line.trim();
    match line.char_indices().nth(500) {
        Some((i, _)) => line[..i].to_string(),
        None => line.to_string(),
    }
}

/// Header names whose lines name the sender or the original message, not a failed recipient.
pub(super) const COPIED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "reply-to",
    "sender",
    "return-path",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "received",
    "message-id",
    "in-reply-to",
    "references",
    "x-postfix-sender",
    "resent-from",
    "resent-to",
    "mail from",
    "x-original-message-id",
];

/// Whether the line is a header field copied from the original message (`To: ...`).
pub(super) fn is_copied_header_line(line: &str) -> bool {
    let t = line.trim_start_matches(|c: char| c.is_whitespace() || c == '>');
    match t.split_once(':') {
        Some((name, _)) => COPIED_HEADERS.contains(&name.trim().to_ascii_lowercase().as_str()),
        None => false,
    }
}

/// Whether the line tells the reader whom to contact (an address that is not a recipient).
pub(super) fn is_contact_line(line: &str) -> bool {
    let l = line.to_lowercase();
    ["contact", "assistance", "send mail to", "please report", "questions"].iter().any(|m| l.contains(m))
}

/// Whether the text before an address shows it is the sender (`MAIL FROM:<`, `from`), not a
/// recipient an alias was expanded from (`(expanded from: <...>)`).
pub(super) fn is_sender_context(before: &str) -> bool {
    let b = before.to_lowercase();
    let b = b.trim_end_matches(|c: char| c.is_whitespace() || c == '<' || c == '"' || c == '\'' || c == '(');
    let b = b.trim_end_matches(':');
    !b.ends_with("expanded from")
        && ["from", "envelope-from", "sender", "sent by"].iter().any(|m| b.ends_with(m))
}

// ------------------------------------------------------------------------------------------
