//! Scanners over plain text: addresses, RFC 3463 status codes and SMTP reply codes.

// Scanners

/// The addresses in `text` as (byte offset, lower-cased address). A deliberately plain scanner:
/// a local part of the usual characters, `@`, a dotted domain; an `@` inside a URL parameter
/// (`?a=b@c`) or path does not count.
pub(super) fn find_addresses(text: &str) -> Vec<(usize, String)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    for (k, &(_, c)) in chars.iter().enumerate() {
        if c != '@' {
            continue;
        }
        let mut start = k;
        while start > 0 && is_local_char(chars[start - 1].1) {
            start -= 1;
        }
        let mut end = k + 1;
        while end < chars.len() && is_domain_char(chars[end].1) {
            end += 1;
        }
        if let Some(found) = address_at(text, &chars, start, k, end) {
            out.push(found);
        }
    }
    out
}

/// The address spanning `chars[start..end]` with `@` at `at`, if it is a plausible one.
pub(super) fn address_at(
    text: &str,
    chars: &[(usize, char)],
    start: usize,
    at: usize,
    end: usize,
) -> Option<(usize, String)> {
    let byte = |i: usize| chars.get(i).map_or(text.len(), |(b, _)| *b);
    let local = text[byte(start)..byte(at)].trim_start_matches('.');
    let domain = text[byte(at + 1)..byte(end)].trim_end_matches(['.', '-']);
    let before = start.checked_sub(1).map(|i| chars[i].1);
    let in_url = matches!(before, Some('=' | '/' | '?' | '&'));
    let tld = domain.rsplit('.').next().unwrap_or("");
    let plausible = !local.is_empty()
        && domain.contains('.')
        && !domain.contains("..")
        && tld.chars().count() >= 2
        && tld.chars().any(char::is_alphabetic)
        && !in_url;
    plausible.then(|| (byte(at) - local.len(), format!("{local}@{domain}").to_lowercase()))
}

/// Characters of a local part. Letters of scripts written without spaces (CJK and beyond,
/// from U+2E80) end an address: in "宛先kijitora@example.jp様" they are the surrounding text.
pub(super) fn is_local_char(c: char) -> bool {
    (c.is_alphanumeric() && c < '\u{2e80}') || ".!#$%'*+-_^`{|}~".contains(c)
}

/// Characters of a domain (internationalised labels allowed, see [`is_local_char`]).
pub(super) fn is_domain_char(c: char) -> bool {
    (c.is_alphanumeric() && c < '\u{2e80}') || c == '.' || c == '-'
}

/// The RFC 3463 status codes (`class.subject.detail`, class 2, 4 or 5) in `text`, as (byte
/// offset, code). Digits or dots around the code disqualify it (IP addresses, versions).
pub(super) fn status_codes(text: &str) -> Vec<(usize, String)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    for i in 0..b.len() {
        if !matches!(b[i], b'2' | b'4' | b'5') || (i > 0 && (b[i - 1].is_ascii_digit() || b[i - 1] == b'.')) {
            continue;
        }
        if let Some(end) = status_code_end(b, i) {
            out.push((i, text[i..end].to_string()));
        }
    }
    out
}

/// The end of a status code starting at `i`, if one does.
pub(super) fn status_code_end(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    for _ in 0..2 {
        if b.get(j) != Some(&b'.') {
            return None;
        }
        let digits = b[j + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=3).contains(&digits) {
            return None;
        }
        j += 1 + digits;
    }
    let next_is_digit = |k: usize| b.get(k).is_some_and(u8::is_ascii_digit);
    let trailing = next_is_digit(j) || (b.get(j) == Some(&b'.') && next_is_digit(j + 1));
    (!trailing).then_some(j)
}

/// The first status code in `text`, preferring failures (4/5) over successes.
pub(super) fn first_status_code(text: &str) -> Option<String> {
    let codes = status_codes(text);
    codes.iter().find(|(_, c)| !c.starts_with('2')).or(codes.first()).map(|(_, c)| c.clone())
}

/// `"5.0.0"` / `"4.0.0"` for an SMTP failure reply code (`550`, `421`, ...) in a reply
/// position of `text`: at the start of the line or right after `:`, `#`, `(`, `[` or
/// `said`. See [`BounceRecipient::status`] for why only the class is derived.
pub(super) fn reply_code_class(text: &str) -> Option<String> {
    let b = text.as_bytes();
    for i in 0..b.len().saturating_sub(2) {
        let is_code = matches!(b[i], b'4' | b'5') && b[i + 1].is_ascii_digit() && b[i + 2].is_ascii_digit();
        if !is_code || (i > 0 && b[i - 1].is_ascii_alphanumeric()) {
            continue;
        }
        let after_ok = match b.get(i + 3) {
            None => true,
            Some(c) => matches!(*c, b' ' | b'-' | b'\t' | b',' | b';'),
        };
        if after_ok && reply_position(&text[..i]) {
            return Some(format!("{}.0.0", b[i] as char));
        }
    }
    None
}

/// Whether the text before a number puts it where an SMTP reply code stands.
pub(super) fn reply_position(before: &str) -> bool {
    let t = before.trim_end();
    let lower = t.to_ascii_lowercase();
    t.is_empty()
        || t.ends_with([':', '#', '(', '[', '\'', '"'])
        || lower.ends_with("said")
        || lower.ends_with("error_code :")
        || lower.ends_with("<<<")
}

// ------------------------------------------------------------------------------------------
