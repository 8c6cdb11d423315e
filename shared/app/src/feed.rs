//! The event feed: one feed (the `gsi1` partition `events`) holds every domain event, each
//! also in its subject's partition (a conversation's `events#{id}`, an inbox's
//! `conn-events#{address}`), all in one item shape written by [`emit`] or [`put_op`]: the
//! report events (reports), the connection events (mailbox), what the API and the stages
//! record, and `message_logged` ([`message_logged_put`], in the match stage's transaction).
//!
//! Listeners follow the feed with a cursor each ([`follow`]) and know only the event:
//! the webhook and EventBridge sinks and the notifications (outbound/relay.rs,
//! outbound/notify.rs). Producers never call them. Delivery is at least once, in feed
//! order, with a stable event id for consumers to drop duplicates; the contract is in
//! docs/events.md.

use crate::keys;
use crate::keys::item_str as s;
use crate::runtime::ports::Ports;
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use mailroom_core::EmailAddress;
use mailroom_store::{Cond, Item, Key, Query, SkCond, StoreError, TransactOp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use crate::keys::EVENTS_INDEX_PK;

/// Events younger than this are left for the next run, so that a transaction that took
/// its timestamp a moment before it committed is still read in order.
pub const SETTLE: Duration = Duration::seconds(2);
/// Each run reads this far behind its cursor again, for events that committed later
/// still (their ids are remembered in the cursor so they go out once).
pub const OVERLAP: Duration = Duration::minutes(5);
/// Events read per run and consumer; the rest wait for the next run.
pub const BATCH: usize = 500;

fn stamp(now: DateTime<Utc>) -> String {
    now.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// What an event is about: a conversation, or a connected inbox.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Conversation(&'a str),
    Inbox(&'a EmailAddress),
}

/// Records an event (`comment_added`, `ticket_moved`, `send_failed`, `inbox_connected`,
/// ...). `data` is the event's payload (an object). Not idempotent: call it once per fact
/// (a write that must happen once goes into its transaction with [`put_op`]).
pub async fn emit(ports: &Ports, subject: Subject<'_>, kind: &str, data: Value) -> Result<(), StoreError> {
    let now = ports.clock.now();
    let tag = format!("e{}", hex::encode(rand::random::<[u8; 6]>()));
    ports.table.put(item(subject, kind, &tag, data, now), Some(Cond::NotExists)).await
}

/// Records an event once per `tag`: a second call with the same subject, kind and tag
/// writes nothing (a job that may run again, such as the daily email-log check).
pub async fn emit_once(
    ports: &Ports,
    subject: Subject<'_>,
    kind: &str,
    tag: &str,
    data: Value,
) -> Result<(), StoreError> {
    match ports.table.put(item(subject, kind, tag, data, ports.clock.now()), Some(Cond::NotExists)).await {
        Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e),
    }
}

/// An event's put, for a transaction that writes it with the fact it records; `tag`
/// makes its key unique and stable (a redelivery writes the same key).
pub fn put_op(subject: Subject<'_>, kind: &str, tag: &str, data: Value, now: DateTime<Utc>) -> TransactOp {
    TransactOp::Put { item: item(subject, kind, tag, data, now), cond: None }
}

/// The payload of an event that has one value: named by its kind (`assignee`,
/// `seconds`, `due`); an object is its own payload.
pub fn data_of(kind: &str, value: Value) -> Value {
    match kind {
        _ if value.is_object() => value,
        "assigned" | "reassigned" => json!({"assignee": value}),
        "first_response" => json!({"seconds": value}),
        "sla_breached" => json!({"due": value}),
        _ if value.is_null() => json!({}),
        _ => json!({"value": value}),
    }
}

/// The `message_logged` event of a newly recorded message, for the match stage to put in
/// the transaction that records the message (so a redelivery cannot write it twice).
pub fn message_logged_put(conversation: &str, msg: &Item, now: DateTime<Utc>) -> TransactOp {
    let mid = s(msg, "message_id").unwrap_or_default();
    let tag = format!("m{}", &hex::encode(Sha256::digest(mid.as_bytes()))[..12]);
    let data = json!({
        "message_id": mid,
        "direction": msg.get("direction"),
        "inbox": msg.get("inbox"),
        "kind": msg.get("kind"),
        "loop": msg.get("loop"),
        "from": msg.get("from"),
        "subject": msg.get("subject"),
        "channel": msg.get("channel"),
    });
    put_op(Subject::Conversation(conversation), "message_logged", &tag, data, now)
}

/// The one shape of a feed item: in its subject's partition, and in the `events` index
/// partition by time.
fn item(subject: Subject<'_>, kind: &str, tag: &str, data: Value, now: DateTime<Utc>) -> Item {
    let at = stamp(now);
    let (pk, position, field, id) = match subject {
        Subject::Conversation(c) => {
            (keys::conversation_events_pk(c), format!("{at}#{c}#{tag}#{kind}"), "conversation", c.to_string())
        }
        Subject::Inbox(i) => {
            (keys::inbox_events_pk(i), format!("{at}#inbox#{}#{tag}#{kind}", i.key()), "inbox", i.key())
        }
    };
    let sk = format!("{at}#{tag}#{kind}");
    let shard = keys::events_index_pk(&format!("{pk}#{sk}"));
    let mut item = Key::new(pk, sk).item();
    item.insert("type".into(), json!(kind));
    item.insert(field.into(), json!(id));
    item.insert("at".into(), json!(at));
    item.insert("data".into(), data);
    item.insert("gsi1pk".into(), json!(shard));
    item.insert("gsi1sk".into(), json!(position));
    item
}

/// The events whose index position is in `from..=upto`, oldest first, at most `limit`:
/// every shard of the index is read (at most `limit` each, concurrently) and merged.
pub async fn between(ports: &Ports, from: &str, upto: &str, limit: usize) -> Result<Vec<Item>, StoreError> {
    let q = Query::new("").index("gsi1").sk(SkCond::Between(from.to_string(), upto.to_string()));
    mailroom_store::table::query_shards(ports.table.as_ref(), &keys::events_index_pks(), &q, "gsi1sk", limit)
        .await
}

/// A conversation's events, oldest first.
pub async fn conversation_events(ports: &Ports, conv: &str) -> anyhow::Result<Vec<Item>> {
    Ok(ports.table.query_all(Query::new(keys::conversation_events_pk(conv))).await?)
}

/// A connected inbox's events, oldest first.
pub async fn inbox_events(ports: &Ports, inbox: &EmailAddress) -> Result<Vec<Item>, StoreError> {
    ports.table.query_all(Query::new(keys::inbox_events_pk(inbox))).await
}

/// One event as consumers see it (the webhook body, EventBridge's `detail`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Stable across redeliveries: consumers drop an id they have seen.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbox: Option<String>,
    pub data: Value,
    /// The feed position (`gsi1sk`), for ordering.
    #[serde(skip)]
    pub position: String,
}

