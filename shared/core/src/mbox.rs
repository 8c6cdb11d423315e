//! Splitting an mbox file into messages. Reads the mboxrd and mboxo variants: a message
//! starts at a `From ` line at the start of the file or after an empty line, and `>From `
//! quoting (any number of `>`) loses one `>`.
//!
//! Written here rather than taken from a crate: the crates that read mbox either load
//! every message as parsed structures or do not undo mboxrd quoting; this is 40 lines.

use std::io::BufRead;

/// The messages of an mbox file held in memory, without their `From ` separator lines.
pub fn split(data: &[u8]) -> Vec<Vec<u8>> {
    let mut r = Reader::new(data, 0);
    std::iter::from_fn(|| r.next_message().ok().flatten()).map(|m| m.bytes).collect()
}

/// One message of an mbox, with where it lies in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Offset of its `From ` line.
    pub start: u64,
    /// Offset of the next message's `From ` line (or the end of the file): where a reader
    /// resumes after this message.
    pub next: u64,
    pub bytes: Vec<u8>,
}

/// Reads an mbox one message at a time, holding only the message being read: a
/// multi-gigabyte export (Google Takeout gives one mbox per account) streams through in
/// constant memory, and [`Reader::new`] at a [`Message::next`] offset resumes it.
pub struct Reader<R> {
    src: R,
    /// Offset in the file of the next byte `src` gives.
    pos: u64,
    /// The message being read: its `From ` line's offset and its lines so far.
    cur: Option<(u64, Vec<u8>)>,
    prev_blank: bool,
    line: Vec<u8>,
}

impl<R: BufRead> Reader<R> {
    /// A reader whose `src` starts at byte `offset` of the file (the start of the file or
    /// of a `From ` line).
    pub fn new(src: R, offset: u64) -> Reader<R> {
        Reader { src, pos: offset, cur: None, prev_blank: true, line: Vec::new() }
    }

    /// The next non-empty message, or `None` at the end of the file.
    pub fn next_message(&mut self) -> std::io::Result<Option<Message>> {
        loop {
            self.line.clear();
            let at = self.pos;
            let n = self.src.read_until(b'\n', &mut self.line)?;
            self.pos += n as u64;
            if n == 0 {
                match self.cur.take() {
                    Some((start, mut m)) => {
                        trim_separator_blank(&mut m);
                        if !m.is_empty() {
                            return Ok(Some(Message { start, next: at, bytes: m }));
                        }
                        return Ok(None);
                    }
                    None => return Ok(None),
                }
            }
            let line = &self.line[..];
            if self.prev_blank && line.starts_with(b"From ") {
                self.prev_blank = false;
                if let Some((start, mut m)) = self.cur.replace((at, Vec::new())) {
                    trim_separator_blank(&mut m);
                    if !m.is_empty() {
                        return Ok(Some(Message { start, next: at, bytes: m }));
                    }
                }
                continue;
            }
            self.prev_blank = line == b"\n" || line == b"\r\n";
            let Some((_, m)) = self.cur.as_mut() else { continue };
            let quoted = line
                .iter()
                .position(|&b| b != b'>')
                .is_some_and(|n| n > 0 && line[n..].starts_with(b"From "));
            m.extend_from_slice(if quoted { &line[1..] } else { line });
        }
    }
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
    fn reader_gives_offsets_to_resume_from() {
        let data: &[u8] = b"From a@b Mon Jan  1 00:00:00 2024\nSubject: one\n\nhello\n\nFrom c@d Tue Jan  2 00:00:00 2024\nSubject: two\n\nbye\n\nFrom e@f Wed Jan  3 00:00:00 2024\nSubject: three\n\nagain\n";
        let mut r = Reader::new(data, 0);
        let one = r.next_message().unwrap().unwrap();
        assert_eq!((one.start, one.bytes.as_slice()), (0, &b"Subject: one\n\nhello\n"[..]));
        let two = r.next_message().unwrap().unwrap();
        assert_eq!(two.start, one.next);
        assert!(data[two.start as usize..].starts_with(b"From c@d"));
        let three = r.next_message().unwrap().unwrap();
        assert_eq!(three.next, data.len() as u64);
        assert!(r.next_message().unwrap().is_none());
        // Resumed after the first message: the same two follow, at the same offsets.
        let mut again = Reader::new(&data[one.next as usize..], one.next);
        assert_eq!(again.next_message().unwrap().unwrap(), two);
        assert_eq!(again.next_message().unwrap().unwrap(), three);
        assert!(again.next_message().unwrap().is_none());
    }

    #[test]
    fn detects_mbox() {
        assert!(looks_like_mbox(b"From a@b Mon Jan  1 00:00:00 2024\nSubject: x\n\n"));
        assert!(!looks_like_mbox(b"From: a@b\nSubject: x\n\n"));
    }
}
