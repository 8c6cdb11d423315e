//! Chat connections as AWS holds them: API Gateway's WebSocket API keeps the sockets, and
//! the functions only know connection ids. Each connection is an item (`chat-conn#{id}`:
//! its widget, client address and, once known, its session) and, once the visitor is
//! known, an entry under the session (`chat#{session}`, `conn#{id}`), both dropped by the
//! table's TTL a day later if `$disconnect` never came. Frames go out through the
//! management API (`POST /@connections/{id}`); a connection API Gateway says is gone
//! (410) is forgotten.

use crate::keys;
use crate::keys::item_str as s;
use crate::runtime::ports::Ports;
use async_trait::async_trait;
use chrono::Duration;
use mailroom_store::{Key, Query, SkCond, Update};
use serde_json::json;

/// Sends a frame to a connection: `Ok(false)` when the connection is gone.
#[async_trait]
pub trait Push: Send + Sync {
    async fn post(&self, connection: &str, frame: &str) -> anyhow::Result<bool>;
}

/// The API Gateway management API of the stack's WebSocket API.
pub struct ApiGatewayPush {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl ApiGatewayPush {
    /// `endpoint`: `https://{api id}.execute-api.{region}.amazonaws.com/{stage}` (the
    /// template's `MAILROOM_CHAT_ENDPOINT`).
    /// From the function's environment: `MAILROOM_CHAT_ENDPOINT`, `None` when unset.
    pub async fn from_env() -> Option<ApiGatewayPush> {
        let endpoint = std::env::var("MAILROOM_CHAT_ENDPOINT").ok().filter(|e| !e.is_empty())?;
        let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Some(ApiGatewayPush::new(&conf, &endpoint))
    }

    pub fn new(conf: &aws_config::SdkConfig, endpoint: &str) -> ApiGatewayPush {
        let c = aws_sdk_apigatewaymanagement::config::Builder::from(conf).endpoint_url(endpoint).build();
        ApiGatewayPush { client: aws_sdk_apigatewaymanagement::Client::from_conf(c) }
    }
}

#[async_trait]
impl Push for ApiGatewayPush {
    async fn post(&self, connection: &str, frame: &str) -> anyhow::Result<bool> {
        let sent = self
            .client
            .post_to_connection()
            .connection_id(connection)
            .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(frame.as_bytes()))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => Ok(false),
            Err(e) => Err(anyhow::anyhow!(
                "posting to chat connection {connection}: {}",
                aws_sdk_apigatewaymanagement::error::DisplayErrorContext(e)
            )),
        }
    }
}

fn conn_key(connection: &str) -> Key {
    Key::new(format!("chat-conn#{connection}"), "conn")
}

fn session_conn_key(session: &str, connection: &str) -> Key {
    Key::new(keys::chat_session_key(session).pk, format!("conn#{connection}"))
}

fn ttl(ports: &Ports) -> i64 {
    (ports.clock.now() + Duration::days(1)).timestamp()
}

/// A new connection (`$connect`).
pub async fn open(ports: &Ports, connection: &str, widget: &str, ip: &str) -> anyhow::Result<()> {
    let mut item = conn_key(connection).item();
    item.insert("widget".into(), json!(widget));
    item.insert("ip".into(), json!(ip));
    item.insert("ttl".into(), json!(ttl(ports)));
    ports.table.put(item, None).await?;
    Ok(())
}

/// A connection's widget, client address and session.
pub async fn connection(
    ports: &Ports,
    connection: &str,
) -> anyhow::Result<Option<(String, String, Option<String>)>> {
    let Some(item) = ports.table.get(&conn_key(connection)).await? else { return Ok(None) };
    Ok(Some((
        s(&item, "widget").unwrap_or_default(),
        s(&item, "ip").unwrap_or_default(),
        s(&item, "session"),
    )))
}

/// The connection speaks for `session` now.
pub async fn attach(ports: &Ports, connection: &str, session: &str) -> anyhow::Result<()> {
    ports
        .table
        .update(&conn_key(connection), vec![Update::Set("session".into(), json!(session))], None)
        .await?;
    let mut item = session_conn_key(session, connection).item();
    item.insert("ttl".into(), json!(ttl(ports)));
    ports.table.put(item, None).await?;
    crate::chat::mark_online(ports, session).await
}

/// The connection is closed (`$disconnect`, or API Gateway said it is gone); the visitor
/// is offline once their last connection is.
pub async fn close(ports: &Ports, connection: &str) -> anyhow::Result<()> {
    let session = connection_session(ports, connection).await?;
    ports.table.delete(&conn_key(connection), None).await?;
    if let Some(session) = session {
        ports.table.delete(&session_conn_key(&session, connection), None).await?;
        if connections_of(ports, &session).await?.is_empty() {
            crate::chat::mark_offline(ports, &session).await?;
        }
    }
    Ok(())
}

async fn connection_session(ports: &Ports, id: &str) -> anyhow::Result<Option<String>> {
    Ok(connection(ports, id).await?.and_then(|c| c.2))
}

/// The open connections of a session.
pub async fn connections_of(ports: &Ports, session: &str) -> anyhow::Result<Vec<String>> {
    let q = Query::new(keys::chat_session_key(session).pk).sk(SkCond::BeginsWith("conn#".into()));
    Ok(ports
        .table
        .query_all(q)
        .await?
        .iter()
        .filter_map(|i| s(i, "sk").and_then(|k| k.strip_prefix("conn#").map(str::to_string)))
        .collect())
}

/// Sends a frame to every connection of a session; how many took it.
pub async fn to_session(ports: &Ports, push: &dyn Push, session: &str, frame: &str) -> anyhow::Result<usize> {
    let mut n = 0;
    for c in connections_of(ports, session).await? {
        if push.post(&c, frame).await? {
            n += 1;
        } else {
            close(ports, &c).await?;
        }
    }
    Ok(n)
}

/// Counts one use of `key` in the current minute; false past `per_minute`. Fixed
/// one-minute windows in the table, for functions that share no memory.
pub async fn allow(ports: &Ports, key: &str, per_minute: f64) -> anyhow::Result<bool> {
    let now = ports.clock.now();
    let window = now.timestamp().div_euclid(60);
    let k = Key::new(format!("chat-rate#{key}"), window.to_string());
    let item = ports
        .table
        .update(
            &k,
            vec![Update::Add("n".into(), 1), Update::Set("ttl".into(), json!(now.timestamp() + 600))],
            None,
        )
        .await?;
    let n = item.get("n").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
    Ok(n <= per_minute)
}
