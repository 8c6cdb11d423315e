//! Connected mailboxes: how each inbox is reached (IMAP, Gmail, Microsoft 365), its sealed
//! credentials, its sync cursors, the lease that keeps two pollers apart, and its health.
//!
//! Items (partition `conn#{inbox}`, see docs/storage.md):
//! - `conn`: the connection (provider, non-secret settings) and its health;
//! - `secret#{name}`: a credential sealed by the `Secrets` port, with a version for
//!   compare-and-swap (Microsoft rotates refresh tokens on every use);
//! - `cursor#{folder}`: a sync cursor (IMAP UIDVALIDITY/UID, Gmail historyId, Graph
//!   deltaLink), with a version;
//! - `lease`: who polls this mailbox now, until when.

use crate::keys;
use crate::runtime::ports::Ports;
use chrono::{DateTime, Duration, Utc};
use mailroom_core::EmailAddress;
use mailroom_store::{Cond, Item, Key, Query, StoreError, Update};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The feed of connection events (gsi1), beside the conversations' report events.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Imap,
    Gmail,
    Graph,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Imap => "imap",
            Provider::Gmail => "gmail",
            Provider::Graph => "graph",
        }
    }
}

/// Connection health. `degraded`: the last attempt failed but the next one may work (a
/// timeout, a 5xx, throttling). `reconnect_required`: the provider refused the credentials
/// for good (`invalid_grant`, `interaction_required`, IMAP authentication failure); nothing
/// retries until someone connects the inbox again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Connected,
    Degraded,
    ReconnectRequired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connected => "connected",
            State::Degraded => "degraded",
            State::ReconnectRequired => "reconnect_required",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub inbox: String,
    pub provider: Provider,
    /// Provider settings that are not secret (IMAP host, port, security, user; the Gmail
    /// address; the Graph user id and subscriptions).
    #[serde(default)]
    pub settings: Value,
    pub state: State,
    pub connected_at: DateTime<Utc>,
    #[serde(default)]
    pub last_success: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub last_error_at: Option<DateTime<Utc>>,
    /// Seconds between the mailbox receiving the newest message of the last successful
    /// sync and Mailroom storing it.
    #[serde(default)]
    pub lag_seconds: Option<i64>,
    #[serde(default)]
    pub consecutive_failures: u32,
}

