//! Microsoft Graph for Outlook mailboxes: change-notification subscriptions, delta queries
//! per folder, and the raw MIME of a message (docs/protocols.md §2).
//!
//! Throttling is handled here, once: 429 and 503 are retried after `Retry-After` (which
//! Graph sends as fractional seconds, e.g. `2.128`), a bounded number of times. Outlook
//! allows 4 concurrent requests per app and mailbox, so every request for a mailbox takes
//! a permit from that mailbox's semaphore, shared by every client in the process.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use thiserror::Error;
use tokio::sync::Semaphore;
use url::Url;

/// Outlook's longest subscription lifetime (just under 3 days).
pub const MAX_SUBSCRIPTION_MINUTES: i64 = 4230;
/// Outlook's limit of requests in flight per app and mailbox.
pub const MAX_CONCURRENT_PER_MAILBOX: usize = 4;
/// Messages per delta page we ask for (`Prefer: odata.maxpagesize`).
pub const DELTA_PAGE_SIZE: u32 = 50;
/// The largest raw message we download; Exchange Online's own limit is 150 MB.
pub const MAX_MIME_BYTES: usize = 64 * 1024 * 1024;
/// Asks Graph for ids that survive a move between folders.
pub const PREFER_IMMUTABLE_ID: &str = "IdType=\"ImmutableId\"";
const DELTA_SELECT: &str = "id,internetMessageId,receivedDateTime,conversationId";

/// The two well-known folders Mailroom follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MailFolder {
    Inbox,
    SentItems,
}

impl MailFolder {
    pub const ALL: [MailFolder; 2] = [MailFolder::Inbox, MailFolder::SentItems];

    /// Graph's well-known folder name.
    pub fn as_str(self) -> &'static str {
        match self {
            MailFolder::Inbox => "inbox",
            MailFolder::SentItems => "sentitems",
        }
    }

    pub fn parse(s: &str) -> Option<MailFolder> {
        match s.to_ascii_lowercase().as_str() {
            "inbox" => Some(MailFolder::Inbox),
            "sentitems" | "sent" => Some(MailFolder::SentItems),
            _ => None,
        }
    }

    /// The subscription resource: a GUID user id, never a UPN (apostrophes break them).
    pub fn resource(self, user_id: &str) -> String {
        format!("users/{user_id}/mailFolders('{}')/messages", self.as_str())
    }
}

#[derive(Debug, Error)]
pub enum GraphError {
    #[error(
        "Graph refused the access token (401 {code}): refresh the token; if that fails, connect the mailbox again"
    )]
    Unauthorized { code: String },
    #[error(
        "Graph refused access (403 {code}: {message}): check the app's Mail.Read consent and the mailbox's licence"
    )]
    Forbidden { code: String, message: String },
    #[error("Graph is throttling this mailbox ({status}); try again after {retry_after:?}")]
    Throttled { status: u16, retry_after: Option<Duration> },
    #[error("the delta token expired ({status} {code}): restart the folder's delta from the base URL")]
    SyncStateGone { status: u16, code: String },
    #[error("not found (404 {code}): {message}")]
    NotFound { code: String, message: String },
    #[error("Graph answered {status} {code}: {message}")]
    Status { status: u16, code: String, message: String },
    #[error("the message is larger than {MAX_MIME_BYTES} bytes; skip it")]
    TooLarge,
    #[error("cannot reach Graph at {url}: {message}; retry later")]
    Network { url: String, message: String },
    #[error("unexpected answer from Graph: {0}")]
    Protocol(String),
}

impl GraphError {
    /// A failure the next attempt may not have (network, 5xx, throttling).
    pub fn is_transient(&self) -> bool {
        match self {
            GraphError::Throttled { .. } | GraphError::Network { .. } => true,
            GraphError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// How throttling and network failures are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first wait when the server gives no `Retry-After`; doubled every retry.
    pub base_backoff: Duration,
    /// Longer waits are not slept through here: the error goes back to the caller, which
    /// can requeue the work instead of holding a Lambda.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 4,
            base_backoff: Duration::from_millis(500),
            max_wait: Duration::from_secs(30),
        }
    }
}

