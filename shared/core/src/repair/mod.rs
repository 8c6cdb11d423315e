//! A thin layer over mail-parser for the mail real helpdesks receive: where mail-parser's
//! first reading shows a problem it cannot fix itself, a repaired copy of the raw bytes is
//! made and read again. The stored raw message is never changed; the repairs are listed
//! in the parsed message's `defects`.
//!
//! Repairs of the bytes (then read again by mail-parser):
//! - header values in raw 8-bit text that is not UTF-8 (GBK, Big5, Shift_JIS, Windows-1252,
//!   raw ISO-2022-JP), in the message's headers and every part's (file names), decoded
//!   with the charset the part or the message declares, else a detected one
//!   ([`charset`]), and written back as UTF-8, which mail-parser reads (RFC 6532);
//! - base64 bodies with characters outside the alphabet, which mail-parser keeps as
//!   undecoded text: decoded as far as they go ([`decode::base64_tolerant`]) and written
//!   back clean;
//! - `x-uuencode` / `uuencode` parts: decoded and written back as base64.
//!
//! Address headers that RFC 5322 parsing cannot read are read by [`address::lenient`]
//! after the second reading (message.rs).

pub mod address;
pub mod charset;
pub mod decode;

use base64::Engine;
use mail_parser::{HeaderName, HeaderValue, Message, MessagePart, MimeHeaders, PartType};
use std::ops::Range;

/// The repairs one message needs: byte ranges of the raw message and what replaces each.
#[derive(Default)]
pub struct Plan {
    edits: Vec<(Range<usize>, Vec<u8>)>,
    /// What was repaired, for the message's `defects`.
    pub notes: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// The repaired copy of `raw`.
    pub fn apply(mut self, raw: &[u8]) -> Vec<u8> {
        self.edits.sort_by_key(|(r, _)| r.start);
        let mut out = Vec::with_capacity(raw.len() + raw.len() / 8);
        let mut at = 0;
        for (r, with) in self.edits {
            if r.start < at || r.end > raw.len() || r.start > r.end {
                continue; // overlapping or out of range: keep the original bytes
            }
            out.extend_from_slice(&raw[at..r.start]);
            out.extend_from_slice(&with);
            at = r.end;
        }
        out.extend_from_slice(&raw[at..]);
        out
    }
}

/// Looks at mail-parser's first reading of `raw` and plans the repairs it needs.
pub fn plan(raw: &[u8], msg: &Message<'_>) -> Plan {
    // The message's own parts. An attached message's parts are not repaired: they are its
    // bytes, kept as they came (the attachment is those bytes).
    let parts: Vec<&MessagePart<'_>> = msg.parts.iter().collect();
    let mut plan = Plan::default();
    let body_charset = parts.iter().find_map(|p| text_charset(p));

    // Raw 8-bit headers: one detection over all of the message's undecodable header bytes.
    let bad: Vec<(&MessagePart<'_>, &mail_parser::Header<'_>)> = parts
        .iter()
        .flat_map(|p| p.headers.iter().map(move |h| (*p, h)))
        .filter(|(_, h)| raw.get(range(h.offset_start, h.offset_end)).is_some_and(charset::needs_decoding))
        .collect();
    if !bad.is_empty() {
        let sample: Vec<u8> =
            bad.iter().flat_map(|(_, h)| raw[range(h.offset_start, h.offset_end)].to_vec()).collect();
        let detected = charset::detect(&sample);
        for (part, h) in bad {
            let r = range(h.offset_start, h.offset_end);
            let declared = text_charset(part).or(body_charset);
            let (text, enc, lossy) = charset::decode(&raw[r.clone()], declared, detected);
            let loss = if lossy { ", undecodable bytes replaced" } else { "" };
            plan.notes.push(format!(
                "{} header in raw 8-bit text: read as {}{loss}",
                h.name.as_str(),
                enc.name()
            ));
            plan.edits.push((r, text.into_bytes()));
        }
    }

    // Structure first: once a part's extent changes, its body is planned on the next
    // round's reading, where its boundaries are right.
    let before = plan.edits.len();
    attached_messages(raw, msg, &mut plan);
    unclosed_multiparts(raw, msg, &mut plan);
    if plan.edits.len() > before {
        return plan;
    }
    for part in &parts {
        undeclared_text(raw, part, &mut plan);
    }

    for part in parts.iter().filter(|p| !matches!(p.body, PartType::Multipart(_) | PartType::Message(_))) {
        let Some(cte) = part.headers.iter().find(|h| h.name == HeaderName::ContentTransferEncoding) else {
            continue;
        };
        let token = match &cte.value {
            HeaderValue::Text(t) => t.trim().to_ascii_lowercase(),
            _ => continue,
        };
        let body = range(part.offset_body, part.offset_end);
        let Some(bytes) = raw.get(body.clone()) else { continue };
        let decoded = match token.as_str() {
            "base64" if part.is_encoding_problem && decode::base64_is_broken(bytes) => {
                let d = decode::base64_tolerant(bytes);
                plan.notes.push(format!(
                    "base64 body with characters outside the alphabet: {} bytes decoded",
                    d.len()
                ));
                d
            }
            "base64" if decode::base64_is_truncated(bytes) => {
                let d = decode::base64_tolerant(bytes);
                plan.notes.push(format!("base64 body cut short: {} bytes decoded", d.len()));
                d
            }
            "x-uuencode" | "uuencode" | "x-uue" => {
                let Some((d, _name)) = decode::uudecode(bytes) else {
                    plan.notes.push("uuencoded part without a begin line: kept as it is".into());
                    continue;
                };
                plan.notes.push(format!("uuencoded part: {} bytes decoded", d.len()));
                let value = range(cte.offset_start, cte.offset_end);
                let crlf = raw.get(value.clone()).is_some_and(|v| v.ends_with(b"\r\n"));
                let eol: &[u8] = if crlf { b"\r\n" } else { b"\n" };
                plan.edits.push((value, [b" base64".as_slice(), eol].concat()));
                d
            }
            _ => continue,
        };
        plan.edits.push((body, base64_lines(&decoded)));
    }
    plan
}

