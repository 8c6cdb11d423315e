//! What the settings pages share: the admin-only form post (signed-in, admin, CSRF token
//! checked, before the handler runs), rendering, and the signed outcome notice a change
//! redirects with. Anyone but an admin gets the 404 page, as for anything they may not see.

use super::WebState;
use super::ctx::*;
use crate::api::ApiError;
use crate::runtime::http::notice_query;
use askama::Template;
use axum::Form;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{Html, IntoResponse, Redirect, Response};
use std::sync::Arc;

/// An admin's form post, checked.
pub(super) struct AdminForm {
    pub st: Arc<WebState>,
    pub c: Ctx,
    pub fields: Fields,
}

impl FromRequest<Arc<WebState>> for AdminForm {
    type Rejection = Response;

    async fn from_request(req: Request, st: &Arc<WebState>) -> Result<Self, Response> {
        let (parts, body) = req.into_parts();
        let (headers, uri) = (parts.headers.clone(), parts.uri.clone());
        let Form(fields) = Form::<Fields>::from_request(Request::from_parts(parts, body), st)
            .await
            .map_err(IntoResponse::into_response)?;
        let c = ctx(st, &headers, &uri).await?;
        admin_only(&c)?;
        csrf(&c, &headers, &fields)?;
        Ok(AdminForm { st: st.clone(), c, fields })
    }
}

/// An admin's page request: signed in, an admin, and the signed outcome notice its URL
/// carries (`?notice=`), if any.
pub(super) struct AdminPage {
    pub st: Arc<WebState>,
    pub c: Ctx,
    pub notice: Option<String>,
}

impl FromRequestParts<Arc<WebState>> for AdminPage {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<WebState>) -> Result<Self, Response> {
        let c = ctx(st, &parts.headers, &parts.uri).await?;
        admin_only(&c)?;
        let q: Vec<(String, String)> =
            form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
        let notice = crate::runtime::http::read_notice(&st.api.ports.signer, &q);
        Ok(AdminPage { st: st.clone(), c, notice })
    }
}

impl AdminForm {
    /// A field, trimmed ("" when absent).
    pub fn get(&self, name: &str) -> String {
        field(&self.fields, name).unwrap_or_default().trim().to_string()
    }
    /// Every value of a repeated field (checkboxes).
    pub fn all(&self, name: &str) -> Vec<String> {
        self.fields.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
}

pub(super) fn admin_only(c: &Ctx) -> Result<(), Response> {
    if c.viewer.is_admin() { Ok(()) } else { Err(not_found(c)) }
}

pub(super) fn page(t: impl Template) -> Response {
    match render(t) {
        Ok(h) => Html(h).into_response(),
        Err(r) => r,
    }
}

/// `{path}?notice=...`: a redirect that carries its outcome, signed
/// (`runtime::http::notice_query`).
pub(super) fn with_notice(st: &WebState, path: &str, text: &str) -> Response {
    Redirect::to(&format!("{path}?{}", notice_query(&st.api.ports.signer, text))).into_response()
}

/// An API refusal in words for the page (what the API's problem document says).
pub(super) fn problem(e: ApiError) -> String {
    match e.detail() {
        (d, errors) if errors.is_empty() => d,
        (d, errors) => format!("{d}: {}", errors.join("; ")),
    }
}
