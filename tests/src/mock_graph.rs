//! A Microsoft identity platform + Graph mock, faithful to docs/protocols.md §2 and §7, on
//! 127.0.0.1:0.
//!
//! - Token endpoint `/{tenant}/oauth2/v2.0/token`: `refresh_token` and
//!   `authorization_code` grants. Every refresh rotates the refresh token and invalidates
//!   the old one; a revoked grant answers `invalid_grant` (AADSTS70008) or
//!   `interaction_required` (AADSTS50076). `/{tenant}/oauth2/v2.0/authorize` redirects with
//!   a code for the user set by `authorize_as`.
//! - Graph `/v1.0`: `me`, `subscriptions` (POST performs the real validation POST against
//!   the notification and lifecycle URLs and answers 400 when the echo is wrong or takes
//!   over 10 s; PATCH; DELETE), per-folder delta (`nextLink` → `deltaLink`, 410 on a token
//!   `expire_delta_tokens` killed), `messages/{id}/$value`, `users/{id}/sendMail` with a
//!   base64 MIME body (202; the message lands in sentitems with our Message-ID, as
//!   Exchange stores it: with headers of its own added; `ErrorMimeContentInvalidBase64String`
//!   on bad base64; injectable refusals).
//! - Every Graph request is logged, checked for a live bearer token, counted against the
//!   per-mailbox concurrency gauge (a 5th concurrent request is a violation, answered 429
//!   like Outlook would), and can be throttled with `429 Retry-After: 2.128`.
//! - A pusher posts change and lifecycle notifications to the subscriptions' URLs and
//!   measures the reply (Graph wants a 2xx within 3 s).

use axum::body::Bytes;
use axum::extract::{Form, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const TENANT: &str = "84bd8158-6d4d-4958-8b9f-9d6445542f95";
pub const CLIENT_ID: &str = "mailroom-test-client";
pub const CLIENT_SECRET: &str = "mailroom-test-secret";
/// Outlook's limit the gauge checks.
pub const MAX_CONCURRENT: usize = 4;
const THROTTLE_RETRY_AFTER: &str = "2.128";

/// Why a refresh fails once the grant is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantFailure {
    /// `invalid_grant`, AADSTS70008: the refresh token expired or was revoked.
    InvalidGrant,
    /// `interaction_required`, AADSTS50076: MFA or conditional access.
    InteractionRequired,
}

#[derive(Debug, Clone)]
pub struct MockMessage {
    pub id: String,
    pub immutable_id: String,
    pub internet_message_id: String,
    pub conversation_id: String,
    pub received: DateTime<Utc>,
    pub mime: Bytes,
    created_seq: u64,
    removed_seq: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct MockSubscription {
    pub id: String,
    pub user: String,
    pub folder: String,
    pub resource: String,
    pub notification_url: String,
    pub lifecycle_url: Option<String>,
    pub client_state: String,
    pub expires: DateTime<Utc>,
}

/// One Graph or token request, as the mock saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    /// Path and query, verbatim.
    pub uri: String,
    pub user: Option<String>,
    pub prefer: Vec<String>,
    pub status: u16,
    pub at: Instant,
}

/// One POST the mock made to our webhook.
#[derive(Debug, Clone)]
pub struct Push {
    pub url: String,
    pub status: u16,
    pub elapsed: Duration,
    pub body: String,
}

impl Push {
    /// What Graph needs: a 2xx within 3 s.
    pub fn assert_accepted(&self) {
        assert!(
            (200..300).contains(&self.status) && self.elapsed < Duration::from_secs(3),
            "Graph needs a 2xx within 3 s; {} answered {} after {:?}: {}",
            self.url,
            self.status,
            self.elapsed,
            self.body
        );
    }
}

struct Mailbox {
    mail: String,
    folders: HashMap<String, Vec<MockMessage>>,
}

struct DeltaRound {
    user: String,
    folder: String,
    /// Items not yet served.
    rest: Vec<Value>,
    /// The change counter when the round began: the next round starts after it.
    end_seq: u64,
}

struct DeltaToken {
    user: String,
    folder: String,
    since_seq: u64,
}

struct Throttle {
    path_contains: String,
    remaining: u32,
}

