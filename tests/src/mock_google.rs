//! A mock of the Google endpoints a Gmail connection uses, faithful to
//! ../shared/docs/protocols.md §1 and §7: OAuth (authorize with PKCE S256, token with the
//! refresh_token and authorization_code grants, `invalid_grant` once revoked), the JWKS
//! (`/certs`, with Cache-Control max-age), a Pub/Sub OIDC signer with forged variants,
//! and one Gmail mailbox (watch/stop, getProfile, history.list paged with a settable
//! expiry floor, messages.get?format=raw with unpadded base64url, messages.list with
//! `newer_than:Nd`, messages.send (stored with the SENT label in the given thread, with a
//! history record; injectable refusals), 429 injection). Every request is logged for
//! assertions.
//!
//! The RSA keys are made at start with the `openssl` CLI: test-only keys that live in a
//! temp dir for the life of the mock, never committed.

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

pub const CLIENT_ID: &str = "mock-client.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "mock-client-secret";
pub const PUSH_AUDIENCE: &str = "https://mailroom.test/webhooks/gmail";
pub const PUSH_EMAIL: &str = "gmail-push@mailroom-test.iam.gserviceaccount.com";
pub const TOPIC: &str = "projects/mailroom-test/topics/gmail";
pub const GOOD_KID: &str = "mock-key-1";

/// Which Pub/Sub push token to sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jwt {
    Good,
    /// Issued as `accounts.google.com` (no scheme): also a Google issuer.
    GoodBareIssuer,
    BadAudience,
    Expired,
    WrongEmail,
    EmailUnverified,
    /// A `kid` the JWKS does not have.
    UnknownKid,
    WrongIssuer,
    /// Signed by another key under the good key's `kid`.
    OtherKey,
    /// HS256 with the public modulus as secret (algorithm confusion).
    Hs256,
}

/// How `message.data` of a push envelope is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataEncoding {
    UrlNoPad,
    UrlPadded,
    Standard,
    StandardNoPad,
}

/// One logged request.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: String,
}

#[derive(Debug, Clone)]
struct Msg {
    id: String,
    thread_id: String,
    labels: Vec<String>,
    internal_date: i64,
    raw: Vec<u8>,
    gone: bool,
}

#[derive(Debug, Clone)]
struct HistoryEntry {
    id: u64,
    msg: String,
}

struct Grant {
    revoked: bool,
}

struct State_ {
    email: String,
    /// Pub/Sub's push endpoint (`MockGoogle::push_to`): while a watch is on, every
    /// mailbox change is pushed there with a push OIDC token, as Pub/Sub does.
    push_to: Option<String>,
    /// This mock's URL: the `iss` of its ID tokens.
    issuer: String,
    history_id: u64,
    floor: u64,
    page_size: usize,
    messages: BTreeMap<String, Msg>,
    order: Vec<String>,
    history: Vec<HistoryEntry>,
    next_msg: u64,
    access: HashMap<String, (String, i64)>,
    grants: HashMap<String, Grant>,
    codes: HashMap<String, (String, String, bool)>,
    next_token: u64,
    /// The next N Gmail calls answer 429 userRateLimitExceeded.
    throttle: u32,
    throttle_retry_after: Option<String>,
    watch: Option<(String, u64)>,
    log: Vec<Req>,
    jwks_max_age: u64,
    /// messages.get of this id answers 503 (with Retry-After: 0).
    broken: Option<String>,
    /// Every message messages.send accepted, as sent (decoded `raw`).
    sent: Vec<Vec<u8>>,
    /// The next messages.send answers this (status, reason, message) instead.
    send_failure: Option<(u16, String, String)>,
}

