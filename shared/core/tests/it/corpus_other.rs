//! The classifier on the public corpora that are *not* bounce collections
//! (`../shared/corpus/{mime-rfc,mime-malformed,mime-thirdparty,mikel-mail,cpython-email}`, read
//! in place): nothing may panic, and nothing may be called a bounce, an auto-reply or list
//! mail unless it really is one. The genuine ones are listed in [`GENUINE`], so a new false
//! positive (or a lost true one) fails the test.
//!
//! `cargo test -p mailroom-core --test corpus_other -- --nocapture` prints every file whose
//! kind is not `normal`.

use mail_parser::MessageParser;
use mailroom_core::classify::{Classification, Kind, classify};
use std::path::{Path, PathBuf};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/corpus");
const FOLDERS: [&str; 5] = ["mime-rfc", "mime-malformed", "mime-thirdparty", "mikel-mail", "cpython-email"];

/// Every message of these folders whose kind is not `normal`, checked by reading it, with the
/// kind it must keep (paths relative to the corpus root).
const GENUINE: &[(&str, Kind)] = &[
    // RFC 3464 delivery-status reports.
    ("cpython-email/msg_16.txt", Kind::Bounce), // postmaster@ucla.edu report, relayed by a Mailman list
    ("cpython-email/msg_25.txt", Kind::Bounce), // Sendmail "Returned mail: Too many hops"
    ("cpython-email/msg_43.txt", Kind::Bounce), // amavis "Banned file" report from MAILER DAEMON <>
    ("mikel-mail/mime_emails/raw_email_with_mimepart_without_content_type.eml", Kind::Bounce), // Sendmail delay
    ("mikel-mail/multipart_report_emails/multi_address_bounce1.eml", Kind::Bounce),
    ("mikel-mail/multipart_report_emails/multi_address_bounce2.eml", Kind::Bounce),
    ("mikel-mail/multipart_report_emails/multipart_report_multiple_status.eml", Kind::Bounce),
    ("mikel-mail/multipart_report_emails/report_422.eml", Kind::Bounce),
    ("mikel-mail/multipart_report_emails/report_530.eml", Kind::Bounce),
    // A parser fixture that declares itself `multipart/report; report-type=delivery-status`
    // (placeholder text, no delivery-status part): only machines send that content type.
    ("cpython-email/msg_05.txt", Kind::Bounce),
    // Mailing-list mail.
    ("cpython-email/msg_02.txt", Kind::List), // Mailman digest: X-Mailman-Version, Sender ppp-admin@
    ("cpython-email/msg_32.txt", Kind::List), // freebsd-isp via Majordomo: Sender owner-..., Precedence bulk
    ("cpython-email/msg_33.txt", Kind::List), // the same list
    ("mime-thirdparty/014.eml", Kind::List),  // Mailman list post with List-* headers
    ("mikel-mail/error_emails/empty_in_reply_to.eml", Kind::List), // carries a List-Id header
    // Bulk spam with `Precedence: junk` and no list headers: auto_reply by the weak-signal rule
    // (machine-sent bulk, never a ticket).
    ("mikel-mail/error_emails/bad_date_header.eml", Kind::AutoReply),
];

fn is_licence(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_ascii_uppercase();
    name.contains("LICENSE") || name.contains("COPYING") || name.ends_with(".MD")
}

/// Whether the file starts like a message: an mbox `From ` line or a header field.
fn looks_like_message(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(2048)]);
    let Some(first) = text.lines().find(|l| !l.trim().is_empty()) else {
        return false;
    };
    first.starts_with("From ")
        || first.split_once(':').is_some_and(|(name, _)| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(&path, out);
        } else if !is_licence(&path) {
            out.push(path);
        }
    }
}

fn message_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for folder in FOLDERS {
        walk(&Path::new(CORPUS).join(folder), &mut files);
    }
    files.sort();
    files.retain(|p| std::fs::read(p).is_ok_and(|raw| looks_like_message(&raw)));
    files
}

fn relative(path: &Path) -> String {
    let root = Path::new(CORPUS).canonicalize().expect("corpus root exists");
    let full = path.canonicalize().expect("file exists");
    full.strip_prefix(&root).map(|p| p.display().to_string()).unwrap_or_else(|_| path.display().to_string())
}

/// `None` when mail-parser rejects the message (allowed: "parse or be rejected cleanly").
fn classify_bytes(raw: &[u8]) -> Option<Classification> {
    MessageParser::default().parse(raw).map(|m| classify(&m))
}

#[test]
fn other_corpora_parse_without_panic_and_have_no_false_positives() {
    let files = message_files();
    assert!(files.len() > 150, "expected the five corpus folders, found {} messages", files.len());
    let (mut panics, mut rejected, mut unexpected) = (Vec::new(), 0usize, Vec::new());
    let mut flagged = Vec::new();
    for path in &files {
        let name = relative(path);
        let raw = std::fs::read(path).expect("read message");
        let Ok(result) = std::panic::catch_unwind(|| classify_bytes(&raw)) else {
            panics.push(name);
            continue;
        };
        let Some(c) = result else {
            rejected += 1;
            continue;
        };
        let expected = GENUINE.iter().find(|(f, _)| *f == name).map_or(Kind::Normal, |(_, k)| *k);
        if c.kind != Kind::Normal {
            flagged.push(format!("{name}: {:?} {:?}", c.kind, c.signals));
        }
        if c.kind != expected {
            unexpected
                .push(format!("{name}: classified {:?}, expected {expected:?} ({:?})", c.kind, c.signals));
        }
    }
    eprintln!("{} messages, {rejected} rejected by mail-parser, {} panics", files.len(), panics.len());
    for f in &flagged {
        eprintln!("  not normal: {f}");
    }
    for u in &unexpected {
        eprintln!("  UNEXPECTED: {u}");
    }
    assert!(panics.is_empty(), "panicked on: {panics:?}");
    assert!(unexpected.is_empty(), "{} unexpected kinds: {unexpected:#?}", unexpected.len());
}