#[derive(Default)]
struct Inner {
    seq: u64,
    next_id: u64,
    users: HashMap<String, Mailbox>,
    refresh: HashMap<String, String>,
    /// Every refresh token ever issued, live or not, and its user.
    issued: HashMap<String, String>,
    revoked: HashMap<String, GrantFailure>,
    codes: HashMap<String, String>,
    authorizing: Option<String>,
    access: HashMap<String, (String, DateTime<Utc>)>,
    access_ttl: i64,
    refreshes: u32,
    subs: HashMap<String, MockSubscription>,
    rounds: HashMap<String, DeltaRound>,
    delta_tokens: HashMap<String, DeltaToken>,
    throttles: Vec<Throttle>,
    inflight: HashMap<String, usize>,
    max_inflight: HashMap<String, usize>,
    violations: u32,
    value_delay: Duration,
    log: Vec<Logged>,
    validations: Vec<(String, bool)>,
    pushes: Vec<Push>,
    fail_validation: bool,
    /// Every MIME sendMail accepted, by user, as posted (decoded).
    sent: Vec<(String, Bytes)>,
    /// The next sendMail answers (status, code, message) instead.
    send_failure: Option<(u16, String, String)>,
    /// Notify the folders' subscriptions of what sendMail files (`MockGraph::notify_on_send`).
    notify_on_send: bool,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    base: String,
    http: reqwest::Client,
    /// `$value` answers only while this is open (true).
    value_gate: Arc<tokio::sync::watch::Sender<bool>>,
    /// `$value` requests waiting at the closed gate.
    held: Arc<std::sync::atomic::AtomicUsize>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct MockGraph {
    /// `http://127.0.0.1:PORT`: the identity platform's and Graph's base.
    pub base: String,
    shared: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockGraph {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rand_hex(n: usize) -> String {
    (0..n).map(|_| format!("{:x}", rand::random::<u8>() & 0xf)).collect()
}

pub fn guid() -> String {
    let h = rand_hex(32);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn graph_error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message, "innerError": {"request-id": guid()}}})))
        .into_response()
}

/// A small RFC 5322 message.
pub fn mime(from: &str, to: &str, subject: &str, message_id: &str) -> Bytes {
    Bytes::from(format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{message_id}>\r\n\
         Date: Wed, 18 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello about {subject}.\r\n"
    ))
}