#[derive(Clone)]
struct Shared {
    state: Arc<Mutex<State_>>,
    jwks: Arc<Value>,
    /// Signs the ID tokens of the code exchange (the key the JWKS publishes).
    id_key: Arc<EncodingKey>,
    /// While `true`, messages.get waits (to hold a sync in the middle of its work).
    gets_held: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State_> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The running mock.
pub struct MockGoogle {
    pub url: String,
    shared: Shared,
    good: EncodingKey,
    other: EncodingKey,
    modulus: Vec<u8>,
    _keys: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MockGoogle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn rsa_key(dir: &std::path::Path, name: &str) -> EncodingKey {
    let path = dir.join(name);
    let out = std::process::Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&path)
        .arg("2048")
        .output()
        .expect("the openssl CLI is needed to make the mock's test RSA keys (apt-get install openssl)");
    assert!(out.status.success(), "openssl genrsa failed: {}", String::from_utf8_lossy(&out.stderr));
    EncodingKey::from_rsa_pem(&std::fs::read(&path).unwrap()).expect("openssl made an RSA PEM key")
}

impl MockGoogle {
    /// The environment that points `mailroom serve` at this mock.
    pub fn serve_env(&self) -> Vec<(String, String)> {
        [
            ("MAILROOM_GOOGLE_CLIENT_ID", CLIENT_ID.to_string()),
            ("MAILROOM_GOOGLE_CLIENT_SECRET", CLIENT_SECRET.to_string()),
            ("MAILROOM_GOOGLE_AUTH_URL", self.auth_url()),
            ("MAILROOM_GOOGLE_TOKEN_URL", self.token_url()),
            ("MAILROOM_GOOGLE_JWKS_URL", self.jwks_url()),
            ("MAILROOM_GMAIL_API", self.url.clone()),
            ("MAILROOM_PUBSUB_AUDIENCE", PUSH_AUDIENCE.to_string()),
            ("MAILROOM_PUBSUB_EMAIL", PUSH_EMAIL.to_string()),
            ("MAILROOM_GMAIL_TOPIC", TOPIC.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Starts the mock on 127.0.0.1 for the mailbox `email`.
    pub async fn start(email: &str) -> MockGoogle {
        let keys = tempfile::tempdir().unwrap();
        let good = rsa_key(keys.path(), "good.pem");
        let other = rsa_key(keys.path(), "other.pem");
        let mut jwk = Jwk::from_encoding_key(&good, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some(GOOD_KID.into());
        jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
        let modulus = match &jwk.algorithm {
            jsonwebtoken::jwk::AlgorithmParameters::RSA(p) => URL_SAFE_NO_PAD.decode(&p.n).unwrap(),
            _ => unreachable!(),
        };
        let jwks = serde_json::to_value(JwkSet { keys: vec![jwk] }).unwrap();
        let shared = Shared {
            state: Arc::new(Mutex::new(State_ {
                email: email.to_string(),
                push_to: None,
                issuer: String::new(),
                history_id: 1_000_000,
                floor: 0,
                page_size: 3,
                messages: BTreeMap::new(),
                order: Vec::new(),
                history: Vec::new(),
                next_msg: 0x18c2_f4b3_e8a9_0000,
                access: HashMap::new(),
                grants: HashMap::new(),
                codes: HashMap::new(),
                next_token: 0,
                throttle: 0,
                throttle_retry_after: None,
                watch: None,
                log: Vec::new(),
                jwks_max_age: 3600,
                broken: None,
                sent: Vec::new(),
                send_failure: None,
            })),
            jwks: Arc::new(jwks),
            id_key: Arc::new(good.clone()),
            gets_held: tokio::sync::watch::channel(false).0,
        };
        let app = Router::new()
            .route("/o/oauth2/v2/auth", get(authorize))
            .route("/token", post(token))
            .route("/certs", get(certs))
            .route("/gmail/v1/users/me/watch", post(watch))
            .route("/gmail/v1/users/me/stop", post(stop))
            .route("/gmail/v1/users/me/profile", get(profile))
            .route("/gmail/v1/users/me/history", get(history))
            .route("/gmail/v1/users/me/messages", get(messages_list))
            .route("/gmail/v1/users/me/messages/send", post(message_send))
            .route("/gmail/v1/users/me/messages/{id}", get(message_get))
            .layer(axum::middleware::from_fn_with_state(shared.clone(), log_request))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        shared.lock().issuer = url.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        MockGoogle { url, shared, good, other, modulus, _keys: keys, task }
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/certs", self.url)
    }
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url)
    }
    pub fn auth_url(&self) -> String {
        format!("{}/o/oauth2/v2/auth", self.url)
    }

    /// Adds a message to the mailbox now; returns its id. History moves on (by more than
    /// one: history ids are increasing but not contiguous).
    pub fn add_message(&self, raw: &[u8], labels: &[&str]) -> String {
        self.add_message_at(raw, labels, chrono::Utc::now().timestamp_millis())
    }

    /// Adds a message received at `internal_date` (epoch ms).
    pub fn add_message_at(&self, raw: &[u8], labels: &[&str], internal_date: i64) -> String {
        let mut s = self.shared.lock();
        store_message(&mut s, raw, labels, internal_date, None)
    }

    /// What messages.send accepted so far, in order (the decoded MIME).
    pub fn sent(&self) -> Vec<Vec<u8>> {
        self.shared.lock().sent.clone()
    }

    /// The threadId Gmail filed a message in.
    pub fn thread_of(&self, id: &str) -> Option<String> {
        self.shared.lock().messages.get(id).map(|m| m.thread_id.clone())
    }

    /// The next messages.send answers `status` with a Google error of `reason`.
    pub fn fail_next_send(&self, status: u16, reason: &str, message: &str) {
        self.shared.lock().send_failure = Some((status, reason.into(), message.into()));
    }
}

/// Stores a message in the mailbox (a new thread unless `thread` names one) and records
/// its history; returns its id.
fn store_message(
    s: &mut State_,
    raw: &[u8],
    labels: &[&str],
    internal_date: i64,
    thread: Option<String>,
) -> String {
    {
        s.next_msg += 0x11;
        let id = format!("{:x}", s.next_msg);
        s.history_id += 3;
        let hid = s.history_id;
        s.messages.insert(
            id.clone(),
            Msg {
                id: id.clone(),
                thread_id: thread.unwrap_or_else(|| id.clone()),
                labels: labels.iter().map(|l| l.to_string()).collect(),
                internal_date,
                raw: raw.to_vec(),
                gone: false,
            },
        );
        s.order.push(id.clone());
        s.history.push(HistoryEntry { id: hid, msg: id.clone() });
        id
    }
}

impl MockGoogle {
    /// Deletes a message: messages.get answers 404 from now on (history still names it).
    pub fn delete_message(&self, id: &str) {
        let mut s = self.shared.lock();
        if let Some(m) = s.messages.get_mut(id) {
            m.gone = true;
        }
        s.history_id += 1;
    }

    /// history.list answers 404 for any startHistoryId below `floor`.
    pub fn expire_history_before(&self, floor: u64) {
        self.shared.lock().floor = floor;
    }

    pub fn history_id(&self) -> u64 {
        self.shared.lock().history_id
    }

    pub fn set_page_size(&self, n: usize) {
        self.shared.lock().page_size = n.max(1);
    }

    /// The next `n` Gmail API calls answer 429 `userRateLimitExceeded`, with this
    /// Retry-After (or none).
    pub fn throttle_next(&self, n: u32, retry_after: Option<&str>) {
        let mut s = self.shared.lock();
        s.throttle = n;
        s.throttle_retry_after = retry_after.map(str::to_string);
    }

    /// Holds every messages.get until `release_gets` (a sync stops mid-work, holding its
    /// lease, for as long as a test needs).
    pub fn hold_gets(&self) {
        self.shared.gets_held.send_replace(true);
    }

    pub fn release_gets(&self) {
        self.shared.gets_held.send_replace(false);
    }

    /// messages.get of `id` fails with 503 backendError until set to `None`.
    pub fn break_message(&self, id: Option<&str>) {
        self.shared.lock().broken = id.map(str::to_string);
    }

    pub fn set_jwks_max_age(&self, secs: u64) {
        self.shared.lock().jwks_max_age = secs;
    }

    /// The topic and expiration (epoch ms) of the current watch.
    pub fn watch_state(&self) -> Option<(String, u64)> {
        self.shared.lock().watch.clone()
    }

    /// Tokens as if the user had consented: (access token, refresh token).
    pub fn grant(&self) -> (String, String) {
        let mut s = self.shared.lock();
        let refresh = new_token(&mut s, "1//mock-refresh");
        s.grants.insert(refresh.clone(), Grant { revoked: false });
        let access = issue_access(&mut s, &refresh);
        (access, refresh)
    }

    /// The user removed the app's access: the refresh token and its access tokens die.
    pub fn revoke(&self, refresh: &str) {
        let mut s = self.shared.lock();
        if let Some(g) = s.grants.get_mut(refresh) {
            g.revoked = true;
        }
        s.access.retain(|_, (r, _)| r != refresh);
    }

    /// Every logged request.
    pub fn requests(&self) -> Vec<Req> {
        self.shared.lock().log.clone()
    }

    /// How many logged requests have this method and a path ending with `suffix`
    /// (`"/history"`, `"/certs"`), or starting with `prefix` when it ends with `/`.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| {
                r.method == method
                    && if path.ends_with('/') { r.path.starts_with(path) } else { r.path.ends_with(path) }
            })
            .count()
    }

