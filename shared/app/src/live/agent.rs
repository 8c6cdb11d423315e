//! The agents' side: `GET /app/live`, a WebSocket for a signed-in user's pages. It takes
//! the web session's cookie and only from our own pages (the `Origin` must be this host),
//! so another site cannot open it with the user's cookie. The page says what it shows
//! (`subscribe`: an inbox's list, a conversation); the server refuses what the user may not
//! see and, from then on, pushes the feed's events of what they see, typing and
//! presence. Frames: docs/chat.md.

use super::{Hub, frame};
use crate::access::Viewer;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::sync::Arc;

pub fn router(hub: Arc<Hub>) -> Router {
    Router::new().route("/app/live", get(connect)).with_state(hub)
}

/// Whether the request comes from a page of this server: its `Origin`'s host is the
/// `Host` it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (host, origin) {
        (Some(h), Some(o)) => o
            .strip_prefix("https://")
            .or_else(|| o.strip_prefix("http://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(h)),
        _ => false,
    }
}

async fn connect(State(hub): State<Arc<Hub>>, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    if !same_origin(&headers) {
        return (StatusCode::FORBIDDEN, "live updates are for Mailroom's own pages").into_response();
    }
    let session = match crate::web::session::current(&hub.ports, &headers).await {
        Ok(Some(s)) => s,
        Ok(None) => return (StatusCode::UNAUTHORIZED, "sign in first").into_response(),
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("reading the session: {e}")).into_response();
        }
    };
    let ws = match crate::workspace::load(&hub.ports).await {
        Ok(ws) => Arc::new(ws.unwrap_or_default()),
        Err(e) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("reading the workspace: {e:#}"))
                .into_response();
        }
    };
    let Some(user) = ws.user(&session.email) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let viewer = Viewer::of(user, &ws);
    upgrade.max_message_size(16 * 1024).on_upgrade(move |socket| run(hub, viewer, socket))
}

/// Checks a `subscribe` frame against what the user may see; the error frame if not.
async fn subscribe(hub: &Hub, viewer: &Viewer, id: u64, v: &Value) -> anyhow::Result<Option<String>> {
    let forbidden = |what: &str| {
        Some(frame(json!({"type": "error", "code": "forbidden", "message": format!("no such {what}")})))
    };
    let inbox = v.get("inbox").and_then(Value::as_str).filter(|i| !i.is_empty() && *i != "all");
    if let Some(i) = inbox
        && !viewer.can_see(i)
    {
        return Ok(forbidden("inbox"));
    }
    let mut conversation = None;
    if let Some(c) = v.get("conversation").and_then(Value::as_str).filter(|c| !c.is_empty()) {
        match crate::thread::Threader::new(&hub.ports).find(c).await {
            Ok(root) if viewer.can_see(&crate::keys::item_str(&root.item, "inbox").unwrap_or_default()) => {
                conversation = Some(root.id);
            }
            _ => return Ok(forbidden("conversation")),
        }
    }
    hub.subscribe(id, inbox.map(str::to_string), conversation.clone());
    Ok(Some(frame(json!({"type": "subscribed", "inbox": inbox, "conversation": conversation}))))
}

async fn handle(hub: &Hub, viewer: &Viewer, id: u64, text: &str) -> anyhow::Result<Option<String>> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Ok(Some(frame(
            json!({"type": "error", "code": "bad_request", "message": "frames are JSON"}),
        )));
    };
    match v.get("type").and_then(Value::as_str).unwrap_or_default() {
        "subscribe" => subscribe(hub, viewer, id, &v).await,
        "typing" => {
            let conv = v.get("conversation").and_then(Value::as_str).unwrap_or_default();
            if let Ok(root) = crate::thread::Threader::new(&hub.ports).find(conv).await
                && viewer.can_see(&crate::keys::item_str(&root.item, "inbox").unwrap_or_default())
            {
                hub.agent_typing(id, &root.id).await;
            }
            Ok(None)
        }
        "ping" => Ok(Some(frame(json!({"type": "pong"})))),
        other => Ok(Some(frame(
            json!({"type": "error", "code": "bad_request", "message": format!("unknown frame type {other:?}")}),
        ))),
    }
}

async fn run(hub: Arc<Hub>, viewer: Viewer, socket: WebSocket) {
    let (mut out, mut inp) = socket.split();
    let (id, mut rx) = hub.add_agent(&viewer.email, &viewer.name);
    hub.announce_agents().await;
    let _ = out.send(Message::Text(frame(json!({"type": "hello", "user": viewer.email})).into())).await;
    loop {
        let reply = tokio::select! {
            m = inp.next() => match m {
                Some(Ok(Message::Text(t))) => match handle(&hub, &viewer, id, t.as_str()).await {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "live frame failed");
                        None
                    }
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => None,
            },
            p = rx.recv() => p,
        };
        if let Some(r) = reply
            && out.send(Message::Text(r.into())).await.is_err()
        {
            break;
        }
    }
    hub.remove_agent(id);
    hub.announce_agents().await;
}