impl Connection {
    /// When its push lapses: Gmail's watch, the earliest of Graph's subscriptions (as
    /// their syncs record them in the settings). `None`: polled (IMAP), or push not set up.
    pub fn push_expires(&self) -> Option<DateTime<Utc>> {
        match self.provider {
            Provider::Imap => None,
            Provider::Gmail => self
                .settings
                .pointer("/watch/expiration_ms")
                .and_then(Value::as_i64)
                .and_then(DateTime::from_timestamp_millis),
            Provider::Graph => self
                .settings
                .get("subscriptions")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(|m| m.values())
                .filter_map(|s| s.get("expires_at").and_then(Value::as_str))
                .filter_map(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .min(),
        }
    }

    /// A new, healthy connection of `inbox` (no sync yet).
    pub fn new(inbox: &EmailAddress, provider: Provider, settings: Value, now: DateTime<Utc>) -> Connection {
        Connection {
            inbox: inbox.key(),
            provider,
            settings,
            state: State::Connected,
            connected_at: now,
            last_success: None,
            last_error: None,
            last_error_at: None,
            lag_seconds: None,
            consecutive_failures: 0,
        }
    }
}

pub use crate::keys::connection_key as key;

fn to_item(c: &Connection) -> Result<Item, StoreError> {
    let Value::Object(mut m) = serde_json::to_value(c).map_err(StoreError::backend)? else {
        return Err(StoreError::Backend("connection did not serialise to an object".into()));
    };
    let addr =
        EmailAddress::parse(&c.inbox).map_err(|e| StoreError::Backend(format!("inbox {}: {e}", c.inbox)))?;
    let k = keys::connection_key(&addr);
    m.insert("pk".into(), json!(k.pk));
    m.insert("sk".into(), json!(k.sk));
    m.insert("gsi1pk".into(), json!(keys::CONNECTIONS_INDEX_PK));
    m.insert("gsi1sk".into(), json!(addr.key()));
    Ok(m)
}

fn from_item(item: Item) -> Result<Connection, StoreError> {
    serde_json::from_value(Value::Object(item))
        .map_err(|e| StoreError::Backend(format!("corrupt connection item: {e}")))
}

/// Stores a connection (a new one, or a reconnect: health starts over).
pub async fn save(ports: &Ports, c: &Connection) -> Result<(), StoreError> {
    ports.table.put(to_item(c)?, None).await
}

pub async fn get(ports: &Ports, inbox: &EmailAddress) -> Result<Option<Connection>, StoreError> {
    ports.table.get(&keys::connection_key(inbox)).await?.map(from_item).transpose()
}

/// Every connection, by inbox address.
pub async fn list(ports: &Ports) -> Result<Vec<Connection>, StoreError> {
    let mut out = Vec::new();
    for i in ports.table.query_all(Query::new(keys::CONNECTIONS_INDEX_PK).index("gsi1")).await? {
        // The index may project fewer attributes on some deployments: read the item.
        let Some(k) = Key::of(&i) else { continue };
        if let Some(full) = ports.table.get(&k).await? {
            out.push(from_item(full)?);
        }
    }
    Ok(out)
}

/// A sync that worked: the inbox is connected.
pub async fn record_success(
    ports: &Ports,
    inbox: &EmailAddress,
    lag: Option<Duration>,
) -> Result<(), StoreError> {
    let now = ports.clock.now();
    let mut up = vec![
        Update::Set("state".into(), json!(State::Connected.as_str())),
        Update::Set("last_success".into(), json!(now)),
        Update::Set("consecutive_failures".into(), json!(0)),
    ];
    if let Some(l) = lag {
        up.push(Update::Set("lag_seconds".into(), json!(l.num_seconds().max(0))));
    }
    // Never resurrect a connection someone deleted, nor undo `reconnect_required` from a
    // sync that started before the credentials were refused.
    let cond =
        Cond::And(vec![Cond::Exists, Cond::Ne("state".into(), json!(State::ReconnectRequired.as_str()))]);
    match ports.table.update(&keys::connection_key(inbox), up, Some(cond)).await {
        Ok(_) | Err(StoreError::ConditionFailed) => Ok(()),
        Err(e) => Err(e),
    }
}

/// How bad a failure is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Retry later (network, 5xx, throttling, a bad message): `degraded`.
    Transient,
    /// The provider refused the credentials: `reconnect_required`, no retries, and an
    /// `inbox_reconnect_required` event.
    Terminal,
}

/// A sync that failed. Returns the state the connection is in now.
pub async fn record_error(
    ports: &Ports,
    inbox: &EmailAddress,
    error: &str,
    failure: Failure,
) -> Result<State, StoreError> {
    let now = ports.clock.now();
    let state = match failure {
        Failure::Transient => State::Degraded,
        Failure::Terminal => State::ReconnectRequired,
    };
    let base = vec![
        Update::Set("last_error".into(), json!(error)),
        Update::Set("last_error_at".into(), json!(now)),
        Update::Add("consecutive_failures".into(), 1),
    ];
    let mut up = base.clone();
    up.push(Update::Set("state".into(), json!(state.as_str())));
    // A transient failure does not downgrade `reconnect_required` to `degraded`, and a
    // second terminal one raises no second event.
    let cond =
        Cond::And(vec![Cond::Exists, Cond::Ne("state".into(), json!(State::ReconnectRequired.as_str()))]);
    match ports.table.update(&keys::connection_key(inbox), up, Some(cond)).await {
        Ok(_) => {
            if failure == Failure::Terminal {
                event(ports, inbox, "inbox_reconnect_required", json!(error)).await?;
                tracing::error!(inbox = %inbox, error, "mailbox needs to be connected again");
            }
            Ok(state)
        }
        Err(StoreError::ConditionFailed) => {
            // Already `reconnect_required` (or gone): record the error, keep the state.
            match ports.table.update(&keys::connection_key(inbox), base, Some(Cond::Exists)).await {
                Ok(_) | Err(StoreError::ConditionFailed) => {}
                Err(e) => return Err(e),
            }
            Ok(get(ports, inbox).await?.map(|c| c.state).unwrap_or(state))
        }
        Err(e) => Err(e),
    }
}

/// A connection event in the global feed (`gsi1` partition `events`).
pub async fn event(ports: &Ports, inbox: &EmailAddress, kind: &str, value: Value) -> Result<(), StoreError> {
    crate::feed::emit(ports, crate::feed::Subject::Inbox(inbox), kind, crate::feed::data_of(kind, value))
        .await
}

