//! The visitor's side of the chat: `GET /chat/v1/widget.js` (the embeddable script) and
//! `GET /chat/v1/ws?widget=ID` (the WebSocket). A connection is refused unless its
//! `Origin` is one the widget allows, and is rate-limited per client IP; each message is
//! size-capped and rate-limited per IP and per session. Frames are JSON; docs/chat.md
//! lists them.

use super::Hub;
use super::limit::{CONNECTS_PER_IP, Rate};
use super::protocol::{Side, Visitor, error};
use crate::chat::{self, Session};
use crate::runtime::http::problem;
use async_trait::async_trait;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use mailroom_core::workspace::ChatWidget;
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The largest frame a visitor may send (a message is at most `chat::MAX_TEXT` characters).
pub const MAX_FRAME: usize = 32 * 1024;
const WIDGET_JS: &str = include_str!("../chat/widget.js");

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new().route("/chat/v1/ws", get(connect)).with_state(hub).merge(script_router())
}

/// The widget's script alone (the API function serves it on AWS).
pub fn script_router() -> Router {
    Router::new().route("/chat/v1/widget.js", get(widget_js))
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

/// The in-process side: the hub's registrations, its in-memory rate buckets and agents.
struct HubSide {
    hub: Arc<Hub>,
    registered: Option<u64>,
    rx: Option<mpsc::Receiver<String>>,
}

#[async_trait]
impl Side for HubSide {
    async fn allow(&self, key: &str, rate: Rate) -> bool {
        self.hub.limiter.allow(key, rate)
    }

    async fn attach(&mut self, previous: Option<&Session>, session: &Session) -> anyhow::Result<()> {
        if let (Some(old), Some(id)) = (previous, self.registered.take())
            && self.hub.remove_visitor(&old.id, id)
        {
            chat::mark_offline(&self.hub.ports, &old.id).await?;
        }
        let inbox = self.hub.widget_inbox(&session.widget).await.unwrap_or_default();
        let (id, rx) = self.hub.add_visitor(&session.id, &inbox);
        self.registered = Some(id);
        self.rx = Some(rx);
        chat::mark_online(&self.hub.ports, &session.id).await
    }

    async fn agents_online(&self, inbox: &str) -> Option<bool> {
        Some(self.hub.agents_online(inbox).await)
    }

    async fn typing(&self, session: &Session, inbox: &str, name: &str) {
        if let Ok(Some(ws)) = crate::workspace::load(&self.hub.ports).await {
            self.hub.visitor_typing(&session.id, inbox, name, &Arc::new(ws));
        }
    }
}

async fn run(hub: Arc<Hub>, widget: ChatWidget, ip: String, socket: WebSocket) {
    let (mut out, mut inp) = socket.split();
    let side = HubSide { hub: hub.clone(), registered: None, rx: None };
    let mut conn = Visitor { ports: hub.ports.clone(), widget, ip, session: None, side };
    let mut beat = tokio::time::interval(std::time::Duration::from_secs(20));
    loop {
        // Taken out for the wait, so that handling a frame may replace it (a new session).
        let mut rx = conn.side.rx.take();
        let pushed = async {
            match rx.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let reply = tokio::select! {
            m = inp.next() => match m {
                Some(Ok(Message::Text(t))) => match conn.handle(&hub.ingestor, t.as_str()).await {
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
                if let Some(s) = &conn.session && let Err(e) = chat::mark_online(&hub.ports, &s.id).await {
                    tracing::warn!(error = %format!("{e:#}"), "chat: marking a visitor online failed");
                }
                None
            }
        };
        if conn.side.rx.is_none() {
            conn.side.rx = rx;
        }
        if let Some(r) = reply
            && out.send(Message::Text(r.into())).await.is_err()
        {
            break;
        }
    }
    if let (Some(s), Some(id)) = (conn.session.take(), conn.side.registered)
        && hub.remove_visitor(&s.id, id)
        && let Err(e) = chat::mark_offline(&hub.ports, &s.id).await
    {
        tracing::warn!(error = %format!("{e:#}"), "chat: marking a visitor offline failed");
    }
}
