//! Splitting an mbox file into messages. Reads the mboxrd and mboxo variants: a message
//! starts at a `From ` line at the start of the file or after an empty line, and `>From `
//! quoting (any number of `>`) loses one `>`.
//!
//! Written here rather than taken from a crate: the crates that read mbox either load
//! every message as parsed structures or do not undo mboxrd quoting; this is 40 lines.

/// The messages of an mbox file, without their `From ` separator lines.
pub fn split(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    let mut prev_blank = true;
    for line in data.split_inclusive(|&b| b == b'\n') {
        if prev_blank && line.starts_with(b"From ") {
            if let Some(mut m) = cur.take() {
                trim_separator_blank(&mut m);
                out.push(m);
            }
            cur = Some(Vec::new());
            prev_blank = false;
            continue;
        }
        prev_blank = line == b"\n" || line == b"\r\n";
        let Some(m) = cur.as_mut() else { continue };
        let quoted =
            line.iter().position(|&b| b != b'>').is_some_and(|n| n > 0 && line[n..].starts_with(b"From "));
        m.extend_from_slice(if quoted { &line[1..] } else { line });
    }
    if let Some(mut m) = cur {
        trim_separator_blank(&mut m);
        out.push(m);
    }
    out.retain(|m| !m.is_empty());
    out
}

/// The empty line before the next `From ` belongs to the file format, not the message.
fn trim_separator_blank(m: &mut Vec<u8>) {
    if m.ends_with(b"\r\n\r\n") {
        m.truncate(m.len() - 2);
    } else if m.ends_with(b"\n\n") {
        m.truncate(m.len() - 1);
    }
}

/// Whether the bytes look like an mbox file rather than one message (a message's own
/// header is `From:`, never `From `).
pub fn looks_like_mbox(head: &[u8]) -> bool {
    head.starts_with(b"From ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_unquotes() {
        let data = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\nhello\n>From the start\n>>From deeper\n\nFrom c@d Tue Jan  2 00:00:00 2024\nSubject: two\n\nbye\n";
        let m = split(data);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], b"Subject: one\n\nhello\nFrom the start\n>From deeper\n".to_vec());
        assert_eq!(m[1], b"Subject: two\n\nbye\n".to_vec());
    }

    #[test]
    fn from_inside_a_body_without_blank_line_is_not_a_separator() {
        let data = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\nline\nFrom here on\n";
        assert_eq!(split(data).len(), 1);
    }

    #[test]
    fn detects_mbox() {
        assert!(looks_like_mbox(b"From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\n"));
        assert!(!looks_like_mbox(b"From: a@b\nSubject: x\n\n"));
    }
}