impl Event {
    /// Reads a feed item. Every event is written with `data`; items written before that
    /// (report and connection events, `send_failed`) carried one `value`, named here by
    /// kind.
    pub fn from_item(item: &Item) -> Option<Event> {
        let position = s(item, "gsi1sk")?;
        let kind = s(item, "type")?;
        let id = format!("evt_{}", &hex::encode(Sha256::digest(position.as_bytes()))[..32]);
        let data = match item.get("data") {
            Some(d) => d.clone(),
            None => data_of(&kind, item.get("value").cloned().unwrap_or(Value::Null)),
        };
        Some(Event {
            id,
            kind,
            at: s(item, "at").unwrap_or_default(),
            conversation: s(item, "conversation"),
            inbox: s(item, "inbox"),
            data,
            position,
        })
    }
}

/// A consumer of the feed.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Names its cursor: one per consumer, so a failing one holds back only itself.
    fn cursor_name(&self) -> String;
    /// Delivers events in order. Returns how many leading events were delivered and,
    /// when that is not all of them, why not (the rest is tried again next run).
    async fn deliver(&self, events: &[Event]) -> (usize, Option<anyhow::Error>);
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Cursor {
    /// The feed position of the last delivered event.
    position: String,
    /// `(position, id)` of the events delivered within [`OVERLAP`] of `position`.
    recent: Vec<(String, String)>,
}

/// What one run of one consumer did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FollowOutcome {
    pub consumer: String,
    pub delivered: usize,
    pub error: Option<String>,
}