/// `Retry-After` as Graph sends it: seconds, possibly fractional, else an HTTP-date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?;
    Some((at.with_timezone(&Utc) - now).to_std().unwrap_or(Duration::ZERO))
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy.base_backoff.saturating_mul(1u32 << attempt.min(16));
    // Jitter, so that parallel workers throttled together do not come back together.
    let jitter = exp.mul_f64(rand::random::<f64>() * 0.25);
    exp.saturating_add(jitter)
}

/// Compares a notification's `clientState` with the stored one in constant time, so that
/// a forger cannot learn it byte by byte from response times.
pub fn client_state_matches(received: &str, stored: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    received.as_bytes().ct_eq(stored).into()
}

/// A fresh `clientState`: 256 random bits, hex (64 characters; Graph allows 128).
pub fn new_client_state() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The permits of one mailbox, shared process-wide (several syncs and the subscription
/// renewal may touch the same mailbox at once in `mailroom serve`).
fn mailbox_permits(user_id: &str) -> Arc<Semaphore> {
    static PERMITS: LazyLock<Mutex<HashMap<String, Arc<Semaphore>>>> = LazyLock::new(Default::default);
    let mut map = PERMITS.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(user_id.to_ascii_lowercase())
        .or_insert_with(|| Arc::new(Semaphore::new(MAX_CONCURRENT_PER_MAILBOX)))
        .clone()
}

/// The signed-in user, as `/me` describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Me {
    pub id: String,
    #[serde(default)]
    pub mail: Option<String>,
    #[serde(default)]
    pub user_principal_name: Option<String>,
}

/// What a new subscription asks for.
#[derive(Debug, Clone)]
pub struct NewSubscription<'a> {
    pub folder: MailFolder,
    pub notification_url: &'a str,
    pub lifecycle_url: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
    /// Random, at most 128 characters; Graph sends it back with every notification.
    pub client_state: &'a str,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subscription {
    pub id: String,
    #[serde(default)]
    pub resource: String,
    #[serde(rename = "expirationDateTime")]
    pub expires_at: DateTime<Utc>,
}

/// One created message in a delta page (`@removed` entries are left out).
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaMessage {
    /// Immutable (we ask for it with `Prefer: IdType="ImmutableId"`).
    pub id: String,
    pub internet_message_id: Option<String>,
    pub received_at: Option<DateTime<Utc>>,
    pub conversation_id: Option<String>,
}

/// Where a delta round goes next.
#[derive(Debug, Clone, PartialEq)]
pub enum DeltaNext {
    /// More pages: fetch this URL now.
    NextLink(String),
    /// The last page: store this URL whole and replay it verbatim next time.
    DeltaLink(String),
}

#[derive(Debug, Clone)]
pub struct DeltaPage {
    pub messages: Vec<DeltaMessage>,
    /// `@removed` entries seen (and ignored: Mailroom keeps what it has ingested).
    pub removed: u32,
    pub next: DeltaNext,
}

/// One request to send.
struct Call<'a> {
    method: Method,
    url: Url,
    prefer: &'a [&'a str],
    body: Option<&'a Value>,
    /// A body that is not JSON: content type and bytes (sendMail's base64 MIME).
    raw: Option<(&'a str, &'a [u8])>,
    /// The most response bytes read.
    limit: usize,
}

