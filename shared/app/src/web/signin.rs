//! The sign-in page, the two ways in (a one-time link; the OIDC provider, `oidc.rs`) and
//! signing out.

use super::WebState;
use super::session;
use super::view::*;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::sync::Arc;

use super::ctx::*;

// ------------------------------------------------------------------ sign-in

#[derive(Debug, Default, Deserialize)]
pub(super) struct SigninQuery {
    pub next: Option<String>,
    pub message: Option<String>,
}

/// Only a path of ours to go back to after signing in (never another site).
fn local_path(next: Option<String>) -> String {
    next.filter(|n| n.starts_with("/app/") && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/app/".into())
}

pub(super) async fn signin(State(st): State<Arc<WebState>>, Query(q): Query<SigninQuery>) -> Response {
    let message = match q.message.as_deref() {
        Some("signed-out") => Some("You are signed out.".to_string()),
        Some("bad-link") => Some(
            "That sign-in link is not valid any more (it works once, for 15 minutes): ask for a new one."
                .to_string(),
        ),
        Some("not-a-user") => Some("That address is not a user of this workspace.".to_string()),
        Some("provider") => {
            Some("The sign-in did not complete: try again. The server log has the reason.".to_string())
        }
        _ => None,
    };
    let next = local_path(q.next);
    let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
    match (SigninTpl { oidc: st.oidc.is_some(), next, message }).render() {
        Ok(h) => Html(h).into_response(),
        Err(e) => internal(e),
    }
}

pub(super) async fn login(State(st): State<Arc<WebState>>, Path(token): Path<String>) -> Response {
    let ports = &st.api.ports;
    let email = match session::redeem_link(ports, &token).await {
        Ok(Some(e)) => e,
        Ok(None) => return Redirect::to("/app/signin?message=bad-link").into_response(),
        Err(e) => return internal(e),
    };
    sign_in(&st, &email, "/app/").await
}

/// A session for a user of the workspace, and on to `next`.
async fn sign_in(st: &WebState, email: &str, next: &str) -> Response {
    let ports = &st.api.ports;
    let ws = match crate::workspace::load(ports).await {
        Ok(w) => w.unwrap_or_default(),
        Err(e) => return internal(e),
    };
    if !ws.users.iter().any(|u| u.email.eq_ignore_ascii_case(email)) {
        return Redirect::to("/app/signin?message=not-a-user").into_response();
    }
    let sid = match session::start(ports, email).await.and_then(|s| ports.flush().map(|_| s)) {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let mut r = Redirect::to(next).into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(Some(&sid), st.secure())) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// To the OIDC provider's sign-in (404 when none is configured).
pub(super) async fn auth_start(State(st): State<Arc<WebState>>, Query(q): Query<SigninQuery>) -> Response {
    let Some(oidc) = &st.oidc else { return StatusCode::NOT_FOUND.into_response() };
    match oidc.start(&st.api.ports, &st.api.public_url, &local_path(q.next)).await {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(e) => internal(format!("{e:#}")),
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
}

/// Back from the provider: a session, or the sign-in page saying it did not work.
pub(super) async fn auth_callback(
    State(st): State<Arc<WebState>>,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let Some(oidc) = &st.oidc else { return StatusCode::NOT_FOUND.into_response() };
    let (Some(code), Some(state)) = (q.code, q.state) else {
        tracing::warn!(error = ?q.error, "OIDC sign-in came back without a code");
        return Redirect::to("/app/signin?message=provider").into_response();
    };
    match oidc.finish(&st.api.ports, &st.api.public_url, &code, &state).await {
        Ok((email, next)) => sign_in(&st, &email, &local_path(Some(next))).await,
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "OIDC sign-in refused");
            Redirect::to("/app/signin?message=provider").into_response()
        }
    }
}

pub(super) async fn logout(
    State(st): State<Arc<WebState>>,
    headers: HeaderMap,
    uri: Uri,
    Form(fields): Form<Fields>,
) -> Response {
    let c = match ctx(&st, &headers, &uri).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = csrf(&c, &headers, &fields) {
        return r;
    }
    if let Err(e) = session::end(&st.api.ports, &headers).await {
        return internal(e);
    }
    let mut r = Redirect::to("/app/signin?message=signed-out").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(None, st.secure())) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}