impl MockGraph {
    /// The environment that points `mailroom serve` at this mock.
    pub fn serve_env(&self) -> Vec<(String, String)> {
        [
            ("MAILROOM_MS_CLIENT_ID", CLIENT_ID.to_string()),
            ("MAILROOM_MS_CLIENT_SECRET", CLIENT_SECRET.to_string()),
            ("MAILROOM_MS_AUTHORITY", self.base.clone()),
            ("MAILROOM_MS_TENANT", TENANT.to_string()),
            ("MAILROOM_GRAPH_API", self.base.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    pub async fn start() -> MockGraph {
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind mock graph on loopback");
        let base = format!("http://{}", listener.local_addr().expect("mock graph address"));
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner { access_ttl: 3599, ..Default::default() })),
            base: base.clone(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("mock graph http client"),
            value_gate: Arc::new(tokio::sync::watch::channel(true).0),
            held: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        };
        let graph = Router::new()
            .route("/v1.0/me", get(me))
            .route("/v1.0/subscriptions", post(create_subscription))
            .route("/v1.0/subscriptions/{id}", patch(renew_subscription).delete(delete_subscription))
            .route("/v1.0/users/{user}/mailFolders/{folder}/messages/delta", get(delta))
            .route("/v1.0/users/{user}/messages/{id}", get(message_get))
            .route("/v1.0/users/{user}/messages/{id}/{value}", get(message_value))
            .route("/v1.0/users/{user}/sendMail", post(send_mail))
            .layer(middleware::from_fn_with_state(shared.clone(), graph_gate));
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/{tenant}/oauth2/v2.0/authorize", get(authorize))
            .merge(graph)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockGraph { base, shared, task }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    pub fn token_url(&self) -> String {
        format!("{}/{TENANT}/oauth2/v2.0/token", self.base)
    }
    pub fn authorize_url(&self) -> String {
        format!("{}/{TENANT}/oauth2/v2.0/authorize", self.base)
    }

    /// A mailbox with empty inbox and sentitems; returns its user GUID.
    pub fn add_user(&self, mail: &str) -> String {
        let id = guid();
        let folders = ["inbox", "sentitems"].into_iter().map(|f| (f.to_string(), Vec::new())).collect();
        self.lock().users.insert(id.clone(), Mailbox { mail: mail.to_string(), folders });
        id
    }

    /// A refresh token for the user, as a finished consent would have given.
    pub fn grant(&self, user: &str) -> String {
        let mut g = self.lock();
        g.revoked.remove(user);
        let rt = format!("rt-{}", rand_hex(24));
        g.refresh.insert(rt.clone(), user.to_string());
        g.issued.insert(rt.clone(), user.to_string());
        rt
    }

    /// The user `/authorize` signs in next.
    pub fn authorize_as(&self, user: &str) {
        self.lock().authorizing = Some(user.to_string());
    }

    /// Every refresh of the user's grant fails from now on (until `grant`).
    pub fn revoke(&self, user: &str, how: GrantFailure) {
        let mut g = self.lock();
        g.revoked.insert(user.to_string(), how);
        g.refresh.retain(|_, u| u != user);
    }

    /// The refresh tokens that still work for the user (exactly one after any refresh).
    pub fn live_refresh_tokens(&self, user: &str) -> Vec<String> {
        self.lock().refresh.iter().filter(|(_, u)| *u == user).map(|(t, _)| t.clone()).collect()
    }

    pub fn refreshes(&self) -> u32 {
        self.lock().refreshes
    }

    /// Access tokens issued from now on live this long (`expires_in`).
    pub fn set_access_ttl(&self, secs: i64) {
        self.lock().access_ttl = secs;
    }

    /// Graph refuses every access token issued so far for the user (401).
    pub fn expire_access_tokens(&self, user: &str) {
        self.lock().access.retain(|_, (u, _)| u != user);
    }

    /// Adds a message to a folder (no notification); returns it.
    pub fn deliver(&self, user: &str, folder: &str, mime: Bytes, received: DateTime<Utc>) -> MockMessage {
        let mut g = self.lock();
        g.seq += 1;
        g.next_id += 1;
        let n = g.next_id;
        let seq = g.seq;
        let msg = MockMessage {
            id: format!("AAMkAD-{n}-{folder}"),
            immutable_id: format!("AAkALg-{n}"),
            internet_message_id: format!("<m{n}@mock.test>"),
            conversation_id: format!("AAQkAD-conv-{n}"),
            received,
            mime,
            created_seq: seq,
            removed_seq: None,
        };
        let mb = g.users.get_mut(user).expect("deliver to a known user");
        mb.folders.get_mut(folder).expect("inbox or sentitems").push(msg.clone());
        msg
    }

    /// The MIME messages sendMail accepted for `user`, in order.
    pub fn sent(&self, user: &str) -> Vec<Bytes> {
        self.lock().sent.iter().filter(|(u, _)| u == user).map(|(_, b)| b.clone()).collect()
    }

    /// The messages of a folder (`inbox`, `sentitems`), oldest first.
    pub fn folder(&self, user: &str, folder: &str) -> Vec<MockMessage> {
        self.lock().users.get(user).and_then(|mb| mb.folders.get(folder).cloned()).unwrap_or_default()
    }

    /// The next sendMail answers `status` with a Graph error `code`.
    pub fn fail_next_send(&self, status: u16, code: &str, message: &str) {
        self.lock().send_failure = Some((status, code.into(), message.into()));
    }

    /// Deletes a message (delta then reports it as `@removed`).
    pub fn remove(&self, user: &str, folder: &str, immutable_id: &str) {
        let mut g = self.lock();
        g.seq += 1;
        let seq = g.seq;
        if let Some(m) = g
            .users
            .get_mut(user)
            .and_then(|mb| mb.folders.get_mut(folder))
            .and_then(|f| f.iter_mut().find(|m| m.immutable_id == immutable_id))
        {
            m.removed_seq = Some(seq);
        }
    }

    pub fn subscriptions(&self) -> Vec<MockSubscription> {
        let mut v: Vec<_> = self.lock().subs.values().cloned().collect();
        v.sort_by(|a, b| (&a.user, &a.folder).cmp(&(&b.user, &b.folder)));
        v
    }

    pub fn subscription(&self, user: &str, folder: &str) -> Option<MockSubscription> {
        self.lock().subs.values().find(|s| s.user == user && s.folder == folder).cloned()
    }

    /// From now on sendMail notifies the subscriptions of the folders it files into
    /// (sentitems, and the inbox for mail to oneself), as Graph does.
    pub fn notify_on_send(&self) {
        self.lock().notify_on_send = true;
    }

    /// Graph drops a subscription on its own (then sends `subscriptionRemoved`).
    pub fn drop_subscription(&self, id: &str) -> Option<MockSubscription> {
        self.lock().subs.remove(id)
    }

    /// Every stored delta token of the folder expires: replays answer 410 Gone.
    pub fn expire_delta_tokens(&self, user: &str, folder: &str) {
        self.lock().delta_tokens.retain(|_, t| !(t.user == user && t.folder == folder));
    }

    /// The next `times` Graph requests whose path contains `path_contains` answer 429
    /// with `Retry-After: 2.128`.
    pub fn throttle(&self, path_contains: &str, times: u32) {
        self.lock().throttles.push(Throttle { path_contains: path_contains.to_string(), remaining: times });
    }

    /// How long `$value` takes, so that concurrent fetches overlap.
    pub fn set_value_delay(&self, d: Duration) {
        self.lock().value_delay = d;
    }

    /// Holds every `$value` request until `open_value_gate` (a sync that is surely
    /// mid-flight, without timing guesses).
    pub fn close_value_gate(&self) {
        self.shared.value_gate.send_replace(false);
    }

    pub fn open_value_gate(&self) {
        self.shared.value_gate.send_replace(true);
    }

    /// `$value` requests waiting at the closed gate now.
    pub fn held_values(&self) -> usize {
        self.shared.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Subscription creations fail their validation (as if our endpoint were unreachable).
    pub fn set_fail_validation(&self, fail: bool) {
        self.lock().fail_validation = fail;
    }

    pub fn max_inflight(&self, user: &str) -> usize {
        self.lock().max_inflight.get(user).copied().unwrap_or(0)
    }

    /// Requests that found 4 others of the same mailbox in flight.
    pub fn concurrency_violations(&self) -> u32 {
        self.lock().violations
    }

    pub fn log(&self) -> Vec<Logged> {
        self.lock().log.clone()
    }

    /// (URL, passed) of every validation POST the mock made.
    pub fn validations(&self) -> Vec<(String, bool)> {
        self.lock().validations.clone()
    }

    pub fn pushes(&self) -> Vec<Push> {
        self.lock().pushes.clone()
    }

    fn notification(sub: &MockSubscription, msg: &MockMessage, client_state: &str) -> Value {
        json!({
            "id": format!("lsgTZMr9KwAAA{}", rand_hex(6)),
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": sub.expires.to_rfc3339(),
            "clientState": client_state,
            "changeType": "created",
            "resource": format!("Users/{}@{TENANT}/Messages/{}", sub.user, msg.id),
            "tenantId": TENANT,
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Message",
                "@odata.id": format!("Users/{}@{TENANT}/Messages/{}", sub.user, msg.id),
                "@odata.etag": "W/\"CQAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf\"",
                "id": msg.id,
            }
        })
    }

    /// Posts a `created` notification for `msg` to the folder's subscription (one batch
    /// of one), as Graph does.
    pub async fn notify(&self, user: &str, folder: &str, msg: &MockMessage) -> Push {
        let sub = self.subscription(user, folder).expect("a subscription on the folder");
        let body = json!({"value": [Self::notification(&sub, msg, &sub.client_state)]});
        self.post(&sub.notification_url, &body).await
    }

    /// A notification for `msg` on the folder's subscription with another clientState.
    pub fn forged_notification(
        &self,
        user: &str,
        folder: &str,
        msg: &MockMessage,
        client_state: &str,
    ) -> Value {
        let sub = self.subscription(user, folder).expect("a subscription on the folder");
        Self::notification(&sub, msg, client_state)
    }

    /// A genuine notification item for `msg`.
    pub fn notification_item(&self, user: &str, folder: &str, msg: &MockMessage) -> Value {
        let sub = self.subscription(user, folder).expect("a subscription on the folder");
        Self::notification(&sub, msg, &sub.client_state)
    }

    /// Posts a lifecycle event for a subscription (which may have been dropped already).
    pub async fn lifecycle(&self, sub: &MockSubscription, event: &str) -> Push {
        let body = json!({"value": [{
            "subscriptionId": sub.id,
            "subscriptionExpirationDateTime": sub.expires.to_rfc3339(),
            "tenantId": TENANT,
            "clientState": sub.client_state,
            "lifecycleEvent": event,
        }]});
        let url = sub.lifecycle_url.clone().expect("subscription has a lifecycle URL");
        self.post(&url, &body).await
    }

    /// Posts any JSON to a URL, timing the reply.
    pub async fn post(&self, url: &str, body: &Value) -> Push {
        let started = Instant::now();
        let res = self
            .shared
            .http
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        let push = match res {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                Push { url: url.to_string(), status, elapsed: started.elapsed(), body: text }
            }
            Err(e) => {
                Push { url: url.to_string(), status: 0, elapsed: started.elapsed(), body: e.to_string() }
            }
        };
        self.lock().pushes.push(push.clone());
        push
    }
}

// ---- identity platform ----

async fn token(
    State(s): State<Shared>,
    Path(_tenant): Path<String>,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let bad = |error: &str, code: u32, desc: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": error,
                "error_description": format!("AADSTS{code}: {desc}"),
                "error_codes": [code],
                "timestamp": Utc::now().to_rfc3339(),
                "trace_id": guid(),
                "correlation_id": guid(),
            })),
        )
            .into_response()
    };
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return bad("invalid_client", 700016, "Application not found in the directory.");
    }
    if f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET) {
        return bad("invalid_client", 7000215, "Invalid client secret provided.");
    }
    let mut g = s.lock();
    let user = match f.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            match g.refresh.remove(&rt) {
                Some(u) => u,
                None => {
                    // A revoked user's last token, or one that rotated away.
                    let revoked = g.issued.get(&rt).and_then(|u| g.revoked.get(u)).copied();
                    return match revoked {
                        Some(GrantFailure::InteractionRequired) => bad(
                            "interaction_required",
                            50076,
                            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication.",
                        ),
                        _ => bad(
                            "invalid_grant",
                            70008,
                            "The provided authorization code or refresh token has expired due to inactivity.",
                        ),
                    };
                }
            }
        }
        Some("authorization_code") => match f.get("code").and_then(|c| g.codes.remove(c)) {
            Some(u) => u,
            None => {
                return bad("invalid_grant", 70000, "The provided authorization code is invalid or expired.");
            }
        },
        _ => return bad("unsupported_grant_type", 70003, "The app requested an unsupported grant type."),
    };
    g.refreshes += 1;
    let access = format!("at-{}", rand_hex(32));
    let refresh = format!("rt-{}", rand_hex(24));
    let ttl = g.access_ttl;
    g.access.insert(access.clone(), (user.clone(), Utc::now() + ChronoDuration::seconds(ttl)));
    g.refresh.insert(refresh.clone(), user.clone());
    g.issued.insert(refresh.clone(), user);
    Json(json!({
        "token_type": "Bearer",
        "scope": "https://graph.microsoft.com/Mail.Read https://graph.microsoft.com/Mail.Send",
        "expires_in": ttl,
        "ext_expires_in": ttl,
        "access_token": access,
        "refresh_token": refresh,
    }))
    .into_response()
}

