//! The sign-in page, the one-time links and signing out.

use super::WebState;
use super::session;
use super::view::*;
use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
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

pub(super) async fn signin(Query(q): Query<SigninQuery>) -> Response {
    let message = match q.message.as_deref() {
        Some("signed-out") => Some("You are signed out.".to_string()),
        Some("bad-link") => Some(
            "That sign-in link is not valid any more (it works once, for 15 minutes): ask for a new one."
                .to_string(),
        ),
        Some("not-a-user") => Some("That address is not a user of this workspace.".to_string()),
        _ => None,
    };
    let next =
        q.next.filter(|n| n.starts_with("/app/") && !n.starts_with("//")).unwrap_or_else(|| "/app/".into());
    match (SigninTpl { oidc: false, next, message }).render() {
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
    let ws = match crate::workspace::load(ports).await {
        Ok(w) => w.unwrap_or_default(),
        Err(e) => return internal(e),
    };
    if !ws.users.iter().any(|u| u.email.eq_ignore_ascii_case(&email)) {
        return Redirect::to("/app/signin?message=not-a-user").into_response();
    }
    let sid = match session::start(ports, &email).await.and_then(|s| ports.flush().map(|_| s)) {
        Ok(s) => s,
        Err(e) => return internal(e),
    };
    let mut r = Redirect::to("/app/").into_response();
    if let Ok(v) = HeaderValue::from_str(&session::set_cookie(Some(&sid), st.secure())) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
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
