//! The HTTP routes of mailbox connections, one axum router for both the `webhooks`
//! Lambda (behind API Gateway) and `mailroom serve`:
//! - `GET /oauth/callback`: where the provider sends the user back (a connection is
//!   started by an admin through the API, `POST /admin/inboxes/{address}/connect`, or by
//!   a user for their own inbox, `POST /me/inbox/connect`);
//! - `POST /webhooks/gmail`, `/webhooks/graph`, `/webhooks/graph-lifecycle`: push.
//!
//! Errors are RFC 9457 problem details.

use crate::mailbox::oauth::{self, OAuthError};
use crate::mailbox::request::{self as sync, SyncRequest};
use crate::runtime::config::ProvidersConfig;
use crate::runtime::http::problem;
use crate::runtime::ports::Ports;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

pub struct WebState {
    pub ports: Ports,
    pub cfg: ProvidersConfig,
    /// Checks Pub/Sub's OIDC tokens; built once per process (it caches Google's JWKS).
    pub gmail_verifier: mailroom_providers::jwt::OidcVerifier,
}

impl WebState {
    pub fn new(ports: Ports, cfg: ProvidersConfig) -> Result<WebState, String> {
        let gmail_verifier = crate::mailbox::gmail::push_verifier(&cfg.google)
            .map_err(|e| format!("Gmail push verifier: {e}"))?;
        Ok(WebState { ports, cfg, gmail_verifier })
    }
}

/// A push body is a small JSON envelope; anything larger is refused unread.
const PUSH_BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .route("/oauth/callback", get(callback))
        .route("/webhooks/gmail", post(gmail_push))
        .route("/webhooks/graph", post(graph_notification))
        .route("/webhooks/graph-lifecycle", post(graph_lifecycle))
        .with_state(state)
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// The browser lands here. The connection is stored and a `connect` sync queued (watch
/// or subscriptions, then the backfill): the page answers at once rather than after the
/// backfill.
async fn callback(State(st): State<Arc<WebState>>, Query(p): Query<CallbackParams>) -> Response {
    if let Some(err) = p.error {
        let why = p.error_description.unwrap_or_default();
        return page(
            StatusCode::BAD_REQUEST,
            "Connection cancelled",
            &format!("The provider said: {err} {why}"),
        );
    }
    let (Some(code), Some(state)) = (p.code, p.state) else {
        return page(StatusCode::BAD_REQUEST, "Connection failed", "The link is missing its code or state.");
    };
    // Started from the settings pages: back there with the outcome.
    let back = oauth::return_to(&st.ports, &state).await;
    let back_with = |notice: &str| {
        back.as_ref().map(|b| {
            let q = crate::runtime::http::notice_query(&st.ports.signer, notice);
            axum::response::Redirect::to(&format!("{b}?{q}")).into_response()
        })
    };
    let conn = match oauth::callback(&st.ports, &st.cfg, &code, &state).await {
        Ok(c) => c,
        Err(e @ (OAuthError::BadState | OAuthError::Refused(_) | OAuthError::WrongAccount { .. })) => {
            if let Some(r) = back_with(&format!("Not connected: {e}")) {
                return r;
            }
            return page(StatusCode::BAD_REQUEST, "Connection failed", &e.to_string());
        }
        Err(e) => {
            tracing::error!(error = %e, "OAuth callback");
            return page(StatusCode::INTERNAL_SERVER_ERROR, "Connection failed", &e.to_string());
        }
    };
    let req = SyncRequest {
        inbox: conn.inbox.clone(),
        provider: conn.provider,
        reason: "connect".into(),
        hint: json!({}),
    };
    if let Err(e) = sync::enqueue(&st.ports, &req).await.and_then(|_| st.ports.flush()) {
        return page(StatusCode::SERVICE_UNAVAILABLE, "Connection stored, sync not started", &e.to_string());
    }
    let done = format!("{} is connected; its mail is being imported.", conn.inbox);
    back_with(&format!("Connected: {done}")).unwrap_or_else(|| page(StatusCode::OK, "Connected", &done))
}

/// Pub/Sub push: the OIDC token is checked before the body is read.
async fn gmail_push(State(st): State<Arc<WebState>>, req: axum::extract::Request) -> Response {
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Err(o) = crate::mailbox::gmail::verify_push(&st.gmail_verifier, auth.as_deref()).await {
        return status_only(o.status());
    }
    let Ok(body) = axum::body::to_bytes(req.into_body(), PUSH_BODY_LIMIT).await else {
        return problem(StatusCode::PAYLOAD_TOO_LARGE, "a push body is at most 64 KiB");
    };
    status_only(crate::mailbox::gmail::accept_push(&st.ports, &body).await.status())
}

#[derive(Deserialize)]
struct GraphParams {
    #[serde(rename = "validationToken")]
    validation_token: Option<String>,
}

/// Graph change notifications (and the validation handshake): verified, queued, 202.
async fn graph_notification(
    State(st): State<Arc<WebState>>,
    Query(q): Query<GraphParams>,
    body: axum::body::Bytes,
) -> Response {
    graph_reply(
        crate::mailbox::graph::handle_notification(&st.ports, q.validation_token.as_deref(), &body).await,
    )
}

async fn graph_lifecycle(
    State(st): State<Arc<WebState>>,
    Query(q): Query<GraphParams>,
    body: axum::body::Bytes,
) -> Response {
    graph_reply(
        crate::mailbox::graph::handle_lifecycle(&st.ports, q.validation_token.as_deref(), &body).await,
    )
}

fn graph_reply(r: crate::mailbox::graph::WebhookReply) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, r.content_type)], r.body).into_response()
}

fn status_only(code: u16) -> Response {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR).into_response()
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>{t}</title><h1>{t}</h1><p>{x}</p>",
        t = esc(title),
        x = esc(text)
    );
    (status, Html(body)).into_response()
}
