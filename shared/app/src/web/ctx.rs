//! What every page handler shares: the signed-in user of a request (or the way to the
//! sign-in page), the CSRF check, form fields and the error pages. A conversation the
//! user may not see is a 404, exactly like one that does not exist.

use super::WebState;
use super::session::{self, Session};
use super::view::*;
use crate::access::Viewer;
use crate::api::ApiError;
use askama::Template;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::sync::Arc;

pub(super) type Fields = Vec<(String, String)>;

/// The signed-in user of a request.
pub(super) struct Ctx {
    pub(super) viewer: Viewer,
    pub(super) session: Session,
}

pub(super) fn is_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// To the sign-in page: a page load is redirected, an htmx request told to go there (the
/// draft stays in the browser).
pub(super) fn to_signin(headers: &HeaderMap, uri: &Uri) -> Response {
    let next: String = form_urlencoded::byte_serialize(uri.path().as_bytes()).collect();
    let target = format!("/app/signin?next={next}");
    if is_htmx(headers) {
        let mut r = StatusCode::UNAUTHORIZED.into_response();
        if let Ok(v) = HeaderValue::from_str(&target) {
            r.headers_mut().insert("hx-redirect", v);
        }
        return r;
    }
    Redirect::to(&target).into_response()
}

pub(super) fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "web page failed");
    (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong; the server log has the cause.").into_response()
}

pub(super) async fn ctx(st: &WebState, headers: &HeaderMap, uri: &Uri) -> Result<Ctx, Response> {
    let ports = &st.api.ports;
    let Some(session) = session::current(ports, headers).await.map_err(internal)? else {
        return Err(to_signin(headers, uri));
    };
    let ws = crate::workspace::load(ports).await.map_err(internal)?.unwrap_or_default();
    // A user removed from the workspace is out, whatever their session says.
    let Some(user) = ws.users.iter().find(|u| u.email.eq_ignore_ascii_case(&session.email)) else {
        return Err(to_signin(headers, uri));
    };
    Ok(Ctx { viewer: Viewer::of(user, &Arc::new(ws.clone())), session })
}

/// A page handler's signed-in user; a visitor gets the way to the sign-in page instead.
impl axum::extract::FromRequestParts<Arc<WebState>> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &Arc<WebState>,
    ) -> Result<Self, Response> {
        ctx(st, &parts.headers, &parts.uri).await
    }
}

pub(super) fn csrf(c: &Ctx, headers: &HeaderMap, fields: &Fields) -> Result<(), Response> {
    let token = fields.iter().find(|(k, _)| k == "_csrf").map(|(_, v)| v.as_str());
    if session::csrf_ok(&c.session, headers, token) {
        Ok(())
    } else {
        Err((StatusCode::FORBIDDEN, "The form is stale or was not sent by Mailroom: reload the page.")
            .into_response())
    }
}

pub(super) fn field<'f>(fields: &'f Fields, name: &str) -> Option<&'f str> {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.trim().is_empty())
}

pub(super) fn render(t: impl Template) -> Result<String, Response> {
    t.render().map_err(internal)
}

pub(super) fn not_found(c: &Ctx) -> Response {
    let page = PageTpl {
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: c.viewer.is_admin(),
        section: "inbox",
        heading: "Not found".into(),
        paragraphs: vec![
            "There is no such conversation, or it is in an inbox you are not a member of.".into(),
        ],
    };
    match page.render() {
        Ok(h) => (StatusCode::NOT_FOUND, Html(h)).into_response(),
        Err(e) => internal(e),
    }
}

pub(super) fn api_error(c: &Ctx, e: ApiError) -> Response {
    match e {
        ApiError::NotFound(_) => not_found(c),
        other => other.into_response(),
    }
}

pub(super) fn simple_page(
    c: &Ctx,
    section: &'static str,
    heading: &str,
    paragraphs: Vec<String>,
) -> Response {
    let page = PageTpl {
        csrf: c.session.csrf.clone(),
        name: c.viewer.name.clone(),
        admin: c.viewer.is_admin(),
        section,
        heading: heading.into(),
        paragraphs,
    };
    match page.render() {
        Ok(h) => Html(h).into_response(),
        Err(e) => internal(e),
    }
}
