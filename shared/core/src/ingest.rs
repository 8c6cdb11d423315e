use crate::ids::{EmailAddress, Sha256};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which folder of the mailbox a message came from: mail received, or the mailbox's own
/// Sent copies (agent messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Folder {
    #[default]
    Inbox,
    Sent,
}

impl Folder {
    pub fn as_str(self) -> &'static str {
        match self {
            Folder::Inbox => "inbox",
            Folder::Sent => "sent",
        }
    }
}

impl std::str::FromStr for Folder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "inbox" => Ok(Folder::Inbox),
            "sent" => Ok(Folder::Sent),
            other => Err(format!("unknown folder {other:?} (inbox or sent)")),
        }
    }
}

/// The small message on the ingest queue: the raw bytes live in the blob store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestPointer {
    pub inbox: EmailAddress,
    pub folder: Folder,
    pub key: String,
    pub sha256: Sha256,
    pub size: u64,
    /// Where it came from: `import`, `imap`, `gmail`, `graph`, `api`.
    pub source: String,
    /// The provider's ids (IMAP UID, Gmail message and thread id, Graph id), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_hint: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// Where the raw bytes of a message are kept:
/// `raw/{inbox}/{yyyy}/{mm}/{dd}/{sha256}.eml`. The date is the message's own date, so
/// that the same bytes always map to the same key.
pub fn raw_key(inbox: &EmailAddress, date: DateTime<Utc>, sha: &Sha256) -> String {
    format!("raw/{}/{}/{sha}.eml", inbox.key(), date.format("%Y/%m/%d"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn raw_key_layout() {
        let inbox = EmailAddress::parse("Support@Acme.example").unwrap();
        let d = Utc.with_ymd_and_hms(2024, 3, 4, 23, 59, 0).unwrap();
        let k = raw_key(&inbox, d, &crate::sha256(b"x"));
        assert!(k.starts_with("raw/support@acme.example/2024/03/04/2d711642"), "{k}");
        assert!(k.ends_with(".eml"));
    }
}
