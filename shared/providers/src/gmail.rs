//! The Gmail API calls a mailbox sync needs (users.watch/stop, history.list,
//! messages.get?format=raw, messages.list, getProfile), on reqwest with a configurable
//! base URL so tests point it at a mock.
//!
//! Gmail serialises int64s (historyId, internalDate, expiration) as JSON strings: they
//! are parsed as u64/i64 from strings (numbers accepted too), never through f64.
//! Throttling (429, and 403 with `userRateLimitExceeded`/`rateLimitExceeded`) and 5xx
//! are retried a bounded number of times, honouring `Retry-After`.

use base64::Engine;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::time::Duration;
use thiserror::Error;

pub const DEFAULT_API_BASE: &str = "https://gmail.googleapis.com";

#[derive(Debug, Error)]
pub enum GmailError {
    /// history.list answered 404: the start historyId is too old (Gmail keeps history
    /// for about a week, sometimes only hours). Run a full sync and re-baseline.
    #[error("history cursor {0} has expired (Gmail answered 404): a bounded full sync is needed")]
    HistoryExpired(u64),
    /// messages.get answered 404: the message was deleted since it was listed.
    #[error("message {0} is gone (deleted since it was listed)")]
    MessageGone(String),
    /// The access token was refused: refresh it and try again.
    #[error("Gmail refused the access token (401): refresh it and retry")]
    Unauthorized,
    /// Permission problem that retrying will not fix: a missing scope means the mailbox
    /// must be connected again with the right scopes; other reasons need an operator.
    #[error("Gmail refused the call (403 {reason}): {message}")]
    Forbidden { reason: String, message: String },
    /// Still throttled after the bounded retries.
    #[error("Gmail is throttling this mailbox ({reason}); retry after {retry_after:?}")]
    RateLimited { reason: String, retry_after: Option<Duration> },
    #[error("Gmail answered HTTP {status} to {what}: {message}")]
    Status { status: u16, what: String, message: String },
    #[error("cannot reach Gmail for {what}: {source}")]
    Network {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Gmail's answer to {what} is not what the API documents: {reason}")]
    Decode { what: String, reason: String },
}

impl GmailError {
    /// Whether a later attempt may work without anyone doing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GmailError::Unauthorized
                | GmailError::RateLimited { .. }
                | GmailError::Network { .. }
                | GmailError::Status { status: 500..=599, .. }
        )
    }

    /// A 403 for missing OAuth scopes: the user must connect the mailbox again.
    pub fn needs_reconnect(&self) -> bool {
        matches!(self, GmailError::Forbidden { reason, .. }
            if reason == "insufficientPermissions" || reason == "ACCESS_TOKEN_SCOPE_INSUFFICIENT")
    }
}

/// Retries of throttled and failed (5xx) calls.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// First backoff when the server gives no Retry-After; doubles each retry.
    pub base_delay: Duration,
    /// No single wait is longer; a Retry-After beyond it ends the retries (the caller's
    /// queue redelivers later instead of holding a Lambda).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

fn de_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => s.parse().map_err(serde::de::Error::custom),
        Value::Number(n) => n.as_u64().ok_or_else(|| serde::de::Error::custom("not a u64")),
        v => Err(serde::de::Error::custom(format!("expected an int64 string, got {v}"))),
    }
}

fn de_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s.parse().map(Some).map_err(serde::de::Error::custom),
        Some(Value::Number(n)) => Ok(n.as_i64()),
        Some(v) => Err(serde::de::Error::custom(format!("expected an int64 string, got {v}"))),
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Watch {
    #[serde(deserialize_with = "de_u64")]
    pub history_id: u64,
    /// Epoch milliseconds.
    #[serde(deserialize_with = "de_u64")]
    pub expiration: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub email_address: String,
    #[serde(deserialize_with = "de_u64")]
    pub history_id: u64,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MessageRef {
    pub id: String,
    #[serde(default)]
    pub thread_id: Option<String>,
    #[serde(default)]
    pub label_ids: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct Added {
    message: MessageRef,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRecord {
    #[serde(deserialize_with = "de_u64")]
    pub id: u64,
    #[serde(default)]
    messages_added: Vec<Added>,
}

impl HistoryRecord {
    pub fn messages_added(&self) -> impl Iterator<Item = &MessageRef> {
        self.messages_added.iter().map(|a| &a.message)
    }
}

/// One page of history.list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    /// Absent when nothing changed.
    #[serde(default)]
    pub history: Vec<HistoryRecord>,
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// The mailbox's current historyId: the next cursor, once this is the last page.
    #[serde(deserialize_with = "de_u64")]
    pub history_id: u64,
}

/// One page of messages.list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageListPage {
    #[serde(default)]
    pub messages: Vec<MessageRef>,
    #[serde(default)]
    pub next_page_token: Option<String>,
}

/// A message in `format=raw`, its RFC 2822 bytes decoded.
/// What messages.send answers.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SentMessage {
    pub id: String,
    #[serde(default)]
    pub thread_id: Option<String>,
    #[serde(default)]
    pub label_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RawMessage {
    pub id: String,
    pub thread_id: Option<String>,
    pub label_ids: Vec<String>,
    /// When Gmail received it, epoch ms.
    pub internal_date: Option<i64>,
    pub raw: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawWire {
    id: String,
    #[serde(default)]
    thread_id: Option<String>,
    #[serde(default)]
    label_ids: Vec<String>,
    #[serde(default, deserialize_with = "de_opt_i64")]
    internal_date: Option<i64>,
    raw: String,
}

/// Decodes base64url (the documented alphabet) or standard base64, padded or not.
pub fn decode_base64_any(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const CFG: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const URL: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CFG);
    const STD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CFG);
    let s = s.trim();
    if s.contains(['+', '/']) { STD.decode(s) } else { URL.decode(s) }
}

