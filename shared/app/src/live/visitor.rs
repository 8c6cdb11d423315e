//! The visitor's side of the chat: `GET /chat/v1/widget.js` (the embeddable script) and
//! `GET /chat/v1/ws?widget=ID` (the WebSocket). A connection is refused unless its
//! `Origin` is one the widget allows, and is rate-limited per client IP; each message is
//! size-capped and rate-limited per IP and per session. Frames are JSON; docs/chat.md
//! lists them.

use super::limit::{CONNECTS_PER_IP, FRAMES_PER_IP, MESSAGES_PER_IP, MESSAGES_PER_SESSION};
use super::{Hub, frame};
use crate::chat::{self, Session};
use crate::runtime::http::problem;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use mailroom_core::workspace::ChatWidget;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The largest frame a visitor may send (a message is at most `chat::MAX_TEXT` characters).
pub const MAX_FRAME: usize = 32 * 1024;
const WIDGET_JS: &str = include_str!("../chat/widget.js");

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/chat/v1/widget.js", get(widget_js))
        .route("/chat/v1/ws", get(connect))
        .with_state(hub)
}

async fn widget_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // Sites on other origins load it.
            (header::HeaderName::from_static("cross-origin-resource-policy"), "cross-origin"),
        ],
        WIDGET_JS,
    )
        .into_response()
}

#[derive(Deserialize)]
struct ConnectQuery {
    widget: String,
}

/// Whether `origin` (the browser's `Origin` header) is one the widget allows.
pub fn origin_allowed(widget: &ChatWidget, origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return false };
    widget.allowed_origins.iter().any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

