//! Typed records of the main table's items, read with `from_item` (the pattern of
//! `mailbox::connection::Connection`): a module that reads a conversation, a message, a
//! ticket or a contact gets a struct, not a map of strings. Items are read leniently:
//! a missing or mistyped attribute is its default, never a failed request (an item
//! written by an older version still reads). Writes stay partial updates where several
//! writers touch one item (the conversation, the message): the field names here are the
//! attribute names those updates use.

use mailroom_store::Item;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A list attribute that may be absent, null or mistyped: empty then.
fn list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default())
}

/// Reads an item into a record; a field that does not fit is left at its default.
pub(crate) fn read<T: for<'de> Deserialize<'de> + Default>(item: &Item) -> T {
    match serde_json::from_value(Value::Object(item.clone())) {
        Ok(r) => r,
        Err(_) => {
            // One mistyped attribute must not hide the others: drop what does not fit.
            let mut cleaned = Item::new();
            for (k, v) in item {
                let mut one = Item::new();
                one.insert(k.clone(), v.clone());
                if serde_json::from_value::<T>(Value::Object(one)).is_ok() {
                    cleaned.insert(k.clone(), v.clone());
                }
            }
            serde_json::from_value(Value::Object(cleaned)).unwrap_or_default()
        }
    }
}

/// A conversation (`conv#{id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Conversation {
    pub id: String,
    pub inbox: String,
    pub subject: String,
    /// `open` or `closed` (absent: open).
    pub status: Option<String>,
    /// The first message's Date header (shown), and when we received it (ownership, order).
    pub first_date: String,
    pub first_received: Option<String>,
    pub first_message_id: Option<String>,
    pub contact_email: Option<String>,
    pub company_domain: Option<String>,
    pub team: Option<String>,
    pub assignee: Option<String>,
    pub priority: Option<String>,
    #[serde(deserialize_with = "list")]
    pub tags: Vec<String>,
    #[serde(deserialize_with = "list")]
    pub deal_ids: Vec<String>,
    /// Set when the conversation was merged into another (it lives on in its root).
    pub parent: Option<String>,
    #[serde(deserialize_with = "list")]
    pub merged: Vec<String>,
    pub rule_pipeline: Option<String>,
    pub closed_at: Option<String>,
    pub closed_by: Option<String>,
    /// Whom the agents' load counts it for (`load.rs`).
    pub load_for: Option<String>,
    /// Kept by the report stage for lists (`figures_v` says they are there).
    pub waiting_since: Option<i64>,
    pub sla: Option<String>,
    pub sla_due_at: Option<i64>,
    pub figures_v: Option<i64>,
    /// When we received its newest message (RFC 3339, milliseconds), and that message's
    /// new text, shortened: kept by the route stage for lists and search.
    pub last_activity: Option<String>,
    pub snippet: Option<String>,
    /// The channel of its first message (`email`, `form`, `chat`).
    pub channel: Option<String>,
    /// Unix seconds.
    pub snoozed_until: Option<i64>,
}

impl Conversation {
    pub fn from_item(item: &Item) -> Conversation {
        let mut c: Conversation = read(item);
        if c.id.is_empty() {
            c.id = item
                .get("pk")
                .and_then(Value::as_str)
                .and_then(|pk| pk.strip_prefix("conv#"))
                .unwrap_or_default()
                .to_string();
        }
        c
    }
    pub fn status(&self) -> &str {
        self.status.as_deref().unwrap_or("open")
    }
    pub fn is_open(&self) -> bool {
        self.status() == "open"
    }
}

/// One inbox copy of a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Copy {
    pub inbox: String,
    pub folder: Option<String>,
    pub sha256: Option<String>,
    pub key: Option<String>,
}