/// Runs one consumer over the feed: reads from its cursor (less [`OVERLAP`]) up to
/// `now - SETTLE`, hands over the events it has not delivered, then advances the
/// cursor past what was delivered. A consumer with no cursor yet starts
/// [`OVERLAP`] before `now` (the history before the first run is not replayed).
pub async fn follow(ports: &Ports, sink: &dyn Sink, now: DateTime<Utc>) -> anyhow::Result<FollowOutcome> {
    let name = sink.cursor_name();
    let key = keys::feed_cursor_key(&name);
    let stored = ports.table.get(&key).await?;
    let version = stored.as_ref().and_then(|i| i.get("version")).and_then(Value::as_i64);
    let (cursor, from) = match stored.as_ref().and_then(|i| i.get("cursor")) {
        Some(c) => {
            let c: Cursor = serde_json::from_value(c.clone()).context("relay cursor is corrupt")?;
            let at = c
                .position
                .split('#')
                .next()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or(now);
            let from = stamp(at - OVERLAP);
            (c, from)
        }
        None => {
            let start = stamp(now - OVERLAP);
            (Cursor { position: start.clone(), recent: Vec::new() }, start)
        }
    };
    let upto = format!("{}~", stamp(now - SETTLE));
    let seen: std::collections::HashSet<&str> = cursor.recent.iter().map(|(_, id)| id.as_str()).collect();
    // Everything in the window that was not delivered yet: mostly after the cursor, and
    // now and then a late commit before it (which, being older, goes first).
    let mut events: Vec<Event> = between(ports, &from, &upto, BATCH + seen.len())
        .await?
        .iter()
        .filter_map(Event::from_item)
        .filter(|e| !seen.contains(e.id.as_str()))
        .collect();
    events.truncate(BATCH);
    let mut out = FollowOutcome { consumer: name.clone(), ..FollowOutcome::default() };
    if events.is_empty() {
        return Ok(out);
    }
    let (n, err) = sink.deliver(&events).await;
    let n = n.min(events.len());
    out.delivered = n;
    out.error = err.map(|e| format!("{e:#}"));
    if n == 0 {
        return Ok(out);
    }
    let mut next = cursor.clone();
    for e in &events[..n] {
        if e.position > next.position {
            next.position = e.position.clone();
        }
        next.recent.push((e.position.clone(), e.id.clone()));
    }
    let horizon = next
        .position
        .split('#')
        .next()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| stamp(t.with_timezone(&Utc) - OVERLAP - Duration::seconds(1)))
        .unwrap_or_default();
    next.recent.retain(|(p, _)| *p >= horizon);
    let mut item = key.item();
    item.insert("cursor".into(), serde_json::to_value(&next)?);
    item.insert("version".into(), json!(version.unwrap_or(0) + 1));
    item.insert("updated_at".into(), json!(stamp(now)));
    let cond = match version {
        Some(v) => Cond::Eq("version".into(), json!(v)),
        None => Cond::NotExists,
    };
    match ports.table.put(item, Some(cond)).await {
        Ok(()) => Ok(out),
        // Another relay moved the cursor meanwhile: what both delivered may go out twice
        // (at least once), nothing is skipped.
        Err(StoreError::ConditionFailed) => {
            tracing::warn!(consumer = %name, "relay cursor moved by another run");
            Ok(out)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events land in several shards; `between` reads every shard and the unsharded key an
    /// older version wrote, merged in position order and cut at the limit.
    #[tokio::test]
    async fn between_merges_every_shard_and_the_old_key() {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::embedded(dir.path()).unwrap();
        for n in 0..40 {
            emit(&ports, Subject::Conversation(&format!("c{n:02}")), "comment_added", json!({}))
                .await
                .unwrap();
        }
        let written = ports.table.query_all(Query::new(keys::conversation_events_pk("c00"))).await.unwrap();
        let mut old = written[0].clone();
        old.insert("pk".into(), json!(keys::conversation_events_pk("legacy")));
        old.insert("gsi1pk".into(), json!(EVENTS_INDEX_PK));
        old.insert("gsi1sk".into(), json!("0000-legacy"));
        ports.table.put(old, None).await.unwrap();
        let mut shards = std::collections::HashSet::new();
        for n in 0..40 {
            let e = ports
                .table
                .query_all(Query::new(keys::conversation_events_pk(&format!("c{n:02}"))))
                .await
                .unwrap();
            shards.insert(e[0].get("gsi1pk").and_then(Value::as_str).unwrap_or_default().to_string());
        }
        assert!(shards.len() > 4 && shards.iter().all(|s| s.starts_with("events#")), "{shards:?}");

        let all = between(&ports, "0", "~", usize::MAX).await.unwrap();
        assert_eq!(all.len(), 41);
        let positions: Vec<&str> =
            all.iter().filter_map(|i| i.get("gsi1sk").and_then(Value::as_str)).collect();
        assert_eq!(positions[0], "0000-legacy");
        assert!(positions.windows(2).all(|w| w[0] <= w[1]), "not in position order");
        let first = between(&ports, "0", "~", 10).await.unwrap();
        assert_eq!(first.len(), 10);
        assert_eq!(first[..], all[..10]);
    }
}
