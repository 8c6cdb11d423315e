//! The changes a user makes on a conversation: reply, comment, assign, close or reopen,
//! snooze, ticket stage, presence. Each is a POST whose [`Change`] (the signed-in user,
//! the CSRF token checked, the conversation they may see) is taken from the request
//! before the handler runs; each answers with the refreshed live part (htmx) or a
//! redirect (no script).

use super::WebState;
use super::ctx::*;
use super::thread::*;
use crate::api::conversations::visible_root;
use crate::keys;
use crate::keys::item_str as s;
use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, Utc};
use mailroom_core::html::RemoteImages;
use mailroom_store::Item;
use serde_json::json;
use std::sync::Arc;

/// A change request, checked: who asks, with a valid CSRF token, on a conversation they
/// may see (its root id and item), with the form's fields.
pub(super) struct Change {
    st: Arc<WebState>,
    c: Ctx,
    root: String,
    item: Item,
    fields: Fields,
    htmx: bool,
}

impl FromRequest<Arc<WebState>> for Change {
    type Rejection = Response;

    async fn from_request(req: Request, st: &Arc<WebState>) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let Path(id) =
            Path::<String>::from_request_parts(&mut parts, st).await.map_err(IntoResponse::into_response)?;
        let (headers, uri) = (parts.headers.clone(), parts.uri.clone());
        let Form(fields) = Form::<Fields>::from_request(Request::from_parts(parts, body), st)
            .await
            .map_err(IntoResponse::into_response)?;
        let c = ctx(st, &headers, &uri).await?;
        csrf(&c, &headers, &fields)?;
        let (root, item) = visible_root(&st.api, &c.viewer, &id).await.map_err(|e| api_error(&c, e))?;
        Ok(Change { st: st.clone(), c, root, item, fields, htmx: is_htmx(&headers) })
    }
}

impl Change {
    fn field(&self, name: &str) -> Option<&str> {
        field(&self.fields, name)
    }

    fn inbox(&self) -> String {
        s(&self.item, "inbox").unwrap_or_default()
    }

    /// Makes the change durable, then answers: the refreshed conversation (htmx, with
    /// `mr-done` when it was made, so app.js clears the draft) or the page again.
    async fn answer(self, result: Result<String, String>) -> Response {
        let result = result.and_then(|n| self.st.api.ports.flush().map(|_| n).map_err(|e| e.to_string()));
        if !self.htmx {
            return Redirect::to(&format!("/app/c/{}", self.root)).into_response();
        }
        let done = result.is_ok();
        let said = match result {
            Ok(n) => (Some(n), None),
            Err(e) => (None, Some(e)),
        };
        match live_part(&self.st, &self.c, &self.root, RemoteImages::Block, said, None).await {
            Ok(h) if done => ([("hx-trigger", "mr-done")], Html(h.unwrap_or_default())).into_response(),
            Ok(h) => Html(h.unwrap_or_default()).into_response(),
            Err(r) => r,
        }
    }
}

fn addresses(v: Option<&str>) -> Vec<String> {
    v.unwrap_or_default()
        .split([',', ';', ' '])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) async fn reply(ch: Change) -> Response {
    use crate::outbound::reply::{ReplyRequest, queue_reply};
    let mut to: Vec<String> = ch
        .fields
        .iter()
        .filter(|(k, v)| k == "to" && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_string())
        .collect();
    to.extend(addresses(ch.field("to_extra")));
    let text = ch.field("text").unwrap_or_default().to_string();
    let result = if text.trim().is_empty() {
        Err("The reply is empty.".to_string())
    } else if to.is_empty() {
        Err("Tick at least one recipient.".to_string())
    } else {
        let req = ReplyRequest {
            request_id: ch
                .field("request_id")
                .map(str::to_string)
                .unwrap_or_else(|| format!("web-{}", hex::encode(rand::random::<[u8; 8]>()))),
            author: ch.c.viewer.email.clone(),
            text,
            html: None,
            cc: addresses(ch.field("cc")),
            to: Some(to),
            attachments: vec![],
        };
        let api = &ch.st.api;
        queue_reply(&api.ports, &ch.c.viewer.ws, &ch.root, req, Some(&api.public_url))
            .await
            .map(|o| format!("Reply queued to {}.", o.to.join(", ")))
            .map_err(|e| e.to_string())
    };
    ch.answer(result).await
}

