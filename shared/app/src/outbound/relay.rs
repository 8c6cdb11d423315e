//! Domain events: one feed (the `gsi1` partition `events`) holds the report events
//! (reports.rs), the connection events (connections.rs), the events the API writes
//! ([`emit`]) and `message_logged` (written by the match stage in the transaction that
//! records the message, [`message_logged_put`]).
//!
//! Consumers follow the feed with a cursor each ([`follow`]): the EventBridge sink in
//! AWS, each webhook URL locally, and the notifications (notify.rs). Delivery is at least
//! once, in feed order, with a stable event id for consumers to drop duplicates; the
//! contract is in docs/events.md.

use crate::keys::item_str as s;
use crate::runtime::ports::Ports;
use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use mailroom_store::{Cond, Item, Key, Query, SkCond, StoreError, TransactOp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub use crate::reports::EVENTS_INDEX_PK;

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

/// Records an event of a conversation that the API or a stage writes (`comment_added`,
/// `ticket_moved`, `reply_queued`, `send_failed`, ...). `data` is the event's payload (an
/// object). Not idempotent: call it once per fact.
pub async fn emit(ports: &Ports, conversation: &str, kind: &str, data: Value) -> anyhow::Result<()> {
    let now = ports.clock.now();
    let unique = hex::encode(rand::random::<[u8; 6]>());
    let item = event_item(conversation, kind, &format!("e{unique}"), data, now);
    ports
        .table
        .put(item, Some(Cond::NotExists))
        .await
        .with_context(|| format!("recording event {kind} of {conversation}"))?;
    Ok(())
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
    TransactOp::Put {
        item: event_item(conversation, "message_logged", &tag, data, now),
        cond: Some(Cond::NotExists),
    }
}

fn event_item(conv: &str, kind: &str, tag: &str, data: Value, now: DateTime<Utc>) -> Item {
    let at = stamp(now);
    let mut item = Key::new(format!("events#{conv}"), format!("{at}#{tag}#{kind}")).item();
    item.insert("type".into(), json!(kind));
    item.insert("conversation".into(), json!(conv));
    item.insert("at".into(), json!(at));
    item.insert("data".into(), data);
    item.insert("gsi1pk".into(), json!(EVENTS_INDEX_PK));
    item.insert("gsi1sk".into(), json!(format!("{at}#{conv}#{tag}#{kind}")));
    item
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
    /// Reads a feed item: the events written here carry `data`; the report and
    /// connection events carry one `value`, named here by kind.
    pub fn from_item(item: &Item) -> Option<Event> {
        let position = s(item, "gsi1sk")?;
        let kind = s(item, "type")?;
        let id = format!("evt_{}", &hex::encode(Sha256::digest(position.as_bytes()))[..32]);
        let value = item.get("value").cloned().unwrap_or(Value::Null);
        let data = match item.get("data") {
            Some(d) => d.clone(),
            None => match kind.as_str() {
                "assigned" | "reassigned" => json!({"assignee": value}),
                "first_response" => json!({"seconds": value}),
                "sla_breached" => json!({"due": value}),
                _ if value.is_null() => json!({}),
                _ => json!({"value": value}),
            },
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

fn cursor_key(name: &str) -> Key {
    Key::new(format!("relay#{name}"), "cursor")
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
    let key = cursor_key(&name);
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
    let mut events: Vec<Event> = Vec::new();
    let mut page_cursor = None;
    loop {
        let page = ports
            .table
            .query(
                Query::new(EVENTS_INDEX_PK)
                    .index("gsi1")
                    .sk(SkCond::Between(from.clone(), upto.clone()))
                    .limit(100)
                    .after(page_cursor),
            )
            .await?;
        events
            .extend(page.items.iter().filter_map(Event::from_item).filter(|e| !seen.contains(e.id.as_str())));
        page_cursor = page.next;
        if page_cursor.is_none() || events.len() >= BATCH {
            break;
        }
    }
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

/// The key webhook consumers verify `X-Mailroom-Signature` with: derived from the
/// workspace's secret key (`mailroom events secret` prints it).
pub fn webhook_key(ports: &Ports) -> String {
    ports.signer.sign("event-webhook-key", "v1")
}

/// `sha256=<hex HMAC-SHA256(webhook key, body)>`.
pub fn webhook_signature(key: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// POSTs each event to one URL (locally; `MAILROOM_EVENT_WEBHOOKS`).
pub struct WebhookSink {
    pub url: String,
    pub key: String,
    pub http: reqwest::Client,
}

impl WebhookSink {
    pub fn new(url: &str, key: String) -> anyhow::Result<WebhookSink> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .context("building the webhook HTTP client")?;
        Ok(WebhookSink { url: url.to_string(), key, http })
    }
}

#[async_trait]
impl Sink for WebhookSink {
    fn cursor_name(&self) -> String {
        format!("webhook#{}", &hex::encode(Sha256::digest(self.url.as_bytes()))[..16])
    }

    async fn deliver(&self, events: &[Event]) -> (usize, Option<anyhow::Error>) {
        for (i, e) in events.iter().enumerate() {
            let body = match serde_json::to_vec(e) {
                Ok(b) => b,
                Err(err) => return (i, Some(err.into())),
            };
            let res = self
                .http
                .post(&self.url)
                .header("content-type", "application/json")
                .header("x-mailroom-event-id", &e.id)
                .header("x-mailroom-signature", webhook_signature(&self.key, &body))
                .body(body)
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => return (i, Some(anyhow::anyhow!("webhook {} answered {}", self.url, r.status()))),
                Err(err) => return (i, Some(anyhow::anyhow!("webhook {}: {err}", self.url))),
            }
        }
        (events.len(), None)
    }
}

/// Publishes to an EventBridge bus (in AWS; `MAILROOM_EVENT_BUS`): Source `mailroom`,
/// DetailType the event's type, Detail the event.
pub struct EventBridgeSink {
    pub client: aws_sdk_eventbridge::Client,
    pub bus: String,
}

pub const EVENT_SOURCE: &str = "mailroom";

#[async_trait]
impl Sink for EventBridgeSink {
    fn cursor_name(&self) -> String {
        "eventbridge".into()
    }

    async fn deliver(&self, events: &[Event]) -> (usize, Option<anyhow::Error>) {
        use aws_sdk_eventbridge::types::PutEventsRequestEntry;
        let mut done = 0;
        // PutEvents takes at most 10 entries.
        for chunk in events.chunks(10) {
            let mut entries = Vec::new();
            for e in chunk {
                let detail = match serde_json::to_string(e) {
                    Ok(d) => d,
                    Err(err) => return (done, Some(err.into())),
                };
                let time = DateTime::parse_from_rfc3339(&e.at)
                    .ok()
                    .map(|t| aws_sdk_eventbridge::primitives::DateTime::from_millis(t.timestamp_millis()));
                entries.push(
                    PutEventsRequestEntry::builder()
                        .event_bus_name(&self.bus)
                        .source(EVENT_SOURCE)
                        .detail_type(&e.kind)
                        .detail(detail)
                        .set_time(time)
                        .build(),
                );
            }
            let res = self.client.put_events().set_entries(Some(entries)).send().await;
            match res {
                Ok(r) => {
                    // Partial failure: the entries answer in order; the first failed one
                    // and everything after it go again next run.
                    if let Some(i) = r.entries().iter().position(|x| x.error_code().is_some()) {
                        let x = &r.entries()[i];
                        return (
                            done + i,
                            Some(anyhow::anyhow!(
                                "EventBridge refused event {}: {} {}",
                                chunk[i].id,
                                x.error_code().unwrap_or_default(),
                                x.error_message().unwrap_or_default()
                            )),
                        );
                    }
                    done += chunk.len();
                }
                Err(err) => {
                    let msg = aws_sdk_eventbridge::error::DisplayErrorContext(&err).to_string();
                    return (done, Some(anyhow::anyhow!("EventBridge PutEvents on {}: {msg}", self.bus)));
                }
            }
        }
        (done, None)
    }
}

/// The webhook sinks of `MAILROOM_EVENT_WEBHOOKS` (comma-separated URLs).
pub fn webhook_sinks_from_env(ports: &Ports) -> anyhow::Result<Vec<WebhookSink>> {
    let Ok(list) = std::env::var("MAILROOM_EVENT_WEBHOOKS") else { return Ok(Vec::new()) };
    let key = webhook_key(ports);
    list.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                anyhow::bail!("MAILROOM_EVENT_WEBHOOKS: {u:?} is not an http(s) URL");
            }
            WebhookSink::new(u, key.clone())
        })
        .collect()
}

/// Runs every consumer once; a failing one is logged and does not stop the others.
pub async fn relay(ports: &Ports, sinks: &[&dyn Sink], now: DateTime<Utc>) -> Vec<FollowOutcome> {
    let mut outs = Vec::new();
    for sink in sinks {
        match follow(ports, *sink, now).await {
            Ok(o) => {
                if let Some(e) = &o.error {
                    tracing::warn!(consumer = %o.consumer, delivered = o.delivered, error = %e, "event delivery stopped");
                }
                outs.push(o);
            }
            Err(e) => {
                tracing::error!(consumer = %sink.cursor_name(), error = %format!("{e:#}"), "event relay failed");
                outs.push(FollowOutcome {
                    consumer: sink.cursor_name(),
                    delivered: 0,
                    error: Some(format!("{e:#}")),
                });
            }
        }
    }
    outs
}

/// The consumers of one process: the webhooks or EventBridge, and the notifications when
/// a notifier is configured. `mailroom serve` runs it every few seconds, the `events`
/// function every minute.
pub struct Relay {
    pub sinks: Vec<Box<dyn Sink>>,
    pub notifier: Option<Box<dyn crate::outbound::notify::Notifier>>,
}

impl Relay {
    /// Local: `MAILROOM_EVENT_WEBHOOKS`, `MAILROOM_NOTIFY_SMTP_URL` + `MAILROOM_NOTIFY_FROM`.
    pub fn local_from_env(ports: &Ports) -> anyhow::Result<Relay> {
        let sinks =
            webhook_sinks_from_env(ports)?.into_iter().map(|w| Box::new(w) as Box<dyn Sink>).collect();
        let notifier = crate::outbound::notify::smtp_from_env()?
            .map(|n| Box::new(n) as Box<dyn crate::outbound::notify::Notifier>);
        Ok(Relay { sinks, notifier })
    }

    /// AWS: `MAILROOM_EVENT_BUS` (EventBridge) and `MAILROOM_NOTIFY_FROM` (SES).
    pub fn aws_from_env(conf: &aws_config::SdkConfig) -> Relay {
        let env = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
        if let Some(bus) = env("MAILROOM_EVENT_BUS") {
            sinks.push(Box::new(EventBridgeSink { client: aws_sdk_eventbridge::Client::new(conf), bus }));
        }
        let notifier = env("MAILROOM_NOTIFY_FROM").map(|from| {
            Box::new(crate::outbound::notify::SesNotifier { from, client: aws_sdk_sesv2::Client::new(conf) })
                as Box<dyn crate::outbound::notify::Notifier>
        });
        Relay { sinks, notifier }
    }

    pub async fn run_once(&self, ports: &Ports, now: DateTime<Utc>) -> Vec<FollowOutcome> {
        let notify =
            self.notifier.as_deref().map(|n| crate::outbound::notify::NotifySink { ports, notifier: n });
        let mut all: Vec<&dyn Sink> = self.sinks.iter().map(|s| s.as_ref()).collect();
        if let Some(n) = &notify {
            all.push(n);
        }
        relay(ports, &all, now).await
    }
}
