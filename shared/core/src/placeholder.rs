//! What is stored for a message too large to fetch: its own header block (so it threads,
//! routes and logs like the original) over a short text that says what happened and where
//! the original still is. One message over the size cap must never block a mailbox, and
//! it must not vanish either (docs/connections.md, "Size cap").

/// The header that marks a placeholder (its value: why).
pub const HEADER: &str = "X-Mailroom-Placeholder";

/// A placeholder for a message of `size` bytes (when known) over `limit`, from its header
/// block `headers` (may be empty when the provider gives none). `location` says where the
/// original is ("IMAP folder INBOX, UID 42").
pub fn too_large(headers: &[u8], size: Option<u64>, limit: u64, location: &str) -> Vec<u8> {
    let text = String::from_utf8_lossy(headers);
    let mut out = String::new();
    let mut skipping = false;
    for line in text.split_inclusive('\n') {
        let folded = line.starts_with(' ') || line.starts_with('\t');
        if !folded {
            let name = line.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
            skipping =
                name.starts_with("content-") || name == "mime-version" || name == HEADER.to_ascii_lowercase();
            if line.trim().is_empty() {
                break;
            }
        }
        if !skipping {
            out.push_str(line.trim_end_matches(['\r', '\n']));
            out.push_str("\r\n");
        }
    }
    let mb = |b: u64| format!("{:.1} MB", b as f64 / 1_000_000.0);
    let how_big =
        size.map_or_else(|| format!("larger than {}", mb(limit)), |s| format!("{} ({} bytes)", mb(s), s));
    out.push_str(&format!("{HEADER}: too-large; limit={limit}\r\n"));
    out.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    out.push_str(&format!(
        "[Mailroom] This message is {how_big}, over the limit of {} that Mailroom fetches (MAILROOM_MAX_MESSAGE_MB). Its headers are kept here; the whole message is still in the mailbox: {location}.\r\n",
        mb(limit)
    ));
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_headers_and_says_why() {
        let h = b"From: Ann <ann@x.example>\r\nSubject: =?utf-8?q?Big_fil=C3=A9s?=\r\nMessage-ID: <big@x.example>\r\nContent-Type: multipart/mixed;\r\n boundary=\"zz\"\r\nMIME-Version: 1.0\r\n\r\n";
        let p = too_large(h, Some(52_000_000), 40_000_000, "IMAP folder INBOX, UID 7");
        let m = crate::understand(&p).unwrap().message;
        assert_eq!(m.message_id, "big@x.example");
        assert_eq!(m.subject, "Big filés");
        assert_eq!(m.from.unwrap().email, "ann@x.example");
        assert!(
            m.text.contains("52.0 MB") && m.text.contains("40.0 MB") && m.text.contains("UID 7"),
            "{}",
            m.text
        );
        assert!(!String::from_utf8_lossy(&p).contains("boundary"));
        let none = too_large(b"", None, 40_000_000, "Graph message A");
        assert!(crate::understand(&none).unwrap().message.text.contains("larger than 40.0 MB"));
    }
}