/// A recorded message (`msg#{message_id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Message {
    pub message_id: String,
    pub inbox: String,
    pub folder: Option<String>,
    pub raw_key: Option<String>,
    pub from: Option<String>,
    pub from_name: Option<String>,
    #[serde(deserialize_with = "list")]
    pub to: Vec<String>,
    #[serde(deserialize_with = "list")]
    pub cc: Vec<String>,
    /// Only on a sent copy.
    #[serde(deserialize_with = "list")]
    pub bcc: Vec<String>,
    pub subject: String,
    /// The Date header (RFC 3339), and the arrival in the mailbox.
    pub date: Option<String>,
    pub arrived: Option<String>,
    /// normal, auto_reply, bounce, list.
    pub kind: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    pub spoofed: bool,
    pub channel: Option<String>,
    pub conversation: Option<String>,
    pub preview: Option<String>,
    /// The agent who wrote a reply sent through Mailroom.
    pub author: Option<String>,
    pub copies: Vec<Copy>,
    pub attachments: Vec<Value>,
    /// `{received time}#{message id}`: the order we received messages in.
    pub gsi1sk: Option<String>,
    /// The verification run a test message belongs to (`crate::verify`).
    pub test: Option<String>,
    /// Where the route stage logged it on the CRM, or why not.
    pub log: Option<LogEntry>,
}

/// A message's email-log confirmation: where it was logged on the CRM, or the reason it
/// was not (`mailroom_core::crm_log::NotLogged`). The route stage writes it; the ticket
/// stage adds the conversation's ticket (docs/crm-and-routing.md, "What is logged").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct LogEntry {
    pub logged: bool,
    /// The contacts whose timelines show it.
    pub contacts: Vec<String>,
    /// The company of the conversation's customer.
    pub company: Option<String>,
    /// The deal it is logged on: the conversation's, else the most recently active open
    /// deal of the customer or their company.
    pub deal: Option<String>,
    pub ticket: Option<String>,
    /// Why it was not logged: `never_log`, `internal`, `not_tracked`, `bounce`,
    /// `auto_reply`, `list`, `no_contact`.
    pub reason: Option<String>,
    /// The inbox's logging mode when it was decided: `create_contacts`,
    /// `known_contacts`, `tracked_only`.
    pub mode: String,
}

impl Message {
    pub fn from_item(item: &Item) -> Message {
        read(item)
    }
    pub fn is_outbound(&self) -> bool {
        self.direction.as_deref() == Some("outbound")
    }
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or("normal")
    }
    /// When we received it: the time part of `gsi1sk`.
    pub fn received(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let (t, _) = self.gsi1sk.as_deref()?.split_once('#')?;
        chrono::DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&chrono::Utc))
    }
}

/// A conversation's ticket (`ticket#{conversation}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ticket {
    pub id: String,
    pub conversation: String,
    pub pipeline: String,
    pub stage: String,
    pub status: String,
    pub owner: Option<String>,
    pub team: Option<String>,
    pub priority: Option<String>,
    pub inbox: Option<String>,
    pub created_at: Option<String>,
    pub closed_at: Option<String>,
    /// Every stage entered, with when: `[[stage, RFC 3339], ...]`.
    pub stage_log: Vec<(String, String)>,
}

impl Ticket {
    pub fn from_item(item: &Item) -> Ticket {
        read(item)
    }
}

/// A CRM contact (`contact#{email}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Contact {
    pub email: String,
    pub name: Option<String>,
    pub company_domain: Option<String>,
    pub owner: Option<String>,
    pub created_at: Option<String>,
    pub properties: serde_json::Map<String, Value>,
}

impl Contact {
    pub fn from_item(item: &Item) -> Contact {
        read(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_read_leniently() {
        let item = json!({"pk": "conv#c1", "sk": "conv", "inbox": "a@b.example", "subject": "Hi", "tags": null,
            "status": "closed", "waiting_since": "not a number", "deal_ids": ["d1", 7]});
        let c = Conversation::from_item(item.as_object().unwrap());
        assert_eq!((c.id.as_str(), c.inbox.as_str(), c.subject.as_str()), ("c1", "a@b.example", "Hi"));
        assert!(!c.is_open());
        assert!(c.tags.is_empty());
        assert_eq!(c.deal_ids, ["d1"]);
        assert_eq!(c.waiting_since, None, "a mistyped attribute is its default, the rest still reads");
        let t = Ticket::from_item(
            json!({"id": "t1", "stage": "new", "stage_log": [["new", "2024-01-01T00:00:00Z"]]})
                .as_object()
                .unwrap(),
        );
        assert_eq!(t.stage_log, vec![("new".to_string(), "2024-01-01T00:00:00Z".to_string())]);
        let m = Message::from_item(
            json!({"message_id": "m@x", "direction": "outbound", "spoofed": true}).as_object().unwrap(),
        );
        assert!(m.is_outbound() && m.spoofed && m.kind() == "normal");
    }
}