/// Connection events of an inbox, oldest first.
pub async fn events(ports: &Ports, inbox: &EmailAddress) -> Result<Vec<Item>, StoreError> {
    crate::feed::inbox_events(ports, inbox).await
}

/// A versioned value (a secret's plaintext, or a cursor).
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: i64,
}

/// Seals and stores a credential, replacing whatever was there (a new connection).
pub async fn put_secret(
    ports: &Ports,
    inbox: &EmailAddress,
    name: &str,
    plain: &[u8],
) -> Result<i64, StoreError> {
    write_secret(ports, inbox, name, plain, None).await
}

/// Replaces a credential only if it is still at `expected` (compare-and-swap): two
/// functions refreshing a rotating token at once cannot both win. `ConditionFailed`
/// means someone else wrote it first: read it again and use theirs.
pub async fn replace_secret(
    ports: &Ports,
    inbox: &EmailAddress,
    name: &str,
    plain: &[u8],
    expected: i64,
) -> Result<i64, StoreError> {
    write_secret(ports, inbox, name, plain, Some(expected)).await
}

async fn write_secret(
    ports: &Ports,
    inbox: &EmailAddress,
    name: &str,
    plain: &[u8],
    expected: Option<i64>,
) -> Result<i64, StoreError> {
    use base64::Engine;
    let sealed = ports.secrets.seal(&secret_context(inbox, name), plain).await?;
    let version = expected.map_or(1, |v| v + 1);
    let mut item = keys::connection_secret_key(inbox, name).item();
    item.insert("sealed".into(), json!(base64::engine::general_purpose::STANDARD.encode(sealed)));
    item.insert("version".into(), json!(version));
    item.insert("updated_at".into(), json!(ports.clock.now()));
    let cond = expected.map(|v| Cond::Eq("version".into(), json!(v)));
    ports.table.put(item, cond).await?;
    Ok(version)
}

fn secret_context(inbox: &EmailAddress, name: &str) -> String {
    format!("{}/{name}", inbox.key())
}

pub async fn get_secret(
    ports: &Ports,
    inbox: &EmailAddress,
    name: &str,
) -> Result<Option<Versioned<Vec<u8>>>, StoreError> {
    use base64::Engine;
    let Some(item) = ports.table.get(&keys::connection_secret_key(inbox, name)).await? else {
        return Ok(None);
    };
    let sealed = item
        .get("sealed")
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .ok_or_else(|| StoreError::Backend(format!("secret {name} of {inbox} is corrupt")))?;
    let version = item.get("version").and_then(Value::as_i64).unwrap_or(0);
    let value = ports.secrets.open(&secret_context(inbox, name), &sealed).await?;
    Ok(Some(Versioned { value, version }))
}

pub async fn get_cursor(
    ports: &Ports,
    inbox: &EmailAddress,
    folder: &str,
) -> Result<Option<Versioned<Value>>, StoreError> {
    Ok(ports.table.get(&keys::connection_cursor_key(inbox, folder)).await?.map(|item| Versioned {
        value: item.get("value").cloned().unwrap_or(Value::Null),
        version: item.get("version").and_then(Value::as_i64).unwrap_or(0),
    }))
}

/// Writes a cursor if it is still at `expected` (`None`: there is none yet). Returns the
/// new version; `ConditionFailed` when another sync moved it.
pub async fn set_cursor(
    ports: &Ports,
    inbox: &EmailAddress,
    folder: &str,
    value: Value,
    expected: Option<i64>,
) -> Result<i64, StoreError> {
    let version = expected.map_or(1, |v| v + 1);
    let mut item = keys::connection_cursor_key(inbox, folder).item();
    item.insert("value".into(), value);
    item.insert("version".into(), json!(version));
    item.insert("updated_at".into(), json!(ports.clock.now()));
    let cond = match expected {
        Some(v) => Cond::Eq("version".into(), json!(v)),
        None => Cond::NotExists,
    };
    ports.table.put(item, Some(cond)).await?;
    Ok(version)
}