async fn authorize(State(s): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let mut g = s.lock();
    let Some(user) = g.authorizing.clone() else {
        return (StatusCode::BAD_REQUEST, "no user is signing in (MockGraph::authorize_as)").into_response();
    };
    let Some(redirect) = q.get("redirect_uri") else {
        return (StatusCode::BAD_REQUEST, "redirect_uri missing").into_response();
    };
    let code = format!("code-{}", rand_hex(16));
    g.codes.insert(code.clone(), user);
    let mut u = match url::Url::parse(redirect) {
        Ok(u) => u,
        Err(_) => return (StatusCode::BAD_REQUEST, "redirect_uri is not a URL").into_response(),
    };
    u.query_pairs_mut().append_pair("code", &code);
    if let Some(st) = q.get("state") {
        u.query_pairs_mut().append_pair("state", st);
    }
    (StatusCode::FOUND, [(header::LOCATION, u.to_string())]).into_response()
}

// ---- Graph ----

/// The signed-in user of a Graph request (set by the gate).
#[derive(Clone)]
struct Caller(String);

/// Logs, authenticates, throttles and gauges every Graph request.
async fn graph_gate(State(s): State<Shared>, mut req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let uri = req.uri().path_and_query().map(|p| p.to_string()).unwrap_or_default();
    let prefer: Vec<String> =
        req.headers().get_all("prefer").iter().filter_map(|v| v.to_str().ok().map(str::to_string)).collect();
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let now = Instant::now();
    let user = {
        let g = s.lock();
        bearer.and_then(|t| g.access.get(&t).cloned()).filter(|(_, exp)| *exp > Utc::now()).map(|(u, _)| u)
    };
    let log = |status: u16, user: Option<String>| {
        s.lock().log.push(Logged {
            method: method.clone(),
            uri: uri.clone(),
            user,
            prefer: prefer.clone(),
            status,
            at: now,
        });
    };
    let Some(user) = user else {
        log(401, None);
        return graph_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Access token has expired or is not yet valid.",
        );
    };
    let throttled = {
        let mut g = s.lock();
        let hit = g.throttles.iter_mut().find(|t| t.remaining > 0 && uri.contains(&t.path_contains));
        hit.map(|t| t.remaining -= 1).is_some()
    };
    if throttled {
        log(429, Some(user));
        let mut r =
            graph_error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "Please retry again later.");
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static(THROTTLE_RETRY_AFTER));
        return r;
    }
    let over = {
        let mut g = s.lock();
        let n = {
            let c = g.inflight.entry(user.clone()).or_default();
            *c += 1;
            *c
        };
        let m = g.max_inflight.entry(user.clone()).or_default();
        *m = (*m).max(n);
        if n > MAX_CONCURRENT {
            g.violations += 1;
        }
        n > MAX_CONCURRENT
    };
    let resp = if over {
        let mut r = graph_error(
            StatusCode::TOO_MANY_REQUESTS,
            "ApplicationThrottled",
            "Application is over its MailboxConcurrency limit.",
        );
        r.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        r
    } else {
        req.extensions_mut().insert(Caller(user.clone()));
        next.run(req).await
    };
    {
        let mut g = s.lock();
        if let Some(c) = g.inflight.get_mut(&user) {
            *c -= 1;
        }
    }
    log(resp.status().as_u16(), Some(user));
    resp
}