/// A multipart inside another that is never closed (no `--inner--` before the outer
/// boundary comes again): mail-parser reads it to the end of the message, taking the outer
/// multipart's later parts into it. Its closing delimiter is written in before the outer
/// boundary, as Python's parser reads it.
fn unclosed_multiparts(raw: &[u8], msg: &Message<'_>, plan: &mut Plan) {
    let boundary =
        |p: &MessagePart<'_>| p.content_type().and_then(|c| c.attribute("boundary")).map(str::to_string);
    for outer in &msg.parts {
        let (PartType::Multipart(ids), Some(ob)) = (&outer.body, boundary(outer)) else { continue };
        for inner in ids.iter().filter_map(|id| msg.parts.get(*id as usize)) {
            let (PartType::Multipart(_), Some(ib)) = (&inner.body, boundary(inner)) else { continue };
            let Some(bytes) = raw.get(range(inner.offset_body, inner.offset_end)) else { continue };
            let Some(cut) = find(bytes, format!("\n--{ob}").as_bytes()) else { continue };
            if find(&bytes[..cut], format!("--{ib}--").as_bytes()).is_some() {
                continue;
            }
            plan.notes
                .push("multipart never closed before its container's next boundary: closed there".into());
            let at = inner.offset_body as usize + cut;
            plan.edits.push((at..at, format!("\r\n--{ib}--").into_bytes()));
        }
    }
}