    pub fn clear_log(&self) {
        self.shared.lock().log.clear();
    }

    /// Any RS256 token with the given claims, signed by the JWKS's key (`other_key`: by a
    /// key the JWKS does not have, under the same `kid`). The mock is then an OIDC
    /// issuer for the API's user tokens.
    pub fn sign(&self, claims: &Value, other_key: bool) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(GOOD_KID.into());
        jsonwebtoken::encode(&header, claims, if other_key { &self.other } else { &self.good }).unwrap()
    }

    /// A Pub/Sub push OIDC token.
    pub fn push_jwt(&self, v: Jwt) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = push_claims();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(GOOD_KID.into());
        let mut key = &self.good;
        match v {
            Jwt::Good => {}
            Jwt::GoodBareIssuer => claims["iss"] = json!("accounts.google.com"),
            Jwt::BadAudience => claims["aud"] = json!("https://attacker.test/webhooks/gmail"),
            Jwt::Expired => {
                claims["iat"] = json!(now - 7200);
                claims["exp"] = json!(now - 3600);
            }
            Jwt::WrongEmail => claims["email"] = json!("someone@attacker-proj.iam.gserviceaccount.com"),
            Jwt::EmailUnverified => claims["email_verified"] = json!(false),
            Jwt::UnknownKid => header.kid = Some("rotated-away".into()),
            Jwt::WrongIssuer => claims["iss"] = json!("https://login.attacker.test"),
            Jwt::OtherKey => key = &self.other,
            Jwt::Hs256 => {
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some(GOOD_KID.into());
                return jsonwebtoken::encode(&h, &claims, &EncodingKey::from_secret(&self.modulus)).unwrap();
            }
        }
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    /// A Pub/Sub push body for a Gmail notification.
    pub fn push_body(&self, email: &str, history_id: u64, enc: DataEncoding) -> Vec<u8> {
        push_body(email, history_id, enc)
    }

    /// Pushes every later mailbox change to `url` while a watch is on (Pub/Sub's push
    /// subscription to the watch's topic).
    pub fn push_to(&self, url: &str) {
        self.shared.lock().push_to = Some(url.to_string());
    }
}