async fn me(State(s): State<Shared>, axum::Extension(Caller(user)): axum::Extension<Caller>) -> Response {
    let g = s.lock();
    let Some(mb) = g.users.get(&user) else {
        return graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", "User not found.");
    };
    Json(json!({"id": user, "mail": mb.mail, "userPrincipalName": mb.mail})).into_response()
}

fn sub_json(sub: &MockSubscription) -> Value {
    json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
        "id": sub.id,
        "resource": sub.resource,
        "applicationId": CLIENT_ID,
        "changeType": "created",
        "clientState": sub.client_state,
        "notificationUrl": sub.notification_url,
        "lifecycleNotificationUrl": sub.lifecycle_url,
        "expirationDateTime": sub.expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "creatorId": sub.user,
        "latestSupportedTlsVersion": "v1_2",
        "notificationContentType": "application/json",
    })
}

/// Graph's validation POST: 200, text/plain, the decoded token as the body, within 10 s.
async fn validate(s: &Shared, url: &str) -> bool {
    let token = format!(
        "Validation: Testing client application reachability for subscription Request-Id: {}",
        guid()
    );
    let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    let sep = if url.contains('?') { '&' } else { '?' };
    let target = format!("{url}{sep}validationToken={encoded}");
    let res = s
        .http
        .post(&target)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let ok = match res {
        Ok(r) => {
            let status = r.status();
            let ct =
                r.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let body = r.text().await.unwrap_or_default();
            status == StatusCode::OK && ct.starts_with("text/plain") && body == token
        }
        Err(_) => false,
    };
    s.lock().validations.push((url.to_string(), ok));
    ok
}