/// An attached message sent without a transfer encoding whose own multipart boundary never
/// comes (a truncated forward) makes mail-parser read on past its container's next
/// boundary, taking every later attachment into it. Such a part is re-sent as base64, so
/// that it is read on its own up to its container's boundary.
fn attached_messages(raw: &[u8], msg: &Message<'_>, plan: &mut Plan) {
    for container in &msg.parts {
        let PartType::Multipart(ids) = &container.body else { continue };
        let Some(boundary) = container.content_type().and_then(|c| c.attribute("boundary")) else { continue };
        // Only the container's own boundary: one further out would need the container
        // closed as well (mail-parser reads an unclosed multipart to the end).
        let delimiter = format!("\n--{boundary}");
        for part in ids.iter().filter_map(|id| msg.parts.get(*id as usize)) {
            // Read as a message, or (the last part, read to the end) kept as text.
            let is_message = part.content_type().is_some_and(|c| {
                c.ctype().eq_ignore_ascii_case("message")
                    && c.subtype().is_some_and(|s| s.eq_ignore_ascii_case("rfc822"))
            });
            if let PartType::Message(inner) = &part.body {
                if shares_raw(raw, inner) {
                    attached_messages(raw, inner, plan);
                }
            } else if !is_message {
                continue;
            }
            if part.encoding != mail_parser::Encoding::None {
                continue;
            }
            let body = range(part.offset_body, part.offset_end);
            let Some(bytes) = raw.get(body.clone()) else { continue };
            let Some(cut) = find(bytes, delimiter.as_bytes()) else { continue };
            let end = if cut > 0 && bytes[cut - 1] == b'\r' { cut - 1 } else { cut };
            plan.notes.push(format!(
                "attached message runs past its container's boundary: read as {end} bytes up to it"
            ));
            match part.headers.iter().find(|h| h.name == HeaderName::ContentTransferEncoding) {
                Some(h) => plan.edits.push((range(h.offset_start, h.offset_end), b" base64\r\n".to_vec())),
                None => {
                    let at = part.offset_header as usize;
                    plan.edits.push((at..at, b"Content-Transfer-Encoding: base64\r\n".to_vec()));
                }
            }
            plan.edits.push((body.start..body.start + end, base64_lines(&bytes[..end])));
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

/// A text part sent 8-bit whose bytes its charset cannot decode: no charset (or ASCII)
/// and not UTF-8, or a legacy charset that does not fit (EUC-JP bytes labelled
/// ISO-2022-JP). mail-parser would put U+FFFD in place of every such byte. The charset
/// chardetng detects is declared on the part instead, if it decodes every byte. A part
/// labelled UTF-8 is left alone: a few bad bytes in UTF-8 text are likelier than a wrong
/// label, and a guess would garble the rest.
fn undeclared_text(raw: &[u8], part: &MessagePart<'_>, plan: &mut Plan) {
    if part.encoding != mail_parser::Encoding::None
        || !matches!(part.body, PartType::Text(_) | PartType::Html(_))
    {
        return;
    }
    let Some(bytes) = raw.get(range(part.offset_body, part.offset_end)) else { return };
    if bytes.is_ascii() {
        return;
    }
    let label = part.content_type().and_then(|c| c.attribute("charset"));
    let fits = match label {
        None => std::str::from_utf8(bytes).is_ok(),
        Some(l) if charset::is_ascii_label(l) => std::str::from_utf8(bytes).is_ok(),
        Some(l) => match charset::declared(l) {
            Some(e) => e.decode_without_bom_handling_and_without_replacement(bytes).is_some(),
            // UTF-8, or a label nobody knows: left as mail-parser reads it.
            None => true,
        },
    };
    if fits {
        return;
    }
    let enc = charset::detect(bytes);
    if enc == encoding_rs::UTF_8 || enc.decode_without_bom_handling_and_without_replacement(bytes).is_none() {
        return;
    }
    plan.notes.push(match label {
        None => format!("8-bit text without a charset: read as {}", enc.name()),
        Some(l) => format!("8-bit text that charset {l} cannot decode: read as {}", enc.name()),
    });
    let Some(h) = part.headers.iter().find(|h| h.name == HeaderName::ContentType) else {
        let at = part.offset_header as usize;
        plan.edits
            .push((at..at, format!("Content-Type: text/plain; charset={}\r\n", enc.name()).into_bytes()));
        return;
    };
    let r = range(h.offset_start, h.offset_end);
    // A Content-Type header in raw 8-bit text (a file name) is being decoded by the header
    // repair; this part's charset waits for the next round.
    let Some(value) = raw.get(r.clone()).and_then(|v| std::str::from_utf8(v).ok()) else {
        plan.notes.pop();
        return;
    };
    let trimmed = value.trim_end();
    let eol = &value[trimmed.len()..];
    let lower = trimmed.to_ascii_lowercase();
    let new = match lower.find("charset=") {
        // Replace the ASCII label (quoted or not) with the detected charset.
        Some(i) => {
            let start = i + "charset=".len();
            let end = trimmed[start..].find([';', ' ', '\t']).map_or(trimmed.len(), |e| start + e);
            format!("{}{}{}{eol}", &trimmed[..start], enc.name(), &trimmed[end..])
        }
        None => format!("{trimmed}; charset={}{eol}", enc.name()),
    };
    plan.edits.push((r, new.into_bytes()));
}

/// Whether a nested message was read in place from `raw` (sent without a transfer
/// encoding), so that its parts' offsets are offsets into `raw`; one sent as base64 was
/// read from its own decoded bytes.
fn shares_raw(raw: &[u8], m: &Message<'_>) -> bool {
    let inner = m.raw_message().as_ptr();
    inner >= raw.as_ptr() && inner < raw.as_ptr().wrapping_add(raw.len())
}

/// The charset a text part declares.
fn text_charset(part: &MessagePart<'_>) -> Option<&'static encoding_rs::Encoding> {
    let ct = part.content_type()?;
    if !ct.ctype().eq_ignore_ascii_case("text") {
        return None;
    }
    charset::declared(ct.attribute("charset")?)
}

fn range(start: u32, end: u32) -> Range<usize> {
    start as usize..end as usize
}

/// Base64 in 76-character lines, each ending in CRLF.
fn base64_lines(bytes: &[u8]) -> Vec<u8> {
    let enc = base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut out = Vec::with_capacity(enc.len() + enc.len() / 38 + 2);
    for line in enc.as_bytes().chunks(76) {
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out
}
