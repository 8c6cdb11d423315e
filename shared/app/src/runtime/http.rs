//! What every HTTP edge shares: RFC 9457 problem responses and the bearer token.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An RFC 9457 problem response.
pub fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason(),
        "status": status.as_u16(),
        "detail": detail.into(),
    });
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
}

/// The token of an `Authorization: Bearer` header (scheme case-insensitive).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

const NOTICE_PURPOSE: &str = "page-notice";

/// The query (`notice=...&ns=...`) a redirect carries its outcome in, signed: a page
/// shows only notices we wrote, never text a crafted link puts in our pages.
pub fn notice_query(signer: &mailroom_core::ThreadSigner, text: &str) -> String {
    let enc: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();
    format!("notice={enc}&ns={}", signer.sign(NOTICE_PURPOSE, text))
}

/// The notice of a page's query, when its signature holds.
pub fn read_notice(signer: &mailroom_core::ThreadSigner, q: &[(String, String)]) -> Option<String> {
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (text, sig) = (get("notice")?, get("ns")?);
    signer.verify(NOTICE_PURPOSE, text, sig).then(|| text.to_string())
}

/// A router's answers for what it does not serve, problem+json like every other error:
/// 404 for an unknown path, 405 for a method the path does not take. The binaries put
/// these on their whole router (a merged router takes one fallback).
pub fn with_problem_fallbacks<S: Clone + Send + Sync + 'static>(r: axum::Router<S>) -> axum::Router<S> {
    r.fallback(no_route).method_not_allowed_fallback(wrong_method)
}

async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    problem(StatusCode::NOT_FOUND, format!("no route {method} {}", short_path(&uri)))
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    problem(StatusCode::METHOD_NOT_ALLOWED, format!("{} does not take {method}", short_path(&uri)))
}

/// The path as the caller sent it, cut at 200 characters (it is echoed back).
fn short_path(uri: &axum::http::Uri) -> String {
    uri.path().chars().take(200).collect()
}