/// The claims of a good Pub/Sub push OIDC token.
fn push_claims() -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "aud": PUSH_AUDIENCE, "azp": "113774264463038321964", "email": PUSH_EMAIL,
        "sub": "113774264463038321964", "email_verified": true,
        "iat": now, "exp": now + 3600, "iss": "https://accounts.google.com",
    })
}

/// Pub/Sub's delivery of a change, when a push endpoint is set and a watch is on.
fn push_change(sh: &Shared, s: &State_) {
    let (Some(url), Some(_)) = (s.push_to.clone(), s.watch.as_ref()) else { return };
    let body = push_body(&s.email, s.history_id, DataEncoding::UrlNoPad);
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(GOOD_KID.into());
    let token = jsonwebtoken::encode(&header, &push_claims(), &sh.id_key).unwrap();
    tokio::spawn(async move {
        let _ = reqwest::Client::new().post(&url).bearer_auth(token).body(body).send().await;
    });
}

fn push_body(email: &str, history_id: u64, enc: DataEncoding) -> Vec<u8> {
    {
        let data = json!({"emailAddress": email, "historyId": history_id.to_string()}).to_string();
        let data = match enc {
            DataEncoding::UrlNoPad => URL_SAFE_NO_PAD.encode(&data),
            DataEncoding::UrlPadded => URL_SAFE.encode(&data),
            DataEncoding::Standard => STANDARD.encode(&data),
            DataEncoding::StandardNoPad => STANDARD_NO_PAD.encode(&data),
        };
        let id = format!("{}", rand::random::<u64>() >> 12);
        json!({
            "message": {"data": data, "messageId": id, "message_id": id,
                "publishTime": "2026-02-26T19:13:55.749Z", "publish_time": "2026-02-26T19:13:55.749Z",
                "attributes": {}},
            "subscription": "projects/mailroom-test/subscriptions/gmail-push"
        })
        .to_string()
        .into_bytes()
    }
}