async fn create_subscription(
    State(s): State<Shared>,
    axum::Extension(Caller(user)): axum::Extension<Caller>,
    Json(b): Json<Value>,
) -> Response {
    let str_of = |k: &str| b[k].as_str().map(str::to_string);
    let (Some(change), Some(url), Some(resource), Some(exp)) =
        (str_of("changeType"), str_of("notificationUrl"), str_of("resource"), str_of("expirationDateTime"))
    else {
        return graph_error(StatusCode::BAD_REQUEST, "InvalidRequest", "A required property is missing.");
    };
    let client_state = str_of("clientState").unwrap_or_default();
    if client_state.len() > 128 {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "clientState is longer than 128 characters.",
        );
    }
    if change != "created" {
        return graph_error(StatusCode::BAD_REQUEST, "InvalidRequest", "Mailroom asks for created only.");
    }
    let folder = ["inbox", "sentitems"]
        .into_iter()
        .find(|f| resource == format!("users/{user}/mailFolders('{f}')/messages"));
    let Some(folder) = folder else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ExtensionError",
            &format!("Unsupported resource {resource:?} (a GUID user and inbox/sentitems expected)"),
        );
    };
    let Ok(expires) = DateTime::parse_from_rfc3339(&exp).map(|t| t.with_timezone(&Utc)) else {
        return graph_error(StatusCode::BAD_REQUEST, "InvalidRequest", "expirationDateTime is not a date.");
    };
    if expires > Utc::now() + ChronoDuration::minutes(4230) + ChronoDuration::minutes(1) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Subscription expiration can only be 4230 minutes in the future.",
        );
    }
    let lifecycle = str_of("lifecycleNotificationUrl");
    let fail = s.lock().fail_validation;
    let mut valid = !fail && validate(&s, &url).await;
    if let Some(l) = &lifecycle {
        valid = valid && validate(&s, l).await;
    }
    if !valid {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request.",
        );
    }
    let sub = MockSubscription {
        id: guid(),
        user: user.clone(),
        folder: folder.to_string(),
        resource,
        notification_url: url,
        lifecycle_url: lifecycle,
        client_state,
        expires,
    };
    s.lock().subs.insert(sub.id.clone(), sub.clone());
    (StatusCode::CREATED, Json(sub_json(&sub))).into_response()
}

async fn renew_subscription(
    State(s): State<Shared>,
    Path(id): Path<String>,
    axum::Extension(Caller(user)): axum::Extension<Caller>,
    Json(b): Json<Value>,
) -> Response {
    let Some(exp) = b["expirationDateTime"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    else {
        return graph_error(StatusCode::BAD_REQUEST, "InvalidRequest", "expirationDateTime is missing.");
    };
    let exp = exp.with_timezone(&Utc);
    if exp > Utc::now() + ChronoDuration::minutes(4231) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Subscription expiration can only be 4230 minutes in the future.",
        );
    }
    let mut g = s.lock();
    match g.subs.get_mut(&id) {
        Some(sub) if sub.user == user => {
            sub.expires = exp;
            Json(sub_json(sub)).into_response()
        }
        _ => graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", "The object was not found."),
    }
}

async fn delete_subscription(
    State(s): State<Shared>,
    Path(id): Path<String>,
    axum::Extension(Caller(user)): axum::Extension<Caller>,
) -> Response {
    let mut g = s.lock();
    match g.subs.get(&id) {
        Some(sub) if sub.user == user => {
            g.subs.remove(&id);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", "The object was not found."),
    }
}

fn page_size(headers: &HeaderMap) -> usize {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("odata.maxpagesize=").and_then(|n| n.parse().ok()))
        .unwrap_or(10)
}

fn immutable(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim() == "IdType=\"ImmutableId\""))
}

