//! What the settings pages share: the admin-only form post (signed-in, admin, CSRF token
//! checked, before the handler runs), rendering, and the signed outcome notice a change
//! redirects with. Anyone but an admin gets the 404 page, as for anything they may not see.

use super::WebState;
use super::ctx::*;
use crate::api::ApiError;
use crate::runtime::http::notice_query;
use askama::Template;
use axum::Form;
use axum::extract::{FromRequest, Request};
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

/// An API refusal in words for the page.
pub(super) fn problem(e: ApiError) -> String {
    match e {
        ApiError::Invalid(d, errors) if !errors.is_empty() => format!("{d}: {}", errors.join("; ")),
        ApiError::Invalid(d, _)
        | ApiError::BadRequest(d)
        | ApiError::Conflict(d)
        | ApiError::NotFound(d)
        | ApiError::Forbidden(d) => d,
        other => format!("{other:?}"),
    }
}