fn new_token(s: &mut State_, prefix: &str) -> String {
    s.next_token += 1;
    format!("{prefix}-{}-{:08x}", s.next_token, rand::random::<u32>())
}

fn issue_access(s: &mut State_, refresh: &str) -> String {
    let t = new_token(s, "ya29.mock");
    s.access.insert(t.clone(), (refresh.to_string(), chrono::Utc::now().timestamp() + 3599));
    t
}

async fn log_request(
    State(sh): State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    sh.lock().log.push(Req {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().unwrap_or_default().to_string(),
    });
    next.run(req).await
}

fn google_error(status: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status.as_u16(), "message": message,
        "errors": [{"message": message, "domain": "global", "reason": reason}],
        "status": match status.as_u16() { 401 => "UNAUTHENTICATED", 404 => "NOT_FOUND", 429 => "RESOURCE_EXHAUSTED", 503 => "UNAVAILABLE", _ => "INVALID_ARGUMENT" }}});
    (status, Json(body)).into_response()
}

/// Checks the bearer token and the injected throttling; `Some` is the response to send.
fn gmail_gate(sh: &Shared, headers: &HeaderMap) -> Option<Response> {
    let mut s = sh.lock();
    if s.throttle > 0 {
        s.throttle -= 1;
        let mut r = google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "userRateLimitExceeded",
            "User-rate limit exceeded.  Retry after 2026-02-26T19:14:00.000Z",
        );
        if let Some(ra) = &s.throttle_retry_after {
            r.headers_mut().insert("retry-after", ra.parse().unwrap());
        }
        return Some(r);
    }
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match s.access.get(token) {
        Some((_, exp)) if *exp > chrono::Utc::now().timestamp() => None,
        _ => Some(google_error(
            StatusCode::UNAUTHORIZED,
            "authError",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        )),
    }
}

async fn authorize(State(sh): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (Some(redirect), Some(challenge)) = (q.get("redirect_uri"), q.get("code_challenge")) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri and code_challenge are required").into_response();
    };
    if q.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || q.get("code_challenge_method").map(String::as_str) != Some("S256")
        || q.get("response_type").map(String::as_str) != Some("code")
    {
        return (StatusCode::BAD_REQUEST, "invalid_request").into_response();
    }
    let mut s = sh.lock();
    let code = new_token(&mut s, "4/mock-code");
    // Google only hands out a refresh token when the user saw the consent screen.
    let consent = q.get("prompt").is_some_and(|p| p.split(' ').any(|x| x == "consent"))
        && q.get("access_type").map(String::as_str) == Some("offline");
    s.codes.insert(code.clone(), (challenge.clone(), redirect.clone(), consent));
    let mut loc = url_with(redirect, &[("code", &code)]);
    if let Some(st) = q.get("state") {
        loc = url_with(&loc, &[("state", st)]);
    }
    Redirect::to(&loc).into_response()
}

