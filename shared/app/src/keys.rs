//! Item keys of the main table, in one place. The layout is documented in
//! docs/storage.md.

use mailroom_core::{EmailAddress, Folder, Sha256};
use mailroom_store::Key;

pub fn inbox(addr: &EmailAddress) -> Key {
    Key::new(format!("inbox#{}", addr.key()), "inbox")
}
pub const INBOXES_INDEX_PK: &str = "inboxes";

/// One stored copy of raw bytes in one inbox folder; every copy of the same bytes shares
/// the partition `raw#{sha}`.
pub fn raw_copies_pk(sha: &Sha256) -> String {
    format!("raw#{sha}")
}
pub fn raw_copy(sha: &Sha256, inbox: &EmailAddress, folder: Folder) -> Key {
    Key::new(raw_copies_pk(sha), format!("copy#{}#{}", inbox.key(), folder.as_str()))
}
pub fn copies_index_pk(inbox: &EmailAddress) -> String {
    format!("copies#{}", inbox.key())
}

pub fn message(message_id: &str) -> Key {
    Key::new(format!("msg#{message_id}"), "msg")
}
pub fn messages_index_pk(inbox: &EmailAddress) -> String {
    format!("messages#{}", inbox.key())
}

/// A workspace user (agent or admin), by email; written by the workspace configuration.
pub fn user(addr: &EmailAddress) -> Key {
    Key::new(format!("user#{}", addr.key()), "user")
}

/// A string attribute of an item.
pub fn item_str(item: &mailroom_store::Item, k: &str) -> Option<String> {
    item.get(k).and_then(serde_json::Value::as_str).map(str::to_string)
}