async fn connect(
    State(hub): State<Arc<Hub>>,
    Query(q): Query<ConnectQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let ws = match crate::workspace::load(&hub.ports).await {
        Ok(ws) => ws.unwrap_or_default(),
        Err(e) => return problem(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the workspace: {e:#}")),
    };
    let Some(widget) = ws.chat_widget(&q.widget).cloned() else {
        return problem(StatusCode::NOT_FOUND, format!("unknown chat widget {:?}", q.widget));
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !origin_allowed(&widget, origin) {
        tracing::warn!(widget = %widget.id, origin = ?origin, "chat connection from an origin the widget does not allow");
        return problem(
            StatusCode::FORBIDDEN,
            format!(
                "this site ({}) may not open chats of widget {:?}",
                origin.unwrap_or("no origin"),
                widget.id
            ),
        );
    }
    // The socket's peer: `mailroom serve` is not behind a proxy it could trust.
    let ip = peer.ip().to_string();
    if !hub.limiter.allow(&format!("connect|{ip}"), CONNECTS_PER_IP) {
        return problem(
            StatusCode::TOO_MANY_REQUESTS,
            "too many chat connections from this address; wait a minute",
        );
    }
    upgrade
        .max_message_size(MAX_FRAME)
        .max_frame_size(MAX_FRAME)
        .on_upgrade(move |socket| run(hub, widget, ip, socket))
}

/// What the visitor reads when they open the chat, beside their history.
fn welcome(widget: &ChatWidget, agents_online: bool) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("greeting".into(), json!(widget.greeting.as_deref().unwrap_or("Hi! How can we help?")));
    m.insert("agents_online".into(), json!(agents_online));
    m.insert("away".into(), json!(widget.away_message));
    m.insert("colour".into(), json!(widget.colour));
    m
}

fn error(code: &str, message: &str) -> String {
    frame(json!({"type": "error", "code": code, "message": message}))
}

struct Conn {
    hub: Arc<Hub>,
    widget: ChatWidget,
    ip: String,
    session: Option<(Session, u64)>,
    rx: Option<mpsc::Receiver<String>>,
}

impl Conn {
    async fn ready(&mut self, session: Session) -> anyhow::Result<String> {
        if let Some((old, id)) = self.session.take()
            && self.hub.remove_visitor(&old.id, id)
        {
            chat::mark_offline(&self.hub.ports, &old.id).await?;
        }
        let (id, rx) = self.hub.add_visitor(&session.id, &self.widget.inbox);
        chat::mark_online(&self.hub.ports, &session.id).await?;
        let history = chat::history(&self.hub.ports, &self.widget, &session.id).await?;
        let mut m = welcome(&self.widget, self.hub.agents_online(&self.widget.inbox).await);
        m.insert("type".into(), json!("ready"));
        m.insert("token".into(), json!(chat::token(&self.hub.ports, &self.widget.id, &session.id)));
        m.insert("name".into(), json!(session.name));
        m.insert("email".into(), json!(session.email.key()));
        m.insert("history".into(), json!(history));
        self.session = Some((session, id));
        self.rx = Some(rx);
        Ok(frame(Value::Object(m)))
    }

    async fn need_identity(&self) -> String {
        let mut m = welcome(&self.widget, self.hub.agents_online(&self.widget.inbox).await);
        m.insert("type".into(), json!("need_identity"));
        frame(Value::Object(m))
    }

    /// The answer to one frame, if any.
    async fn handle(&mut self, text: &str) -> anyhow::Result<Option<String>> {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            return Ok(Some(error("bad_request", "frames are JSON objects")));
        };
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
        let kind = field("type");
        if kind != "message" && !self.hub.limiter.allow(&format!("frame|{}", self.ip), FRAMES_PER_IP) {
            return Ok(Some(error("rate_limited", "Slow down a little, please.")));
        }
        match kind.as_str() {
            "hello" => Ok(Some(self.need_identity().await)),
            "resume" => {
                let token = field("token");
                let found = match chat::verify_token(&self.hub.ports, &self.widget.id, &token) {
                    Some(id) => chat::load(&self.hub.ports, &self.widget.id, &id).await?,
                    None => None,
                };
                match found {
                    Some(s) => Ok(Some(self.ready(s).await?)),
                    None => Ok(Some(self.need_identity().await)),
                }
            }
            "start" => {
                if !self.hub.limiter.allow(&format!("msg|{}", self.ip), MESSAGES_PER_IP) {
                    return Ok(Some(error(
                        "rate_limited",
                        "Too many chats from here; try again in a minute.",
                    )));
                }
                match chat::start(&self.hub.ports, &self.widget, &field("name"), &field("email")).await {
                    Ok(s) => Ok(Some(self.ready(s).await?)),
                    Err(e) => Ok(Some(error("bad_email", &e))),
                }
            }
            "message" => self.message(&field("text"), v.get("page").and_then(Value::as_str)).await,
            "typing" => {
                if let Some((s, _)) = &self.session {
                    let ws = Arc::new(crate::workspace::load(&self.hub.ports).await?.unwrap_or_default());
                    let name = s.name.clone().unwrap_or_else(|| s.email.key());
                    self.hub.visitor_typing(&s.id, &self.widget.inbox, &name, &ws);
                }
                Ok(None)
            }
            "ping" => Ok(Some(frame(json!({"type": "pong"})))),
            other => Ok(Some(error("bad_request", &format!("unknown frame type {other:?}")))),
        }
    }

    async fn message(&mut self, text: &str, page: Option<&str>) -> anyhow::Result<Option<String>> {
        let Some((session, _)) = &self.session else {
            return Ok(Some(error("no_session", "Tell us your email first.")));
        };
        let text = text.trim();
        if text.is_empty() {
            return Ok(Some(error("empty", "The message is empty.")));
        }
        if text.chars().count() > chat::MAX_TEXT {
            return Ok(Some(error(
                "too_long",
                &format!("A message can have at most {} characters.", chat::MAX_TEXT),
            )));
        }
        // Both buckets are asked: a flood from one address cannot hide behind new sessions.
        let by_ip = self.hub.limiter.allow(&format!("msg|{}", self.ip), MESSAGES_PER_IP);
        let by_session = self.hub.limiter.allow(&format!("session|{}", session.id), MESSAGES_PER_SESSION);
        if !(by_ip && by_session) {
            return Ok(Some(error(
                "rate_limited",
                "You are sending messages too fast; this one was not sent.",
            )));
        }
        match chat::post(&self.hub.ports, &self.hub.ingestor, &self.widget, session, text, page).await {
            Ok(mid) => Ok(Some(frame(json!({"type": "ack", "message_id": mid})))),
            Err(e) => {
                tracing::error!(session = %session.id, error = %format!("{e:#}"), "a chat message could not be stored");
                Ok(Some(error("not_stored", "Your message could not be stored; please send it again.")))
            }
        }
    }
}

async fn run(hub: Arc<Hub>, widget: ChatWidget, ip: String, socket: WebSocket) {
    let (mut out, mut inp) = socket.split();
    let mut conn = Conn { hub: hub.clone(), widget, ip, session: None, rx: None };
    let mut beat = tokio::time::interval(std::time::Duration::from_secs(20));
    loop {
        // Taken out for the wait, so that handling a frame may replace it (a new session).
        let mut rx = conn.rx.take();
        let pushed = async {
            match rx.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let reply = tokio::select! {
            m = inp.next() => match m {
                Some(Ok(Message::Text(t))) => match conn.handle(t.as_str()).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "chat frame failed");
                        Some(error("server", "Something went wrong on our side; try again."))
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => None,
            },
            p = pushed => p,
            _ = beat.tick() => {
                if let Some((s, _)) = &conn.session && let Err(e) = chat::mark_online(&hub.ports, &s.id).await {
                    tracing::warn!(error = %format!("{e:#}"), "chat: marking a visitor online failed");
                }
                None
            }
        };
        if conn.rx.is_none() {
            conn.rx = rx;
        }
        if let Some(r) = reply
            && out.send(Message::Text(r.into())).await.is_err()
        {
            break;
        }
    }
    if let Some((s, id)) = conn.session.take()
        && hub.remove_visitor(&s.id, id)
        && let Err(e) = chat::mark_offline(&hub.ports, &s.id).await
    {
        tracing::warn!(error = %format!("{e:#}"), "chat: marking a visitor offline failed");
    }
}