async fn delta(
    State(s): State<Shared>,
    Path((path_user, folder)): Path<(String, String)>,
    axum::Extension(Caller(user)): axum::Extension<Caller>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if path_user != user {
        return graph_error(StatusCode::FORBIDDEN, "ErrorAccessDenied", "Access is denied.");
    }
    let size = page_size(&headers);
    let immutable = immutable(&headers);
    let mut g = s.lock();
    let link = |kind: &str, token: &str| {
        format!("{}/v1.0/users/{user}/mailFolders/{folder}/messages/delta?${kind}={token}", s.base)
    };
    // Which round this is: a next page, a replayed delta token, or a new round.
    let mut round = if let Some(t) = q.get("$skiptoken") {
        match g.rounds.remove(t) {
            Some(r) if r.user == user && r.folder == folder => r,
            _ => {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidSkipToken",
                    "The skip token is not valid.",
                );
            }
        }
    } else {
        let (since_seq, filter) = if let Some(t) = q.get("$deltatoken") {
            match g.delta_tokens.get(t) {
                Some(d) if d.user == user && d.folder == folder => (Some(d.since_seq), None),
                _ => {
                    return graph_error(
                        StatusCode::GONE,
                        "syncStateNotFound",
                        "The sync state generation is not found. Restart the sync from the beginning.",
                    );
                }
            }
        } else {
            if q.get("changeType").map(String::as_str) != Some("created") {
                return graph_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequest",
                    "Mailroom asks for created only.",
                );
            }
            let filter = match q.get("$filter") {
                None => None,
                Some(f) => match f
                    .strip_prefix("receivedDateTime ge ")
                    .and_then(|t| DateTime::parse_from_rfc3339(t.trim()).ok())
                {
                    Some(t) => Some(t.with_timezone(&Utc)),
                    None => {
                        return graph_error(
                            StatusCode::BAD_REQUEST,
                            "ErrorInvalidUrlQueryFilter",
                            "The query filter contains one or more invalid nodes.",
                        );
                    }
                },
            };
            (None, filter)
        };
        let Some(mb) = g.users.get(&user) else {
            return graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", "User not found.");
        };
        let Some(msgs) = mb.folders.get(&folder) else {
            return graph_error(StatusCode::NOT_FOUND, "ErrorInvalidIdMalformed", "Folder not found.");
        };
        let mut rest = Vec::new();
        for m in msgs {
            let id = if immutable { &m.immutable_id } else { &m.id };
            match since_seq {
                None => {
                    if m.removed_seq.is_none() && filter.is_none_or(|f| m.received >= f) {
                        rest.push(json!({
                            "@odata.etag": "W/\"CQAAABYAAAAs\"",
                            "id": id,
                            "internetMessageId": m.internet_message_id,
                            "receivedDateTime": m.received.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            "conversationId": m.conversation_id,
                        }));
                    }
                }
                Some(since) => {
                    if m.created_seq > since && m.removed_seq.is_none() {
                        rest.push(json!({
                            "@odata.etag": "W/\"CQAAABYAAAAs\"",
                            "id": id,
                            "internetMessageId": m.internet_message_id,
                            "receivedDateTime": m.received.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            "conversationId": m.conversation_id,
                        }));
                    } else if m.created_seq <= since && m.removed_seq.is_some_and(|r| r > since) {
                        rest.push(json!({"id": id, "@removed": {"reason": "deleted"}}));
                    }
                }
            }
        }
        DeltaRound { user: user.clone(), folder: folder.clone(), rest, end_seq: g.seq }
    };
    let take = round.rest.len().min(size.max(1));
    let page: Vec<Value> = round.rest.drain(..take).collect();
    let mut body = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(message)",
        "value": page,
    });
    if round.rest.is_empty() {
        let t = rand_hex(20);
        g.delta_tokens.insert(
            t.clone(),
            DeltaToken { user: user.clone(), folder: folder.clone(), since_seq: round.end_seq },
        );
        body["@odata.deltaLink"] = json!(link("deltatoken", &t));
    } else {
        let t = rand_hex(20);
        body["@odata.nextLink"] = json!(link("skiptoken", &t));
        g.rounds.insert(t, round);
    }
    Json(body).into_response()
}

async fn message_value(
    State(s): State<Shared>,
    Path((path_user, id, value)): Path<(String, String, String)>,
    axum::Extension(Caller(user)): axum::Extension<Caller>,
) -> Response {
    if value != "$value" {
        return graph_error(StatusCode::BAD_REQUEST, "BadRequest", "Unsupported segment.");
    }
    if path_user != user {
        return graph_error(StatusCode::FORBIDDEN, "ErrorAccessDenied", "Access is denied.");
    }
    let mut gate = s.value_gate.subscribe();
    if !*gate.borrow() {
        s.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = gate.wait_for(|open| *open).await;
        s.held.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
    let delay = s.lock().value_delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let g = s.lock();
    let found = g.users.get(&user).and_then(|mb| {
        mb.folders
            .values()
            .flatten()
            .find(|m| (m.immutable_id == id || m.id == id) && m.removed_seq.is_none())
    });
    match found {
        // Graph labels $value text/plain; the body is MIME whatever the label says.
        Some(m) => ([(header::CONTENT_TYPE, "text/plain")], m.mime.clone()).into_response(),
        None => graph_error(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        ),
    }
}

/// `GET /users/{id}/messages/{id}?$select=internetMessageHeaders`: the message resource
/// with its internet headers (name/value pairs, unfolded, in order), as Graph gives them.
async fn message_get(
    State(s): State<Shared>,
    Path((path_user, id)): Path<(String, String)>,
    axum::Extension(Caller(user)): axum::Extension<Caller>,
) -> Response {
    if path_user != user {
        return graph_error(StatusCode::FORBIDDEN, "ErrorAccessDenied", "Access is denied.");
    }
    let g = s.lock();
    let found = g.users.get(&user).and_then(|mb| {
        mb.folders
            .values()
            .flatten()
            .find(|m| (m.immutable_id == id || m.id == id) && m.removed_seq.is_none())
    });
    let Some(m) = found else {
        return graph_error(
            StatusCode::NOT_FOUND,
            "ErrorItemNotFound",
            "The specified object was not found in the store.",
        );
    };
    let text = String::from_utf8_lossy(&m.mime);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().replace("\r\n ", " ").replace("\r\n\t", " ");
    let headers: Vec<Value> = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| json!({"name": n.trim(), "value": v.trim()}))
        .collect();
    Json(json!({"id": id, "internetMessageId": m.internet_message_id, "internetMessageHeaders": headers}))
        .into_response()
}