fn url_with(base: &str, params: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse(base).expect("redirect_uri is a URL");
    for (k, v) in params {
        u.query_pairs_mut().append_pair(k, v);
    }
    u.to_string()
}

fn token_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error, "error_description": description}))).into_response()
}

async fn token(State(sh): State<Shared>, Form(f): Form<HashMap<String, String>>) -> Response {
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "The OAuth client was not found."})),
        )
            .into_response();
    }
    let mut s = sh.lock();
    let scope = "https://www.googleapis.com/auth/gmail.readonly";
    match f.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            match s.grants.get(&rt) {
                Some(g) if !g.revoked => {
                    let at = issue_access(&mut s, &rt);
                    // No new refresh_token: Google keeps the old one.
                    Json(json!({"access_token": at, "expires_in": 3599, "scope": scope, "token_type": "Bearer"}))
                        .into_response()
                }
                _ => token_error("invalid_grant", "Token has been expired or revoked."),
            }
        }
        Some("authorization_code") => {
            let code = f.get("code").cloned().unwrap_or_default();
            let Some((challenge, redirect, consent)) = s.codes.remove(&code) else {
                return token_error("invalid_grant", "Malformed auth code.");
            };
            if f.get("redirect_uri") != Some(&redirect) {
                return token_error("redirect_uri_mismatch", "Bad Request");
            }
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            let computed = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
            if computed != challenge {
                return token_error("invalid_grant", "Invalid code verifier.");
            }
            let rt = new_token(&mut s, "1//mock-refresh");
            s.grants.insert(rt.clone(), Grant { revoked: false });
            let at = issue_access(&mut s, &rt);
            // An OpenID Connect ID token for the account, signed with the published key.
            let now = chrono::Utc::now().timestamp();
            let claims = json!({"iss": s.issuer, "aud": CLIENT_ID, "sub": format!("sub-{}", s.email),
                "email": s.email, "email_verified": true, "iat": now, "exp": now + 600});
            let mut header = Header::new(Algorithm::RS256);
            header.kid = Some(GOOD_KID.into());
            let id_token = jsonwebtoken::encode(&header, &claims, &sh.id_key).unwrap();
            let mut body = json!({"access_token": at, "expires_in": 3599, "scope": scope, "token_type": "Bearer",
                "id_token": id_token});
            if consent {
                body["refresh_token"] = json!(rt);
            }
            Json(body).into_response()
        }
        _ => token_error("unsupported_grant_type", "Invalid grant_type."),
    }
}

async fn certs(State(sh): State<Shared>) -> Response {
    let max_age = sh.lock().jwks_max_age;
    let mut r = Json((*sh.jwks).clone()).into_response();
    r.headers_mut().insert(
        "cache-control",
        format!("public, max-age={max_age}, must-revalidate, no-transform").parse().unwrap(),
    );
    r
}

async fn watch(State(sh): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = gmail_gate(&sh, &headers) {
        return r;
    }
    let Some(topic) = body["topicName"].as_str() else {
        return google_error(StatusCode::BAD_REQUEST, "invalidArgument", "Invalid topicName");
    };
    let mut s = sh.lock();
    let exp = (chrono::Utc::now() + chrono::Duration::days(7)).timestamp_millis() as u64;
    s.watch = Some((topic.to_string(), exp));
    Json(json!({"historyId": s.history_id.to_string(), "expiration": exp.to_string()})).into_response()
}

async fn stop(State(sh): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = gmail_gate(&sh, &headers) {
        return r;
    }
    sh.lock().watch = None;
    StatusCode::NO_CONTENT.into_response()
}