/// The Gmail API for one access token at a time (the caller refreshes tokens).
#[derive(Debug, Clone)]
pub struct GmailClient {
    http: reqwest::Client,
    base: String,
    retry: RetryPolicy,
}

impl GmailClient {
    /// `base`: `https://gmail.googleapis.com`, or a mock's URL.
    pub fn new(base: &str) -> Result<GmailClient, GmailError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| GmailError::Network { what: "building the HTTP client".into(), source: e })?;
        Ok(GmailClient { http, base: base.trim_end_matches('/').to_string(), retry: RetryPolicy::default() })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> GmailClient {
        self.retry = retry;
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}/gmail/v1/users/me/{path}", self.base)
    }

    /// users.watch without labelIds: every label, so both INBOX and SENT notify (the sync
    /// filters labels itself).
    pub async fn watch(&self, token: &str, topic: &str) -> Result<Watch, GmailError> {
        let body = serde_json::json!({ "topicName": topic });
        self.json(token, "users.watch", || self.http.post(self.url("watch")).json(&body)).await
    }

    pub async fn stop(&self, token: &str) -> Result<(), GmailError> {
        self.send(token, "users.stop", || self.http.post(self.url("stop"))).await.map(drop)
    }

    pub async fn profile(&self, token: &str) -> Result<Profile, GmailError> {
        self.json(token, "users.getProfile", || self.http.get(self.url("profile"))).await
    }

    /// One page of messageAdded history after `start`. 404 → `HistoryExpired`.
    pub async fn history_page(
        &self,
        token: &str,
        start: u64,
        page_token: Option<&str>,
    ) -> Result<HistoryPage, GmailError> {
        let mut q: Vec<(&str, String)> = vec![
            ("startHistoryId", start.to_string()),
            ("historyTypes", "messageAdded".into()),
            ("maxResults", "500".into()),
        ];
        if let Some(p) = page_token {
            q.push(("pageToken", p.to_string()));
        }
        match self.json(token, "users.history.list", || self.http.get(self.url("history")).query(&q)).await {
            Err(GmailError::Status { status: 404, .. }) => Err(GmailError::HistoryExpired(start)),
            r => r,
        }
    }

    /// One page of messages.list with a label and a search query (`newer_than:7d`).
    pub async fn messages_page(
        &self,
        token: &str,
        label: &str,
        query: &str,
        page_token: Option<&str>,
    ) -> Result<MessageListPage, GmailError> {
        let mut q: Vec<(&str, String)> =
            vec![("labelIds", label.into()), ("q", query.into()), ("maxResults", "500".into())];
        if let Some(p) = page_token {
            q.push(("pageToken", p.to_string()));
        }
        self.json(token, "users.messages.list", || self.http.get(self.url("messages")).query(&q)).await
    }

    /// messages.get?format=raw with the bytes decoded. 404 → `MessageGone`.
    pub async fn message_raw(&self, token: &str, id: &str) -> Result<RawMessage, GmailError> {
        // Gmail ids are hex; anything else is not sent into a URL path.
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(GmailError::Decode { what: "a message id".into(), reason: format!("{id:?}") });
        }
        let url = self.url(&format!("messages/{id}"));
        let w: RawWire = match self
            .json(token, "users.messages.get", || self.http.get(&url).query(&[("format", "raw")]))
            .await
        {
            Err(GmailError::Status { status: 404, .. }) => {
                return Err(GmailError::MessageGone(id.to_string()));
            }
            r => r?,
        };
        let raw = decode_base64_any(&w.raw).map_err(|e| GmailError::Decode {
            what: format!("message {id}"),
            reason: format!("raw is not base64url: {e}"),
        })?;
        Ok(RawMessage {
            id: w.id,
            thread_id: w.thread_id,
            label_ids: w.label_ids,
            internal_date: w.internal_date,
            raw,
        })
    }

    /// messages.send of a finished MIME message, in the Gmail thread `thread_id` when
    /// known (Gmail files it there only if the subject and References agree). Not retried
    /// here, whatever the answer: the caller's queue decides, knowing what was recorded.
    pub async fn send_raw(
        &self,
        token: &str,
        raw: &[u8],
        thread_id: Option<&str>,
    ) -> Result<SentMessage, GmailError> {
        let mut body =
            serde_json::json!({ "raw": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw) });
        if let Some(t) = thread_id {
            body["threadId"] = serde_json::json!(t);
        }
        let once = GmailClient { retry: RetryPolicy { max_retries: 0, ..self.retry }, ..self.clone() };
        once.json(token, "users.messages.send", || once.http.post(once.url("messages/send")).json(&body))
            .await
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        what: &str,
        req: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<T, GmailError> {
        let resp = self.send(token, what, req).await?;
        let bytes =
            resp.bytes().await.map_err(|e| GmailError::Network { what: what.to_string(), source: e })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| GmailError::Decode { what: what.to_string(), reason: e.to_string() })
    }

    /// Sends with the bearer token, retrying throttling and 5xx within the policy.
    async fn send(
        &self,
        token: &str,
        what: &str,
        req: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, GmailError> {
        let mut attempt = 0u32;
        loop {
            let resp = req()
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| GmailError::Network { what: what.to_string(), source: e })?;
            let status = resp.status().as_u16();
            if resp.status().is_success() {
                return Ok(resp);
            }
            let retry_after = retry_after(resp.headers());
            let body = resp.text().await.unwrap_or_default();
            let (reason, message) = error_reason(&body);
            let err = match status {
                401 => GmailError::Unauthorized,
                429 => {
                    GmailError::RateLimited { reason: reason.unwrap_or_else(|| "429".into()), retry_after }
                }
                403 if matches!(reason.as_deref(), Some("userRateLimitExceeded" | "rateLimitExceeded")) => {
                    GmailError::RateLimited { reason: reason.unwrap_or_default(), retry_after }
                }
                403 => GmailError::Forbidden { reason: reason.unwrap_or_default(), message },
                _ => GmailError::Status { status, what: what.to_string(), message },
            };
            let retryable =
                matches!(err, GmailError::RateLimited { .. } | GmailError::Status { status: 500..=599, .. });
            if !retryable || attempt >= self.retry.max_retries {
                return Err(err);
            }
            let backoff = self.retry.base_delay.saturating_mul(2u32.saturating_pow(attempt));
            let wait = retry_after.unwrap_or(backoff);
            if wait > self.retry.max_delay {
                return Err(err);
            }
            attempt += 1;
            tracing::warn!(what, status, ?wait, attempt, "Gmail asked us to slow down; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// `Retry-After` as seconds (fractional allowed) or an HTTP date.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_milliseconds().max(0);
    Some(Duration::from_millis(ms as u64))
}

/// The first `errors[].reason` (or `error.status`) and `error.message` of a Google error.
fn error_reason(body: &str) -> (Option<String>, String) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let e = &v["error"];
    let reason = e["errors"][0]["reason"]
        .as_str()
        .or_else(|| e["details"][0]["reason"].as_str())
        .or_else(|| e["status"].as_str())
        .map(str::to_string);
    let message =
        e["message"].as_str().map(str::to_string).unwrap_or_else(|| body.chars().take(200).collect());
    (reason, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_both_alphabets_with_and_without_padding() {
        let data = b"{\"emailAddress\":\"a@b.test\",\"historyId\":\"18446744073709551615\"}??>>";
        for e in [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ] {
            assert_eq!(decode_base64_any(&e.encode(data)).unwrap(), data);
        }
    }

    #[test]
    fn int64_strings_are_not_floats() {
        let p: HistoryPage = serde_json::from_str(r#"{"historyId":"18446744073709551615"}"#).unwrap();
        assert_eq!(p.history_id, u64::MAX);
        assert!(p.history.is_empty());
        let w: Watch =
            serde_json::from_str(r#"{"historyId":"1234567890","expiration":"1431990098200"}"#).unwrap();
        assert_eq!(w.expiration, 1_431_990_098_200);
    }

    #[test]
    fn retry_after_forms() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2.128".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(2128)));
        h.insert(reqwest::header::RETRY_AFTER, "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn google_error_reasons() {
        let (r, m) = error_reason(
            r#"{"error":{"code":429,"message":"User-rate limit exceeded","errors":[{"reason":"userRateLimitExceeded"}]}}"#,
        );
        assert_eq!((r.as_deref(), m.as_str()), (Some("userRateLimitExceeded"), "User-rate limit exceeded"));
    }
}