/// A header's value in a MIME message's header block (first occurrence, unfolded).
fn mime_header(mime: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(mime);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().replace("\r\n ", " ").replace("\r\n\t", " ");
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// sendMail with a MIME body (protocols.md 2.6): `Content-Type: text/plain`, the body the
/// base64 of the MIME. 202 with no body; the message is filed in sentitems keeping our
/// Message-ID, in the conversation of the message it replies to.
async fn send_mail(
    State(s): State<Shared>,
    Path(path_user): Path<String>,
    axum::Extension(Caller(user)): axum::Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if path_user != user {
        return graph_error(StatusCode::FORBIDDEN, "ErrorAccessDenied", "Access is denied.");
    }
    if let Some((status, code, message)) = s.lock().send_failure.take() {
        return graph_error(StatusCode::from_u16(status).unwrap(), &code, &message);
    }
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !ct.starts_with("text/plain") {
        // Graph takes any other content type as a JSON message resource.
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRequest",
            "Cannot read the request body as JSON.",
        );
    }
    use base64::Engine;
    let text: String = String::from_utf8_lossy(&body).split_whitespace().collect();
    let Ok(mime) = base64::engine::general_purpose::STANDARD.decode(text.as_bytes()) else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorMimeContentInvalidBase64String",
            "Invalid base64 string for MIME content.",
        );
    };
    if mime_header(&mime, "to").is_none()
        && mime_header(&mime, "cc").is_none()
        && mime_header(&mime, "bcc").is_none()
    {
        return graph_error(
            StatusCode::BAD_REQUEST,
            "ErrorInvalidRecipients",
            "At least one recipient is not valid.",
        );
    }
    let mime = Bytes::from(mime);
    let mut g = s.lock();
    g.sent.push((user.clone(), mime.clone()));
    g.seq += 1;
    g.next_id += 1;
    let (n, seq) = (g.next_id, g.seq);
    let message_id = mime_header(&mime, "message-id").unwrap_or_else(|| format!("<m{n}@mock.test>"));
    let parent = mime_header(&mime, "in-reply-to");
    let Some(mb) = g.users.get_mut(&user) else {
        return graph_error(StatusCode::NOT_FOUND, "ResourceNotFound", "User not found.");
    };
    let conversation_id = parent
        .and_then(|p| {
            mb.folders
                .values()
                .flatten()
                .find(|m| mime_header(&m.mime, "message-id").as_deref() == Some(p.as_str()))
        })
        .map(|m| m.conversation_id.clone())
        .unwrap_or_else(|| format!("AAQkAD-conv-{n}"));
    // Exchange stores the message with transport headers of its own: same Message-ID,
    // other bytes than we posted.
    let mut stored = format!(
        "Received: from mock.prod.outlook.test by mock.prod.outlook.test with HTTPS; {}\r\nX-MS-Exchange-Organization-AuthSource: mock.prod.outlook.test\r\n",
        Utc::now().to_rfc2822()
    )
    .into_bytes();
    stored.extend_from_slice(&mime);
    let msg = MockMessage {
        id: format!("AAMkAD-{n}-sentitems"),
        immutable_id: format!("AAkALg-{n}"),
        internet_message_id: message_id,
        conversation_id,
        received: Utc::now(),
        mime: Bytes::from(stored),
        created_seq: seq,
        removed_seq: None,
    };
    let mut filed = vec![("sentitems", msg.clone())];
    // Mail to oneself is delivered to one's inbox too (another item, the same Message-ID).
    let own = mb.mail.to_ascii_lowercase();
    let to_self = ["to", "cc"]
        .iter()
        .filter_map(|h| mime_header(&mime, h))
        .any(|v| v.to_ascii_lowercase().contains(&own));
    mb.folders.entry("sentitems".into()).or_default().push(msg.clone());
    if to_self {
        let copy =
            MockMessage { id: format!("AAMkAD-{n}-inbox"), immutable_id: format!("AAkALg-{n}i"), ..msg };
        mb.folders.entry("inbox".into()).or_default().push(copy.clone());
        filed.push(("inbox", copy));
    }
    // Graph then notifies the folders' subscriptions of the new items.
    if g.notify_on_send {
        let subs: Vec<(MockSubscription, MockMessage)> = filed
            .into_iter()
            .filter_map(|(f, m)| {
                g.subs.values().find(|x| x.user == user && x.folder == f).cloned().map(|x| (x, m))
            })
            .collect();
        let http = s.http.clone();
        tokio::spawn(async move {
            for (sub, m) in subs {
                let body = json!({"value": [MockGraph::notification(&sub, &m, &sub.client_state)]});
                let _ = http
                    .post(&sub.notification_url)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.to_string())
                    .send()
                    .await;
            }
        });
    }
    StatusCode::ACCEPTED.into_response()
}