async fn profile(State(sh): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = gmail_gate(&sh, &headers) {
        return r;
    }
    let s = sh.lock();
    let live = s.messages.values().filter(|m| !m.gone).count();
    Json(json!({"emailAddress": s.email, "messagesTotal": live, "threadsTotal": live,
        "historyId": s.history_id.to_string()}))
    .into_response()
}

fn ref_json(m: &Msg, with_labels: bool) -> Value {
    let mut v = json!({"id": m.id, "threadId": m.thread_id});
    if with_labels {
        v["labelIds"] = json!(m.labels);
    }
    v
}

async fn history(
    State(sh): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = gmail_gate(&sh, &headers) {
        return r;
    }
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(start) = get("startHistoryId").and_then(|v| v.parse::<u64>().ok()) else {
        return google_error(StatusCode::BAD_REQUEST, "invalidArgument", "Missing startHistoryId");
    };
    if q.iter().any(|(n, v)| n == "historyTypes" && v != "messageAdded") {
        return google_error(StatusCode::BAD_REQUEST, "invalidArgument", "mock supports messageAdded only");
    }
    let s = sh.lock();
    if start < s.floor {
        return google_error(StatusCode::NOT_FOUND, "notFound", "Requested entity was not found.");
    }
    let max = get("maxResults").and_then(|v| v.parse::<usize>().ok()).unwrap_or(100).min(500);
    let size = max.min(s.page_size);
    let offset =
        get("pageToken").and_then(|t| t.strip_prefix("p").and_then(|n| n.parse::<usize>().ok())).unwrap_or(0);
    let entries: Vec<&HistoryEntry> = s.history.iter().filter(|h| h.id > start).collect();
    let page: Vec<Value> = entries
        .iter()
        .skip(offset)
        .take(size)
        .map(|h| {
            let m = &s.messages[&h.msg];
            json!({"id": h.id.to_string(), "messages": [ref_json(m, false)],
                "messagesAdded": [{"message": ref_json(m, true)}]})
        })
        .collect();
    let mut body = json!({"historyId": s.history_id.to_string()});
    if !page.is_empty() {
        body["history"] = json!(page);
    }
    if offset + size < entries.len() {
        body["nextPageToken"] = json!(format!("p{}", offset + size));
    }
    Json(body).into_response()
}

async fn messages_list(
    State(sh): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(r) = gmail_gate(&sh, &headers) {
        return r;
    }
    let labels: Vec<&str> = q.iter().filter(|(n, _)| n == "labelIds").map(|(_, v)| v.as_str()).collect();
    let query = q.iter().find(|(n, _)| n == "q").map(|(_, v)| v.as_str()).unwrap_or("");
    let mut since = i64::MIN;
    for term in query.split_whitespace() {
        let Some(d) = term.strip_prefix("newer_than:").and_then(|d| d.strip_suffix('d')) else {
            return google_error(
                StatusCode::BAD_REQUEST,
                "invalidArgument",
                "mock understands newer_than:Nd only",
            );
        };
        let Ok(days) = d.parse::<i64>() else {
            return google_error(StatusCode::BAD_REQUEST, "invalidArgument", "Invalid query");
        };
        since = (chrono::Utc::now() - chrono::Duration::days(days)).timestamp_millis();
    }
    let s = sh.lock();
    let size = q
        .iter()
        .find(|(n, _)| n == "maxResults")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(100)
        .min(s.page_size);
    let offset = q
        .iter()
        .find(|(n, _)| n == "pageToken")
        .and_then(|(_, t)| t.strip_prefix("p").and_then(|n| n.parse::<usize>().ok()))
        .unwrap_or(0);
    // Newest first, as Gmail lists.
    let matching: Vec<&Msg> = s
        .order
        .iter()
        .rev()
        .map(|id| &s.messages[id])
        .filter(|m| {
            !m.gone && m.internal_date >= since && labels.iter().all(|l| m.labels.iter().any(|x| x == l))
        })
        .collect();
    let page: Vec<Value> = matching.iter().skip(offset).take(size).map(|m| ref_json(m, false)).collect();
    let mut body = json!({"resultSizeEstimate": matching.len()});
    if !page.is_empty() {
        body["messages"] = json!(page);
    }
    if offset + size < matching.len() {
        body["nextPageToken"] = json!(format!("p{}", offset + size));
    }
    Json(body).into_response()
}