impl<'a> Call<'a> {
    fn new(method: Method, url: Url) -> Call<'a> {
        Call { method, url, prefer: &[], body: None, raw: None, limit: 16 * 1024 * 1024 }
    }
    fn prefer(mut self, prefer: &'a [&'a str]) -> Call<'a> {
        self.prefer = prefer;
        self
    }
    fn body(mut self, body: &'a Value) -> Call<'a> {
        self.body = Some(body);
        self
    }
    fn limit(mut self, limit: usize) -> Call<'a> {
        self.limit = limit;
        self
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// A Graph client bound to one API base (`https://graph.microsoft.com`, or a mock).
#[derive(Clone)]
pub struct GraphClient {
    http: reqwest::Client,
    base: Url,
    retry: RetryPolicy,
}

impl GraphClient {
    pub fn new(api_base: &str) -> Result<GraphClient, GraphError> {
        let base = Url::parse(api_base)
            .map_err(|e| GraphError::Protocol(format!("Graph API base {api_base:?} is not a URL: {e}")))?;
        let http = reqwest::Client::builder()
            // Never follow a redirect with the bearer token attached.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| GraphError::Protocol(format!("building the HTTP client: {e}")))?;
        Ok(GraphClient { http, base, retry: RetryPolicy::default() })
    }

    /// One client per API base for the whole process, so that connections are reused.
    pub fn shared(api_base: &str) -> Result<GraphClient, GraphError> {
        static CLIENTS: LazyLock<Mutex<HashMap<String, GraphClient>>> = LazyLock::new(Default::default);
        let mut map = CLIENTS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(api_base) {
            return Ok(c.clone());
        }
        let c = GraphClient::new(api_base)?;
        map.insert(api_base.to_string(), c.clone());
        Ok(c)
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> GraphClient {
        self.retry = retry;
        self
    }

    fn url(&self, segments: &[&str]) -> Result<Url, GraphError> {
        let mut u = self.base.clone();
        u.path_segments_mut()
            .map_err(|_| GraphError::Protocol(format!("Graph API base {} cannot take a path", self.base)))?
            .pop_if_empty()
            .push("v1.0")
            .extend(segments);
        Ok(u)
    }

    /// Links Graph hands back (`nextLink`, `deltaLink`) are only followed on the API's own
    /// origin: the bearer token goes with them.
    fn check_origin(&self, link: &str) -> Result<Url, GraphError> {
        let u = Url::parse(link).map_err(|e| GraphError::Protocol(format!("link {link:?}: {e}")))?;
        if u.origin() != self.base.origin() {
            return Err(GraphError::Protocol(format!(
                "link {link:?} leaves the Graph API ({}); not following it",
                self.base
            )));
        }
        Ok(u)
    }

    /// Sends one request with retries, holding a permit of the mailbox while it is in
    /// flight (not while waiting out a `Retry-After`).
    async fn send(&self, user_id: &str, token: &str, call: Call<'_>) -> Result<Reply, GraphError> {
        let Call { method, url, prefer, body, raw, limit } = call;
        let permits = mailbox_permits(user_id);
        // Only requests without side effects are retried after a network failure: a
        // subscription POST that timed out may have been created.
        let idempotent = method != Method::POST;
        let mut attempt = 0u32;
        loop {
            let outcome = {
                let _permit = permits
                    .acquire()
                    .await
                    .map_err(|_| GraphError::Protocol("mailbox permits closed".into()))?;
                let mut rb = self.http.request(method.clone(), url.clone()).bearer_auth(token);
                for p in prefer {
                    rb = rb.header("Prefer", *p);
                }
                if let Some(b) = body {
                    rb = rb.json(b);
                }
                if let Some((content_type, bytes)) = raw {
                    rb = rb.header(reqwest::header::CONTENT_TYPE, content_type).body(bytes.to_vec());
                }
                match rb.send().await {
                    Ok(resp) => read_limited(resp, limit).await,
                    Err(e) => Err(ReadError::Http(e)),
                }
            };
            let wait = match outcome {
                Ok(reply)
                    if reply.status == StatusCode::TOO_MANY_REQUESTS
                        || reply.status == StatusCode::SERVICE_UNAVAILABLE =>
                {
                    let hinted = reply
                        .headers
                        .get(RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, Utc::now()));
                    let wait = hinted.unwrap_or_else(|| backoff(&self.retry, attempt));
                    tracing::warn!(
                        user = user_id,
                        status = reply.status.as_u16(),
                        ?wait,
                        attempt,
                        "Graph throttled"
                    );
                    if attempt >= self.retry.max_retries || wait > self.retry.max_wait {
                        return Err(GraphError::Throttled {
                            status: reply.status.as_u16(),
                            retry_after: hinted,
                        });
                    }
                    wait
                }
                Ok(reply) => return check(reply),
                Err(ReadError::TooLarge) => return Err(GraphError::TooLarge),
                Err(ReadError::Http(e)) => {
                    let err = GraphError::Network { url: redact(&url), message: e.to_string() };
                    if !idempotent || attempt >= self.retry.max_retries {
                        return Err(err);
                    }
                    tracing::warn!(user = user_id, error = %err, attempt, "Graph request failed; retrying");
                    backoff(&self.retry, attempt)
                }
            };
            attempt += 1;
            tokio::time::sleep(wait).await;
        }
    }

    async fn json<T: for<'de> Deserialize<'de>>(
        &self,
        user_id: &str,
        token: &str,
        call: Call<'_>,
    ) -> Result<T, GraphError> {
        let reply = self.send(user_id, token, call).await?;
        serde_json::from_slice(&reply.body)
            .map_err(|e| GraphError::Protocol(format!("bad JSON from Graph: {e}")))
    }

    /// The signed-in user (its GUID goes into subscription resources).
    pub async fn me(&self, token: &str) -> Result<Me, GraphError> {
        let mut url = self.url(&["me"])?;
        url.set_query(Some("$select=id,mail,userPrincipalName"));
        // No mailbox is known yet: `/me` is its own permit bucket.
        self.json("me", token, Call::new(Method::GET, url)).await
    }

    /// Creates a `created` subscription on one folder. Graph validates both URLs before it
    /// answers (a failed validation is a 400).
    pub async fn create_subscription(
        &self,
        token: &str,
        user_id: &str,
        s: &NewSubscription<'_>,
    ) -> Result<Subscription, GraphError> {
        let mut body = json!({
            "changeType": "created",
            "notificationUrl": s.notification_url,
            "resource": s.folder.resource(user_id),
            "expirationDateTime": graph_time(s.expires_at),
            "clientState": s.client_state,
        });
        if let (Some(l), Some(m)) = (s.lifecycle_url, body.as_object_mut()) {
            m.insert("lifecycleNotificationUrl".into(), json!(l));
        }
        let call = Call::new(Method::POST, self.url(&["subscriptions"])?).body(&body);
        self.json(user_id, token, call).await
    }

    /// Extends a subscription (which also reauthorizes it). `NotFound` when Graph dropped it:
    /// create a new one.
    pub async fn renew_subscription(
        &self,
        token: &str,
        user_id: &str,
        id: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<Subscription, GraphError> {
        let body = json!({ "expirationDateTime": graph_time(expires_at) });
        let call = Call::new(Method::PATCH, self.url(&["subscriptions", id])?).body(&body);
        self.json(user_id, token, call).await
    }

    /// Deletes a subscription; one that is already gone is fine.
    pub async fn delete_subscription(&self, token: &str, user_id: &str, id: &str) -> Result<(), GraphError> {
        let call = Call::new(Method::DELETE, self.url(&["subscriptions", id])?);
        match self.send(user_id, token, call).await {
            Ok(_) | Err(GraphError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The first URL of a folder's delta: created messages only, the fields we need, and
    /// optionally only those received since `since` (Graph caps a filtered round at 5,000).
    pub fn delta_start(
        &self,
        user_id: &str,
        folder: MailFolder,
        since: Option<DateTime<Utc>>,
    ) -> Result<String, GraphError> {
        let mut url = self.url(&["users", user_id, "mailFolders", folder.as_str(), "messages", "delta"])?;
        let mut q = format!("changeType=created&$select={DELTA_SELECT}");
        if let Some(t) = since {
            q.push_str(&format!("&$filter=receivedDateTime ge {}", graph_time(t)));
        }
        url.set_query(Some(&q));
        Ok(url.into())
    }

    /// One page of a delta round: `url` is `delta_start`, a `nextLink` or a stored
    /// `deltaLink`, replayed verbatim. `SyncStateGone` means the stored link expired.
    pub async fn delta_page(&self, token: &str, user_id: &str, url: &str) -> Result<DeltaPage, GraphError> {
        let url = self.check_origin(url)?;
        let page_size = format!("odata.maxpagesize={DELTA_PAGE_SIZE}");
        let prefer = [page_size.as_str(), PREFER_IMMUTABLE_ID];
        let body: Value = self.json(user_id, token, Call::new(Method::GET, url).prefer(&prefer)).await?;
        parse_delta(&body)
    }

    /// sendMail with a finished MIME message: `Content-Type: text/plain`, the body the
    /// base64 of the MIME (protocols.md 2.6). Graph answers 202 and files a copy in Sent
    /// Items, keeping our Message-ID.
    pub async fn send_mail(&self, token: &str, user_id: &str, mime: &[u8]) -> Result<(), GraphError> {
        use base64::Engine;
        let url = self.url(&["users", user_id, "sendMail"])?;
        let b64 = base64::engine::general_purpose::STANDARD.encode(mime);
        let mut call = Call::new(Method::POST, url);
        call.raw = Some(("text/plain", b64.as_bytes()));
        self.send(user_id, token, call).await.map(drop)
    }

    /// The raw MIME of a message, as bytes (the response's Content-Type is not to be
    /// trusted); `TooLarge` past `limit` bytes (at most [`MAX_MIME_BYTES`]), read no further.
    pub async fn message_mime(
        &self,
        token: &str,
        user_id: &str,
        id: &str,
        limit: usize,
    ) -> Result<Bytes, GraphError> {
        let url = self.url(&["users", user_id, "messages", id, "$value"])?;
        let reply = self
            .send(
                user_id,
                token,
                Call::new(Method::GET, url).prefer(&[PREFER_IMMUTABLE_ID]).limit(limit.min(MAX_MIME_BYTES)),
            )
            .await?;
        Ok(reply.body)
    }

    /// A message's internet headers, as a header block (`internetMessageHeaders`): what is
    /// kept of a message too large to fetch.
    pub async fn message_headers(&self, token: &str, user_id: &str, id: &str) -> Result<Vec<u8>, GraphError> {
        let mut url = self.url(&["users", user_id, "messages", id])?;
        url.set_query(Some("$select=internetMessageHeaders"));
        let v: Value =
            self.json(user_id, token, Call::new(Method::GET, url).prefer(&[PREFER_IMMUTABLE_ID])).await?;
        let mut out = String::new();
        for h in v["internetMessageHeaders"].as_array().into_iter().flatten() {
            if let (Some(n), Some(val)) = (h["name"].as_str(), h["value"].as_str()) {
                out.push_str(&format!("{n}: {val}\r\n"));
            }
        }
        Ok(out.into_bytes())
    }
}

enum ReadError {
    Http(reqwest::Error),
    TooLarge,
}

/// Reads the whole body, refusing more than `limit` bytes.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Reply, ReadError> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        if buf.len() + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Reply { status, headers, body: Bytes::from(buf) })
}

/// A URL without its query, for messages (delta tokens are credentials of a kind).
fn redact(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

fn graph_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Maps a non-2xx answer to what the caller should do.
fn check(reply: Reply) -> Result<Reply, GraphError> {
    let status = reply.status;
    if status.is_success() {
        return Ok(reply);
    }
    let (code, message) = error_body(&reply.body);
    let s = status.as_u16();
    Err(if status == StatusCode::GONE || code.eq_ignore_ascii_case("syncStateNotFound") {
        GraphError::SyncStateGone { status: s, code }
    } else if status == StatusCode::UNAUTHORIZED {
        GraphError::Unauthorized { code }
    } else if status == StatusCode::FORBIDDEN {
        GraphError::Forbidden { code, message }
    } else if status == StatusCode::NOT_FOUND {
        GraphError::NotFound { code, message }
    } else {
        GraphError::Status { status: s, code, message }
    })
}

/// Graph's `{"error":{"code","message"}}`, or the start of whatever came instead.
fn error_body(body: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    match (e["code"].as_str(), e["message"].as_str()) {
        (Some(c), m) => (c.to_string(), m.unwrap_or_default().to_string()),
        _ => (String::new(), String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()),
    }
}

fn parse_delta(body: &Value) -> Result<DeltaPage, GraphError> {
    let items = body["value"]
        .as_array()
        .ok_or_else(|| GraphError::Protocol("delta page without a value array".into()))?;
    let mut messages = Vec::with_capacity(items.len());
    let mut removed = 0;
    for it in items {
        if it.get("@removed").is_some() {
            removed += 1;
            continue;
        }
        let Some(id) = it["id"].as_str() else {
            return Err(GraphError::Protocol("delta item without an id".into()));
        };
        let s = |k: &str| it[k].as_str().map(str::to_string);
        messages.push(DeltaMessage {
            id: id.to_string(),
            internet_message_id: s("internetMessageId"),
            received_at: it["receivedDateTime"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc)),
            conversation_id: s("conversationId"),
        });
    }
    let next = match (body["@odata.nextLink"].as_str(), body["@odata.deltaLink"].as_str()) {
        (Some(n), _) => DeltaNext::NextLink(n.to_string()),
        (None, Some(d)) => DeltaNext::DeltaLink(d.to_string()),
        (None, None) => {
            return Err(GraphError::Protocol("delta page with neither nextLink nor deltaLink".into()));
        }
    };
    Ok(DeltaPage { messages, removed, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_fractional_seconds_or_a_date() {
        let now = DateTime::parse_from_rfc3339("2026-11-18T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_retry_after("2.128", now), Some(Duration::from_millis(2128)));
        assert_eq!(parse_retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 18 Nov 2026 12:00:05 GMT", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("Wed, 18 Nov 2026 11:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn client_states_compare_whole() {
        let s = new_client_state();
        assert_eq!(s.len(), 64);
        assert!(client_state_matches(&s, s.as_bytes()));
        assert!(!client_state_matches(&s[..63], s.as_bytes()));
        assert!(!client_state_matches("", s.as_bytes()));
        assert_ne!(s, new_client_state());
    }

    #[test]
    fn backoff_grows() {
        let p = RetryPolicy::default();
        assert!(backoff(&p, 0) >= Duration::from_millis(500));
        assert!(backoff(&p, 3) >= Duration::from_secs(4));
    }

    #[test]
    fn delta_pages_skip_removed_and_need_a_link() {
        let page = parse_delta(&json!({
            "value": [
                {"id": "A", "internetMessageId": "<a@x>", "receivedDateTime": "2026-11-18T10:00:00Z", "conversationId": "C"},
                {"id": "B", "@removed": {"reason": "deleted"}}
            ],
            "@odata.deltaLink": "https://graph.microsoft.com/v1.0/users/u/mailFolders/inbox/messages/delta?$deltatoken=x"
        }))
        .unwrap();
        assert_eq!((page.messages.len(), page.removed), (1, 1));
        assert_eq!(page.messages[0].conversation_id.as_deref(), Some("C"));
        assert!(matches!(page.next, DeltaNext::DeltaLink(ref l) if l.ends_with("$deltatoken=x")));
        assert!(parse_delta(&json!({"value": []})).is_err());
    }

    #[test]
    fn errors_are_typed() {
        let r = |s: u16, b: &str| Reply {
            status: StatusCode::from_u16(s).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(b.to_string()),
        };
        assert!(matches!(check(r(410, "")), Err(GraphError::SyncStateGone { .. })));
        assert!(matches!(
            check(r(400, r#"{"error":{"code":"SyncStateNotFound","message":"x"}}"#)),
            Err(GraphError::SyncStateGone { status: 400, .. })
        ));
        assert!(matches!(check(r(401, "")), Err(GraphError::Unauthorized { .. })));
        assert!(matches!(check(r(404, "")), Err(GraphError::NotFound { .. })));
        assert!(matches!(check(r(500, "oops")), Err(GraphError::Status { status: 500, .. })));
    }

    #[test]
    fn links_stay_on_the_api_origin() {
        let c = GraphClient::new("http://127.0.0.1:8080").unwrap();
        assert!(c.check_origin("http://127.0.0.1:8080/v1.0/x?$deltatoken=1").is_ok());
        assert!(c.check_origin("http://evil.test/v1.0/x").is_err());
        let start = c.delta_start("u-1", MailFolder::SentItems, None).unwrap();
        assert_eq!(
            start,
            "http://127.0.0.1:8080/v1.0/users/u-1/mailFolders/sentitems/messages/delta?changeType=created&$select=id,internetMessageId,receivedDateTime,conversationId"
        );
        let since = DateTime::parse_from_rfc3339("2026-11-01T00:00:00Z").unwrap().with_timezone(&Utc);
        assert!(
            c.delta_start("u-1", MailFolder::Inbox, Some(since))
                .unwrap()
                .ends_with("&$filter=receivedDateTime%20ge%202026-11-01T00:00:00Z")
        );
    }
}
