//! Browser sessions of the web inbox.
//!
//! - Sign-in: a one-time link (`mailroom login-link USER`, 15 minutes, used once) or the
//!   OIDC authorization-code flow with PKCE (the Cognito hosted UI in AWS, `oidc.rs`).
//! - The session: a random id in a cookie (`mr_session`: HttpOnly, SameSite=Lax, Secure
//!   on https, path `/app`), its item holding the user, the expiry and the CSRF token.
//!   Only the id's hash is stored, so a table dump holds no usable session.
//! - CSRF: every state-changing request carries the session's token, in the
//!   `X-CSRF-Token` header (htmx sends it from the page) or a `_csrf` form field; it is
//!   compared in constant time. State changes are POST only.
//! - Expiry: 12 hours. An expired session sends a page load to the sign-in page and an
//!   htmx request an `HX-Redirect` there; drafts live in the browser (`app.js`), so none
//!   is lost.

use crate::keys;
use crate::keys::item_str as s;
use crate::runtime::ports::Ports;
use axum::http::HeaderMap;
use chrono::{DateTime, Duration, Utc};
use mailroom_core::sha256;
use mailroom_store::{Cond, StoreError};
use serde_json::json;

pub const COOKIE: &str = "mr_session";
/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::hours(12);
/// How long a sign-in link is valid.
pub const LINK_TTL: Duration = Duration::minutes(15);

fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

fn hashed(token: &str) -> String {
    sha256(token.as_bytes()).to_string()
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub email: String,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Makes a one-time sign-in link for `email` (the caller checked it is a user).
pub async fn login_link(ports: &Ports, public_url: &str, email: &str) -> Result<String, StoreError> {
    let token = random_token();
    let mut item = keys::login_link_key(&hashed(&token)).item();
    item.insert("email".into(), json!(email.to_lowercase()));
    item.insert("expires_at".into(), json!((ports.clock.now() + LINK_TTL).timestamp()));
    item.insert("ttl".into(), json!((ports.clock.now() + LINK_TTL).timestamp()));
    ports.table.put(item, Some(Cond::NotExists)).await?;
    Ok(format!("{}/app/login/{token}", public_url.trim_end_matches('/')))
}

/// Uses a sign-in link: the email it was made for, once, while it is valid.
pub async fn redeem_link(ports: &Ports, token: &str) -> Result<Option<String>, StoreError> {
    if token.len() != 64 || !token.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let key = keys::login_link_key(&hashed(token));
    let Some(item) = ports.table.get(&key).await? else { return Ok(None) };
    // Single use: whoever deletes it first signs in.
    match ports.table.delete(&key, Some(Cond::Exists)).await {
        Ok(()) => {}
        Err(StoreError::ConditionFailed) => return Ok(None),
        Err(e) => return Err(e),
    }
    let valid = item
        .get("expires_at")
        .and_then(serde_json::Value::as_i64)
        .is_some_and(|t| t > ports.clock.now().timestamp());
    Ok(s(&item, "email").filter(|_| valid))
}

/// Starts a session for `email`; returns the cookie value (the session id).
pub async fn start(ports: &Ports, email: &str) -> Result<String, StoreError> {
    let sid = random_token();
    let now = ports.clock.now();
    let mut item = keys::session_key(&hashed(&sid)).item();
    item.insert("email".into(), json!(email.to_lowercase()));
    item.insert("csrf".into(), json!(random_token()));
    item.insert("created_at".into(), json!(now.to_rfc3339()));
    item.insert("expires_at".into(), json!((now + SESSION_TTL).timestamp()));
    item.insert("ttl".into(), json!((now + SESSION_TTL).timestamp()));
    ports.table.put(item, Some(Cond::NotExists)).await?;
    Ok(sid)
}

/// The session a request's cookie names, if it is valid.
pub async fn current(ports: &Ports, headers: &HeaderMap) -> Result<Option<Session>, StoreError> {
    let Some(sid) = cookie(headers, COOKIE) else { return Ok(None) };
    if sid.len() != 64 {
        return Ok(None);
    }
    let Some(item) = ports.table.get(&keys::session_key(&hashed(&sid))).await? else { return Ok(None) };
    let expires = item.get("expires_at").and_then(serde_json::Value::as_i64).unwrap_or(0);
    if expires <= ports.clock.now().timestamp() {
        return Ok(None);
    }
    Ok(Some(Session {
        email: s(&item, "email").unwrap_or_default(),
        csrf: s(&item, "csrf").unwrap_or_default(),
        expires_at: DateTime::from_timestamp(expires, 0).unwrap_or_default(),
    }))
}

/// Ends the session a request's cookie names.
pub async fn end(ports: &Ports, headers: &HeaderMap) -> Result<(), StoreError> {
    if let Some(sid) = cookie(headers, COOKIE) {
        ports.table.delete(&keys::session_key(&hashed(&sid)), None).await?;
    }
    Ok(())
}

/// Whether a state-changing request carries the session's CSRF token (header or form).
pub fn csrf_ok(session: &Session, headers: &HeaderMap, form_token: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    let given = headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).or(form_token).unwrap_or_default();
    !session.csrf.is_empty() && bool::from(given.as_bytes().ct_eq(session.csrf.as_bytes()))
}

/// The `Set-Cookie` value of a session (`None`: clears it).
pub fn set_cookie(sid: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match sid {
        Some(v) => format!(
            "{COOKIE}={v}; Path=/app; HttpOnly; SameSite=Lax; Max-Age={}{secure}",
            SESSION_TTL.num_seconds()
        ),
        None => format!("{COOKIE}=; Path=/app; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    }
}

/// A cookie's value. Written here rather than with a cookie crate: one name looked up in
/// one header, values we wrote ourselves (hex).
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(axum::http::header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|v| {
        v.split(';').find_map(|pair| {
            let (k, val) = pair.trim().split_once('=')?;
            (k == name).then(|| val.trim().to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_and_set_safely() {
        let mut h = HeaderMap::new();
        h.insert("cookie", "a=1; mr_session=abc; b=2".parse().unwrap());
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "missing"), None);
        let c = set_cookie(Some("x"), true);
        assert!(
            c.contains("HttpOnly")
                && c.contains("SameSite=Lax")
                && c.contains("Secure")
                && c.contains("Path=/app")
        );
        assert!(!set_cookie(Some("x"), false).contains("Secure"));
    }

    #[tokio::test]
    async fn links_are_single_use_and_sessions_end() {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::embedded(dir.path()).unwrap();
        let link = login_link(&ports, "http://x", "Ann@Acme.example").await.unwrap();
        let token = link.rsplit('/').next().unwrap().to_string();
        assert_eq!(redeem_link(&ports, &token).await.unwrap().as_deref(), Some("ann@acme.example"));
        assert_eq!(redeem_link(&ports, &token).await.unwrap(), None, "a link works once");
        let sid = start(&ports, "ann@acme.example").await.unwrap();
        let mut h = HeaderMap::new();
        h.insert("cookie", format!("{COOKIE}={sid}").parse().unwrap());
        let s = current(&ports, &h).await.unwrap().unwrap();
        assert!(csrf_ok(&s, &HeaderMap::new(), Some(&s.csrf)));
        assert!(!csrf_ok(&s, &HeaderMap::new(), Some("nope")));
        assert!(!csrf_ok(&s, &HeaderMap::new(), None));
        end(&ports, &h).await.unwrap();
        assert!(current(&ports, &h).await.unwrap().is_none());
    }
}