async fn message_get(
    State(sh): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = gmail_gate(&sh, &headers) {
        return r;
    }
    if q.get("format").map(String::as_str) != Some("raw") {
        return google_error(StatusCode::BAD_REQUEST, "invalidArgument", "mock serves format=raw only");
    }
    let mut held = sh.gets_held.subscribe();
    let _ = held.wait_for(|h| !*h).await;
    let s = sh.lock();
    if s.broken.as_deref() == Some(id.as_str()) {
        let mut r = google_error(StatusCode::SERVICE_UNAVAILABLE, "backendError", "Backend Error");
        r.headers_mut().insert("retry-after", "0".parse().unwrap());
        return r;
    }
    match s.messages.get(&id) {
        Some(m) if !m.gone => Json(json!({
            "id": m.id, "threadId": m.thread_id, "labelIds": m.labels, "snippet": "",
            "sizeEstimate": m.raw.len(), "historyId": s.history_id.to_string(),
            "internalDate": m.internal_date.to_string(),
            "raw": URL_SAFE_NO_PAD.encode(&m.raw),
        }))
        .into_response(),
        _ => google_error(StatusCode::NOT_FOUND, "notFound", "Requested entity was not found."),
    }
}

/// users.messages.send (protocols.md 1.5): `raw` is the base64url MIME; the message is
/// filed with the SENT label, in `threadId` when that thread exists (404 otherwise, as
/// Gmail answers an unknown thread), and recorded in history so the next sync sees it.
async fn message_send(State(sh): State<Shared>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = gmail_gate(&sh, &headers) {
        return r;
    }
    let mut s = sh.lock();
    if let Some((status, reason, message)) = s.send_failure.take() {
        return google_error(StatusCode::from_u16(status).unwrap(), &reason, &message);
    }
    let Some(raw) = body.get("raw").and_then(Value::as_str) else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "invalidArgument",
            "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
        );
    };
    let Ok(mime) = URL_SAFE_NO_PAD.decode(raw.trim_end_matches('=')).or_else(|_| URL_SAFE.decode(raw)) else {
        return google_error(StatusCode::BAD_REQUEST, "invalidArgument", "Invalid value for ByteString");
    };
    let head =
        String::from_utf8_lossy(&mime).split("\r\n\r\n").next().unwrap_or_default().to_ascii_lowercase();
    if !head.lines().any(|l| l.starts_with("to:") || l.starts_with("cc:") || l.starts_with("bcc:")) {
        return google_error(StatusCode::BAD_REQUEST, "invalidArgument", "Recipient address required");
    }
    let thread = match body.get("threadId").and_then(Value::as_str) {
        None => None,
        Some(t) if s.messages.values().any(|m| m.thread_id == t) => Some(t.to_string()),
        Some(_) => return google_error(StatusCode::NOT_FOUND, "notFound", "Requested entity was not found."),
    };
    // Mail to oneself is filed in the inbox too (one message, both labels), as Gmail does.
    let own = s.email.to_ascii_lowercase();
    let to_self = head.lines().any(|l| (l.starts_with("to:") || l.starts_with("cc:")) && l.contains(&own));
    let labels: &[&str] = if to_self { &["SENT", "INBOX"] } else { &["SENT"] };
    let id = store_message(&mut s, &mime, labels, chrono::Utc::now().timestamp_millis(), thread);
    s.sent.push(mime);
    push_change(&sh, &s);
    let m = &s.messages[&id];
    Json(json!({"id": m.id, "threadId": m.thread_id, "labelIds": m.labels})).into_response()
}