/// Every cursor of an inbox, by folder (for `mailroom inbox status`).
pub async fn cursors(
    ports: &Ports,
    inbox: &EmailAddress,
) -> Result<Vec<(String, Versioned<Value>)>, StoreError> {
    let q = Query::new(keys::conn_pk(inbox)).sk(mailroom_store::SkCond::BeginsWith("cursor#".into()));
    Ok(ports
        .table
        .query_all(q)
        .await?
        .into_iter()
        .filter_map(|item| {
            let folder = item.get("sk")?.as_str()?.strip_prefix("cursor#")?.to_string();
            let value = item.get("value").cloned().unwrap_or(Value::Null);
            let version = item.get("version").and_then(Value::as_i64).unwrap_or(0);
            Some((folder, Versioned { value, version }))
        })
        .collect())
}

/// A connection's health and its cursors (`mailroom inbox status`).
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub connection: Connection,
    /// Cursor values by folder.
    pub cursors: std::collections::BTreeMap<String, Value>,
}

/// Every connection with its cursors, by inbox address.
pub async fn status(ports: &Ports) -> Result<Vec<Status>, StoreError> {
    let mut out = Vec::new();
    for connection in list(ports).await? {
        let addr = EmailAddress::parse(&connection.inbox)
            .map_err(|e| StoreError::Backend(format!("inbox {}: {e}", connection.inbox)))?;
        let cursors = cursors(ports, &addr).await?.into_iter().map(|(f, v)| (f, v.value)).collect();
        out.push(Status { connection, cursors });
    }
    Ok(out)
}

/// Drops a cursor (a reconnect that must start over, a folder that is gone).
pub async fn clear_cursor(ports: &Ports, inbox: &EmailAddress, folder: &str) -> Result<(), StoreError> {
    ports.table.delete(&keys::connection_cursor_key(inbox, folder), None).await
}

/// The right to sync one mailbox until `expires_at`. Taken with a conditional write, so
/// two pollers (two Lambda invocations, or `mailroom poll` beside `serve`) never overlap.
#[derive(Debug, Clone)]
pub struct Lease {
    pub inbox: EmailAddress,
    pub holder: String,
    pub expires_at: DateTime<Utc>,
}