pub(super) async fn comment(ch: Change) -> Response {
    let text = ch.field("body").unwrap_or_default();
    let result =
        crate::conversations::add_comment(&ch.st.api.ports, &ch.c.viewer, &ch.root, &ch.inbox(), text)
            .await
            .map(|cm| {
                if cm.mentions.is_empty() {
                    "Comment added.".to_string()
                } else {
                    format!("Comment added; {} notified.", cm.mentions.join(", "))
                }
            })
            .map_err(|e| e.to_string());
    ch.answer(result).await
}

pub(super) async fn assign(ch: Change) -> Response {
    let (assignee, team) = (ch.field("assignee"), ch.field("team"));
    let result =
        crate::conversations::assign(&ch.st.api.ports, &ch.c.viewer, &ch.root, &ch.inbox(), assignee, team)
            .await
            .map(|()| match assignee {
                Some(a) => format!("Assigned to {a}."),
                None => "Unassigned.".to_string(),
            })
            .map_err(|e| e.to_string());
    ch.answer(result).await
}

async fn set_status(ch: Change, close: bool) -> Response {
    let ports = &ch.st.api.ports;
    let result = crate::conversations::set_status(
        ports,
        &ch.c.viewer.ws,
        &ch.root,
        close,
        Some(&ch.c.viewer.email),
        ports.clock.now(),
    )
    .await
    .map(|_| if close { "Closed.".to_string() } else { "Reopened.".to_string() })
    .map_err(|e| format!("{e:#}"));
    ch.answer(result).await
}

pub(super) async fn close(ch: Change) -> Response {
    set_status(ch, true).await
}

pub(super) async fn reopen(ch: Change) -> Response {
    set_status(ch, false).await
}

/// Snoozes for one of the offered spans (anything else wakes it).
pub(super) async fn snooze(ch: Change) -> Response {
    let now = ch.st.api.ports.clock.now();
    let until: Option<DateTime<Utc>> = match ch.field("for") {
        Some("1h") => Some(now + Duration::hours(1)),
        Some("4h") => Some(now + Duration::hours(4)),
        Some("1d") => Some(now + Duration::days(1)),
        Some("7d") => Some(now + Duration::days(7)),
        _ => None,
    };
    let result = crate::conversations::snooze(&ch.st.api.ports, &ch.c.viewer, &ch.root, until)
        .await
        .map(|()| match until {
            Some(t) => format!("Snoozed until {}.", t.format("%Y-%m-%d %H:%M UTC")),
            None => "Woken.".to_string(),
        })
        .map_err(|e| e.to_string());
    ch.answer(result).await
}

pub(super) async fn stage(ch: Change) -> Response {
    let wanted = ch.field("stage").unwrap_or_default().to_string();
    let result =
        crate::tickets::move_stage(&ch.st.api.ports, &ch.c.viewer.ws, &ch.root, &wanted, &ch.c.viewer.email)
            .await
            .map(|_| format!("Ticket moved to {wanted}."))
            .map_err(|e| e.to_string());
    ch.answer(result).await
}

/// The browser says the user is looking at (or writing in) a conversation.
pub(super) async fn presence(ch: Change) -> Response {
    let state = if ch.field("state") == Some("replying") { "replying" } else { "viewing" };
    let value = format!("{state}|{}", Utc::now().timestamp());
    let update = mailroom_store::Update::Set(format!("u:{}", ch.c.viewer.email), json!(value));
    match ch.st.api.ports.table.update(&keys::presence_key(&ch.root), vec![update], None).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => internal(e),
    }
}