/// Takes the mailbox's lease for `ttl`, or returns `None` while someone else holds it.
pub async fn acquire_lease(
    ports: &Ports,
    inbox: &EmailAddress,
    ttl: Duration,
) -> Result<Option<Lease>, StoreError> {
    let now = ports.clock.now();
    let holder = format!("{:032x}", rand::random::<u128>());
    let expires_at = now + ttl;
    let mut item = keys::connection_lease_key(inbox).item();
    item.insert("holder".into(), json!(holder));
    item.insert("expires_ms".into(), json!(expires_at.timestamp_millis()));
    let cond = Cond::Or(vec![Cond::NotExists, Cond::Lt("expires_ms".into(), json!(now.timestamp_millis()))]);
    match ports.table.put(item, Some(cond)).await {
        Ok(()) => Ok(Some(Lease { inbox: inbox.clone(), holder, expires_at })),
        Err(StoreError::ConditionFailed) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Lease {
    /// Extends the lease; `ConditionFailed` when it was lost (expired and taken).
    pub async fn renew(&mut self, ports: &Ports, ttl: Duration) -> Result<(), StoreError> {
        let expires_at = ports.clock.now() + ttl;
        ports
            .table
            .update(
                &keys::connection_lease_key(&self.inbox),
                vec![Update::Set("expires_ms".into(), json!(expires_at.timestamp_millis()))],
                Some(Cond::Eq("holder".into(), json!(self.holder))),
            )
            .await?;
        self.expires_at = expires_at;
        Ok(())
    }

    /// Gives the lease back (only if still ours).
    pub async fn release(self, ports: &Ports) -> Result<(), StoreError> {
        match ports
            .table
            .delete(
                &keys::connection_lease_key(&self.inbox),
                Some(Cond::Eq("holder".into(), json!(self.holder))),
            )
            .await
        {
            Ok(()) | Err(StoreError::ConditionFailed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> (tempfile::TempDir, Ports) {
        let dir = tempfile::tempdir().unwrap();
        let p = Ports::embedded(dir.path()).unwrap();
        (dir, p)
    }

    fn conn(inbox: &str) -> Connection {
        Connection {
            inbox: inbox.into(),
            provider: Provider::Imap,
            settings: json!({"host": "127.0.0.1"}),
            state: State::Connected,
            connected_at: Utc::now(),
            last_success: None,
            last_error: None,
            last_error_at: None,
            lag_seconds: None,
            consecutive_failures: 0,
        }
    }

    #[tokio::test]
    async fn health_moves_and_reconnect_required_sticks() {
        let (_d, p) = ports();
        let a = EmailAddress::parse("support@acme.test").unwrap();
        save(&p, &conn("support@acme.test")).await.unwrap();
        assert_eq!(record_error(&p, &a, "timeout", Failure::Transient).await.unwrap(), State::Degraded);
        record_success(&p, &a, Some(Duration::seconds(4))).await.unwrap();
        let c = get(&p, &a).await.unwrap().unwrap();
        assert_eq!((c.state, c.consecutive_failures, c.lag_seconds), (State::Connected, 0, Some(4)));
        assert_eq!(
            record_error(&p, &a, "invalid_grant", Failure::Terminal).await.unwrap(),
            State::ReconnectRequired
        );
        assert_eq!(
            record_error(&p, &a, "timeout", Failure::Transient).await.unwrap(),
            State::ReconnectRequired
        );
        assert_eq!(
            record_error(&p, &a, "invalid_grant", Failure::Terminal).await.unwrap(),
            State::ReconnectRequired
        );
        record_success(&p, &a, None).await.unwrap();
        let c = get(&p, &a).await.unwrap().unwrap();
        assert_eq!((c.state, c.consecutive_failures), (State::ReconnectRequired, 3));
        let ev = events(&p, &a).await.unwrap();
        assert_eq!(ev.len(), 1, "one event per reconnect_required: {ev:?}");
        assert_eq!(list(&p).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn secrets_are_sealed_bound_and_swapped_once() {
        let (_d, p) = ports();
        let a = EmailAddress::parse("support@acme.test").unwrap();
        let b = EmailAddress::parse("billing@acme.test").unwrap();
        let v = put_secret(&p, &a, "oauth", b"refresh-1").await.unwrap();
        let raw = p.table.get(&keys::connection_secret_key(&a, "oauth")).await.unwrap().unwrap();
        assert!(!serde_json::to_string(&raw).unwrap().contains("refresh-1"), "stored in the clear");
        // A sealed value moved onto another inbox does not open.
        let mut moved = raw.clone();
        let k = keys::connection_secret_key(&b, "oauth");
        moved.insert("pk".into(), json!(k.pk));
        p.table.put(moved, None).await.unwrap();
        assert!(get_secret(&p, &b, "oauth").await.is_err());
        assert_eq!(get_secret(&p, &a, "oauth").await.unwrap().unwrap().value, b"refresh-1");
        let v2 = replace_secret(&p, &a, "oauth", b"refresh-2", v).await.unwrap();
        assert!(matches!(
            replace_secret(&p, &a, "oauth", b"refresh-3", v).await,
            Err(StoreError::ConditionFailed)
        ));
        let got = get_secret(&p, &a, "oauth").await.unwrap().unwrap();
        assert_eq!((got.value.as_slice(), got.version), (&b"refresh-2"[..], v2));
    }

    #[tokio::test]
    async fn cursors_and_leases_are_exclusive() {
        let (_d, p) = ports();
        let a = EmailAddress::parse("support@acme.test").unwrap();
        let v = set_cursor(&p, &a, "INBOX", json!({"uid": 5}), None).await.unwrap();
        assert!(matches!(
            set_cursor(&p, &a, "INBOX", json!({"uid": 6}), None).await,
            Err(StoreError::ConditionFailed)
        ));
        set_cursor(&p, &a, "INBOX", json!({"uid": 7}), Some(v)).await.unwrap();
        assert_eq!(get_cursor(&p, &a, "INBOX").await.unwrap().unwrap().value, json!({"uid": 7}));
        let l = acquire_lease(&p, &a, Duration::seconds(60)).await.unwrap().unwrap();
        assert!(acquire_lease(&p, &a, Duration::seconds(60)).await.unwrap().is_none());
        l.release(&p).await.unwrap();
        let mut l2 = acquire_lease(&p, &a, Duration::milliseconds(-1)).await.unwrap().unwrap();
        // Expired: the next poller takes it, and the old holder cannot renew.
        let _l3 = acquire_lease(&p, &a, Duration::seconds(60)).await.unwrap().unwrap();
        assert!(matches!(l2.renew(&p, Duration::seconds(60)).await, Err(StoreError::ConditionFailed)));
    }
}
