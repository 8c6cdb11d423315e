//! Gmail connections end to end, in-process: the mock Google (tests/src/mock_google.rs)
//! for OAuth, JWKS, Pub/Sub tokens and the mailbox; the push webhook on an axum router on
//! loopback; the sync worker draining the sync queue; the pipeline stages after it.
//! Mail is gen_corpus.py's, as one Gmail mailbox (sales@): inbound mail labelled INBOX,
//! outbound labelled SENT.

use chrono::Utc;
use mailroom_app::mailbox::connection::{self, Connection, Provider, State as ConnState};
use mailroom_app::mailbox::gmail::{self, PushOutcome};
use mailroom_app::mailbox::sync::{SourceError, SyncReport, SyncRequest};
use mailroom_app::runtime::config::{GoogleConfig, ProvidersConfig};
use mailroom_app::{Ports, Stages, mailbox::oauth};
use mailroom_core::EmailAddress;
use mailroom_store::Query;
use mailroom_tests::mock_google::{self, DataEncoding, Jwt, MockGoogle};
use mailroom_tests::{acme_workspace, gen_corpus};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

const INBOX: &str = "sales@acme-corp.example";

/// One message of the corpus as it sits in the Gmail mailbox.
#[derive(Clone)]
struct Mail {
    raw: Vec<u8>,
    labels: Vec<&'static str>,
    message_id: String,
}

/// gen_corpus.py's messages of sales@, in arrival order: at least `min` of them.
fn corpus(min: usize, seed: u32) -> Vec<Mail> {
    let dir = tempfile::tempdir().unwrap();
    // About a third of the generated mail is sales@'s.
    gen_corpus(dir.path(), (min * 2).max(20) as u32, seed);
    let mut out = Vec::new();
    for l in std::fs::read_to_string(dir.path().join("truth.jsonl")).unwrap().lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        if v["delivered_to"] != INBOX {
            continue;
        }
        let labels = if v["direction"] == "outbound" {
            vec!["SENT"]
        } else {
            vec!["INBOX", "UNREAD", "CATEGORY_PERSONAL"]
        };
        out.push(Mail {
            raw: std::fs::read(dir.path().join(v["file"].as_str().unwrap())).unwrap(),
            labels,
            message_id: v["message_id"].as_str().unwrap().to_string(),
        });
    }
    assert!(out.len() >= min, "the corpus gave sales@ {} messages, fewer than {min}", out.len());
    assert!(min < 10 || out.iter().any(|m| m.labels == ["SENT"]), "the corpus should have Sent mail");
    out
}

fn noise(subject: &str) -> Vec<u8> {
    format!(
        "From: someone@example.net\r\nTo: {INBOX}\r\nSubject: {subject}\r\nMessage-ID: <{}@example.net>\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\n\r\nbody\r\n",
        rand::random::<u64>()
    )
    .into_bytes()
}

struct Env {
    _dir: tempfile::TempDir,
    ports: Ports,
    mock: MockGoogle,
    cfg: GoogleConfig,
    inbox: EmailAddress,
    base: String,
    hook_url: String,
    web: Arc<mailroom_app::mailbox::routes::WebState>,
    http: reqwest::Client,
    _server: tokio::task::JoinHandle<()>,
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::embedded(dir.path()).unwrap();
        mailroom_app::workspace::apply(&ports, &acme_workspace()).await.unwrap();
        let mock = MockGoogle::start(INBOX).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut providers = ProvidersConfig::from_env(&base).unwrap();
        providers.public_url = base.clone();
        let g = &mut providers.google;
        g.oauth.client_id = mock_google::CLIENT_ID.into();
        g.oauth.client_secret = Some(mock_google::CLIENT_SECRET.into());
        g.oauth.auth_url = mock.auth_url();
        g.oauth.token_url = mock.token_url();
        g.oauth.redirect_url = format!("{base}/oauth/callback");
        g.api_base = mock.url.clone();
        g.jwks_url = mock.jwks_url();
        g.pubsub_audience = mock_google::PUSH_AUDIENCE.into();
        g.pubsub_email = mock_google::PUSH_EMAIL.into();
        g.topic = mock_google::TOPIC.into();
        providers.backfill_days = 14;
        let cfg = providers.google.clone();
        // The production router: the OAuth callback and the webhook.
        let web =
            Arc::new(mailroom_app::mailbox::routes::WebState::new(ports.clone(), providers.clone()).unwrap());
        let app = mailroom_app::mailbox::routes::router(web.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Env {
            _dir: dir,
            ports,
            mock,
            cfg,
            inbox: EmailAddress::parse(INBOX).unwrap(),
            hook_url: format!("{base}/webhooks/gmail"),
            base,
            web,
            http,
            _server: server,
        }
    }

    /// Connects the mailbox the way an admin and the user do: the consent started as the
    /// API's connect route starts it (`oauth::start`), the authorize URL at Google (PKCE;
    /// the mock consents), the callback route (which queues the `connect` request). The
    /// worker then runs it (`drain_sync`).
    async fn connect(&self) {
        let url = mailroom_app::mailbox::oauth::start(
            &self.ports,
            &self.web.cfg,
            mailroom_app::mailbox::connection::Provider::Gmail,
            &self.inbox,
        )
        .await
        .unwrap();
        let resp = self.http.get(&url).send().await.unwrap();
        assert!(resp.status().is_redirection(), "authorize answered {}", resp.status());
        let back = resp.headers()["location"].to_str().unwrap().to_string();
        assert!(back.starts_with(&format!("{}/oauth/callback?", self.base)), "{back}");
        let page = self.http.get(&back).send().await.unwrap();
        assert_eq!(page.status().as_u16(), 200, "callback: {}", page.text().await.unwrap());
        let queued = self.ports.sync_queue.approximate_len().await.unwrap();
        assert!(queued >= 1, "the callback queued no connect request");
    }

    /// After the `connect` request ran: the watch is set and kept in the settings.
    async fn assert_watched(&self) {
        let (topic, exp) = self.mock.watch_state().expect("users.watch was called");
        assert_eq!(topic, mock_google::TOPIC);
        let c = connection::get(&self.ports, &self.inbox).await.unwrap().unwrap();
        assert_eq!(c.settings["watch"]["expiration_ms"], json!(exp), "watch expiry kept in the settings");
    }

    /// A connection with tokens but no watch and no cursor (for webhook-only tests).
    async fn connection_only(&self) {
        let c = Connection {
            inbox: INBOX.into(),
            provider: Provider::Gmail,
            settings: json!({"backfill_days": 14}),
            state: ConnState::Connected,
            connected_at: Utc::now(),
            last_success: None,
            last_error: None,
            last_error_at: None,
            lag_seconds: None,
            consecutive_failures: 0,
        };
        connection::save(&self.ports, &c).await.unwrap();
        let (access, refresh) = self.mock.grant();
        let t = oauth::TokenSet {
            access_token: access,
            refresh_token: Some(refresh),
            expires_at: Utc::now() + chrono::Duration::minutes(50),
        };
        oauth::store_tokens(&self.ports, &self.inbox, &t).await.unwrap();
    }

    async fn push_as(&self, jwt: Option<String>, body: Vec<u8>) -> u16 {
        let mut req = self.http.post(&self.hook_url).header("content-type", "application/json").body(body);
        if let Some(t) = jwt {
            req = req.bearer_auth(t);
        }
        req.send().await.unwrap().status().as_u16()
    }

    /// A genuine push for the mailbox's current historyId.
    async fn push(&self) -> u16 {
        let body = self.mock.push_body(INBOX, self.mock.history_id(), DataEncoding::UrlNoPad);
        self.push_as(Some(self.mock.push_jwt(Jwt::Good)), body).await
    }

    /// Runs the sync worker over the sync queue until it is empty.
    async fn drain_sync(&self) -> Vec<Result<SyncReport, SourceError>> {
        let mut out = Vec::new();
        loop {
            let msgs =
                self.ports.sync_queue.receive(10, Duration::from_secs(60), Duration::ZERO).await.unwrap();
            if msgs.is_empty() {
                return out;
            }
            for m in msgs {
                let req: SyncRequest = serde_json::from_str(&m.body).unwrap();
                assert_eq!(req.provider, Provider::Gmail);
                let inbox = EmailAddress::parse(&req.inbox).unwrap();
                // As `sync::handle` dispatches.
                out.push(if req.reason == "connect" {
                    gmail::on_connect(&self.ports, &self.cfg, &inbox).await
                } else {
                    gmail::sync(&self.ports, &self.cfg, &inbox, &req).await
                });
                self.ports.sync_queue.delete(&m.receipt).await.unwrap();
            }
        }
    }

    async fn sync_ok(&self) -> SyncReport {
        let rs = self.drain_sync().await;
        assert!(!rs.is_empty(), "no sync request was queued");
        let mut total = SyncReport::default();
        for r in rs {
            total.add(&r.unwrap_or_else(|e| panic!("sync failed: {e}")));
        }
        total
    }

    async fn sync_len(&self) -> u64 {
        self.ports.sync_queue.approximate_len().await.unwrap()
    }

    /// Gmail ids of the stored raw copies, with how often each was stored.
    async fn stored(&self) -> BTreeMap<String, (usize, String)> {
        let copies = self
            .ports
            .table
            .query_all(Query::new(mailroom_app::keys::copies_index_pk(&self.inbox)).index("gsi1"))
            .await
            .unwrap();
        let mut out: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for c in copies {
            let p = &c["pointer"];
            assert_eq!(p["source"], "gmail");
            let e = out
                .entry(p["source_id"].as_str().unwrap().to_string())
                .or_insert((0, p["folder"].as_str().unwrap_or("inbox").to_string()));
            e.0 += 1;
        }
        out
    }

    async fn cursor(&self) -> Option<u64> {
        connection::get_cursor(&self.ports, &self.inbox, gmail::CURSOR)
            .await
            .unwrap()
            .and_then(|c| c.value["history_id"].as_str().and_then(|s| s.parse().ok()))
    }

    async fn state(&self) -> ConnState {
        connection::get(&self.ports, &self.inbox).await.unwrap().unwrap().state
    }
}

/// Adds messages to the mock mailbox; returns (gmail id, mail).
fn add_all(mock: &MockGoogle, mails: &[Mail]) -> Vec<(String, Mail)> {
    mails.iter().map(|m| (mock.add_message(&m.raw, &m.labels), m.clone())).collect()
}

fn assert_once(stored: &BTreeMap<String, (usize, String)>, expected: &[(String, Mail)]) {
    let want: BTreeSet<&String> = expected.iter().map(|(id, _)| id).collect();
    let got: BTreeSet<&String> = stored.keys().collect();
    assert_eq!(got, want, "stored Gmail ids differ from the mailbox's INBOX/SENT messages");
    for (id, m) in expected {
        let (n, folder) = &stored[id];
        assert_eq!(*n, 1, "{id} stored {n} times");
        let want_folder = if m.labels.contains(&"INBOX") { "inbox" } else { "sent" };
        assert_eq!(folder, want_folder, "{id} filed in the wrong folder");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_backfill_then_pushes_ingest_inbox_and_sent_exactly_once() {
    let env = Env::new().await;
    let mails = corpus(20, 71);
    let (before, after) = mails.split_at(mails.len() / 3);
    // Older than the 14-day backfill: never imported.
    let old = env.mock.add_message_at(
        &noise("old"),
        &["INBOX"],
        (Utc::now() - chrono::Duration::days(40)).timestamp_millis(),
    );
    let mut expected = add_all(&env.mock, before);
    env.connect().await;
    let r = env.sync_ok().await;
    assert_eq!((r.stored, r.duplicates), (before.len() as u32, 0), "backfill: {r:?}");
    env.assert_watched().await;
    assert_once(&env.stored().await, &expected);
    assert!(!env.stored().await.contains_key(&old), "mail older than the backfill window was imported");
    assert_eq!(env.cursor().await, Some(env.mock.history_id()), "backfill baselines the cursor");

    // New mail, with drafts, spam and chat among it, over several history pages.
    env.mock.set_page_size(3);
    let mut new = Vec::new();
    for (i, m) in after.iter().enumerate() {
        new.push((env.mock.add_message(&m.raw, &m.labels), m.clone()));
        if i % 4 == 0 {
            env.mock.add_message(&noise("draft"), &["DRAFT"]);
            env.mock.add_message(&noise("spam"), &["SPAM", "INBOX"]);
            env.mock.add_message(&noise("chat"), &["CHAT"]);
        }
        // Pushes arrive (and are queued) as mail comes in; the worker runs behind.
        if i % 5 == 0 {
            assert_eq!(env.push().await, 204);
        }
    }
    assert_eq!(env.push().await, 204);
    let history_calls = env.mock.count("GET", "/history");
    let r = env.sync_ok().await;
    assert_eq!(r.stored, after.len() as u32, "{r:?}");
    assert_eq!(r.duplicates, 0, "{r:?}");
    let pages = env.mock.count("GET", "/history") - history_calls;
    assert!(pages >= (after.len() * 2 / 3), "history paging: only {pages} history.list calls");
    expected.extend(new);
    assert_once(&env.stored().await, &expected);
    assert_eq!(env.cursor().await, Some(env.mock.history_id()));

    // A second push for the same change, and one for a change with no new mail.
    let gets = env.mock.count("GET", "/messages/");
    assert_eq!(env.push().await, 204);
    assert_eq!(env.sync_len().await, 0, "a push the cursor already covers is not queued");
    env.mock.delete_message(&expected[0].0);
    assert_eq!(env.push().await, 204);
    let r = env.sync_ok().await;
    assert_eq!((r.fetched, r.stored), (0, 0), "{r:?}");
    assert_eq!(env.mock.count("GET", "/messages/"), gets, "nothing fetched again");
    assert_once(&env.stored().await, &expected);

    // Through the pipeline: each message recorded once, nothing dead-lettered.
    let done = Stages::new(&env.ports).retry_base(Duration::from_millis(20)).drain().await.unwrap();
    assert_eq!(done.failed, 0);
    let stats = mailroom_app::views::stats::collect(&env.ports).await.unwrap();
    assert_eq!(stats.dead_lettered(), 0);
    assert_eq!(stats.copies, expected.len() as u64);
    assert_eq!(stats.processed, expected.len() as u64);
    let ids: BTreeSet<&str> = expected.iter().map(|(_, m)| m.message_id.as_str()).collect();
    assert_eq!(stats.messages, ids.len() as u64, "messages recorded");
    let c = connection::get(&env.ports, &env.inbox).await.unwrap().unwrap();
    assert_eq!((c.state, c.consecutive_failures), (ConnState::Connected, 0));
    assert!(c.last_success.is_some() && c.lag_seconds.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_history_runs_a_bounded_full_sync_with_nothing_lost_or_doubled() {
    let env = Env::new().await;
    let mails = corpus(12, 89);
    let (first, rest) = mails.split_at(mails.len() / 2);
    let mut expected = add_all(&env.mock, first);
    env.connect().await;
    env.sync_ok().await;
    let cursor = env.cursor().await.unwrap();
    env.mock.set_page_size(2);
    let new = add_all(&env.mock, rest);
    env.mock.add_message(&noise("spam"), &["SPAM"]);
    // Gmail forgot the history the cursor points into.
    env.mock.expire_history_before(cursor + 1);
    assert_eq!(env.push().await, 204);
    let r = env.sync_ok().await;
    assert_eq!(r.stored, rest.len() as u32, "{r:?}");
    assert_eq!(r.duplicates, first.len() as u32, "the full sync re-lists the known mail: {r:?}");
    expected.extend(new);
    assert_once(&env.stored().await, &expected);
    assert_eq!(env.cursor().await, Some(env.mock.history_id()), "re-baselined from getProfile");
    // One when the inbox was connected (whose mailbox is it?), one per full sync.
    assert_eq!(env.mock.count("GET", "/profile"), 3, "one getProfile per full sync");
    let q = env.mock.requests().into_iter().rfind(|r| r.path.ends_with("/messages")).unwrap();
    assert!(
        q.query.contains("newer_than%3A2d") || q.query.contains("newer_than:2d"),
        "bounded window: {}",
        q.query
    );
    let ev = connection::events(&env.ports, &env.inbox).await.unwrap();
    assert!(ev.iter().any(|e| e["type"] == "gmail_history_expired"), "{ev:?}");

    // History works again from the new baseline.
    let more = add_all(&env.mock, &corpus(3, 79)[..3]);
    assert_eq!(env.push().await, 204);
    let r = env.sync_ok().await;
    assert_eq!((r.stored, r.duplicates), (3, 0), "{r:?}");
    expected.extend(more);
    assert_once(&env.stored().await, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_push_tokens_are_refused_before_the_body_and_queue_nothing() {
    let env = Env::new().await;
    env.connection_only().await;
    let body = || env.mock.push_body(INBOX, 5_000_000, DataEncoding::UrlNoPad);
    assert_eq!(env.push_as(None, body()).await, 401, "no token");
    assert_eq!(env.push_as(Some("not.a.jwt".into()), body()).await, 401);
    for (v, status) in [
        (Jwt::Expired, 401),
        (Jwt::UnknownKid, 401),
        (Jwt::WrongIssuer, 401),
        (Jwt::OtherKey, 401),
        (Jwt::Hs256, 401),
        (Jwt::BadAudience, 403),
        (Jwt::WrongEmail, 403),
        (Jwt::EmailUnverified, 403),
    ] {
        assert_eq!(env.push_as(Some(env.mock.push_jwt(v)), body()).await, status, "{v:?}");
        // Refused before the body is read: even a garbage body gets the same answer.
        assert_eq!(env.push_as(Some(env.mock.push_jwt(v)), b"{garbage".to_vec()).await, status, "{v:?}");
    }
    assert_eq!(env.sync_len().await, 0, "a forged push queued a sync");
    // Unknown kids refetch the JWKS once, not once per token.
    assert!(env.mock.count("GET", "/certs") <= 2, "JWKS fetched {} times", env.mock.count("GET", "/certs"));
    assert_eq!(env.web.gmail_verifier.jwks_fetches(), env.mock.count("GET", "/certs") as u64);

    for v in [Jwt::Good, Jwt::GoodBareIssuer] {
        assert_eq!(env.push_as(Some(env.mock.push_jwt(v)), body()).await, 204, "{v:?}");
    }
    assert_eq!(env.sync_len().await, 2);
    assert!(env.mock.count("GET", "/certs") <= 2, "the JWKS is cached for its max-age");
    assert_eq!(env.mock.count("GET", "/gmail/"), 0, "the webhook called Gmail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_data_in_either_base64_alphabet_is_accepted_and_odd_pushes_are_acked_or_refused() {
    let env = Env::new().await;
    env.connection_only().await;
    let good = || Some(env.mock.push_jwt(Jwt::Good));
    let mut hid = 1u64 << 60;
    for enc in
        [DataEncoding::UrlNoPad, DataEncoding::UrlPadded, DataEncoding::Standard, DataEncoding::StandardNoPad]
    {
        hid += 1;
        assert_eq!(env.push_as(good(), env.mock.push_body(INBOX, hid, enc)).await, 204, "{enc:?}");
    }
    let msgs = env.ports.sync_queue.receive(10, Duration::from_secs(30), Duration::ZERO).await.unwrap();
    let hints: BTreeSet<String> = msgs
        .iter()
        .map(|m| {
            let r: SyncRequest = serde_json::from_str(&m.body).unwrap();
            assert_eq!((r.inbox.as_str(), r.reason.as_str()), (INBOX, "push"));
            r.hint["history_id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(hints.len(), 4, "historyId kept exactly, as a string: {hints:?}");
    assert!(hints.contains(&((1u64 << 60) + 1).to_string()));
    for m in msgs {
        env.ports.sync_queue.delete(&m.receipt).await.unwrap();
    }

    // Not our mailbox: acked (Pub/Sub would retry for days otherwise), nothing queued.
    assert_eq!(
        env.push_as(good(), env.mock.push_body("stranger@elsewhere.example", 9, DataEncoding::UrlNoPad))
            .await,
        204
    );
    // Authenticated but unreadable: 400.
    assert_eq!(env.push_as(good(), br#"{"message":{"data":"%%%"}}"#.to_vec()).await, 400);
    assert_eq!(env.push_as(good(), br#"{"subscription":"x"}"#.to_vec()).await, 400);
    let data = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        br#"{"emailAddress":"sales@acme-corp.example","historyId":12.5}"#,
    );
    assert_eq!(env.push_as(good(), json!({"message": {"data": data}}).to_string().into_bytes()).await, 400);
    assert_eq!(env.sync_len().await, 0);

    // A mailbox that must be reconnected: acked, not queued.
    connection::record_error(&env.ports, &env.inbox, "invalid_grant", connection::Failure::Terminal)
        .await
        .unwrap();
    let o = gmail::accept_push(&env.ports, &env.mock.push_body(INBOX, hid + 1, DataEncoding::Standard)).await;
    assert!(matches!(o, PushOutcome::NotSyncing(_)), "{o:?}");
    assert_eq!(env.sync_len().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_grant_needs_reconnect_without_retries_and_the_reconnect_loses_nothing() {
    let env = Env::new().await;
    let mails = corpus(12, 83);
    let (first, rest) = mails.split_at(mails.len() / 3);
    let mut expected = add_all(&env.mock, first);
    env.connect().await;
    env.sync_ok().await;
    let (second, third) = rest.split_at(rest.len() / 2);
    let during = add_all(&env.mock, second);

    // The user removes Mailroom's access in their Google account.
    let secret = connection::get_secret(&env.ports, &env.inbox, oauth::SECRET).await.unwrap().unwrap();
    let tokens: oauth::TokenSet = serde_json::from_slice(&secret.value).unwrap();
    env.mock.revoke(tokens.refresh_token.as_deref().unwrap());
    let token_calls = env.mock.count("POST", "/token");
    assert_eq!(env.push().await, 204);
    let rs = env.drain_sync().await;
    assert_eq!(rs.len(), 1);
    assert!(matches!(rs[0], Err(SourceError::Reconnect(_))), "{:?}", rs[0]);
    assert_eq!(
        env.mock.count("POST", "/token") - token_calls,
        1,
        "a dead grant is refreshed once, not retried"
    );
    assert_eq!(env.state().await, ConnState::ReconnectRequired);
    let ev = connection::events(&env.ports, &env.inbox).await.unwrap();
    assert_eq!(ev.iter().filter(|e| e["type"] == "inbox_reconnect_required").count(), 1, "{ev:?}");
    // Further pushes and fallbacks do nothing until the user reconnects.
    assert_eq!(env.push().await, 204);
    assert_eq!(mailroom_app::mailbox::schedule::enqueue_fallback(&env.ports).await.unwrap().queued, 0);
    assert_eq!(env.sync_len().await, 0);
    let renew =
        gmail::renew_watch(&env.ports, &env.cfg, Utc::now() + chrono::Duration::days(2)).await.unwrap();
    assert_eq!((renew.renewed, renew.needs_reconnect), (0, 1));
    assert_eq!(env.mock.count("POST", "/token") - token_calls, 1);

    let late = add_all(&env.mock, third);
    // Reconnect: new tokens, the same cursor; the catch-up backfills from it.
    env.connect().await;
    assert_eq!(env.state().await, ConnState::Connected);
    let r = env.sync_ok().await;
    assert_eq!((r.stored, r.duplicates), ((second.len() + third.len()) as u32, 0), "{r:?}");
    expected.extend(during);
    expected.extend(late);
    assert_once(&env.stored().await, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_within_bounds_and_deleted_mail_is_skipped() {
    let env = Env::new().await;
    let mails = corpus(10, 89);
    env.connect().await;
    env.sync_ok().await;

    // Two 429s, then success: retried, honouring Retry-After.
    env.mock.set_page_size(100);
    let batch = add_all(&env.mock, &mails[..4]);
    env.mock.throttle_next(2, Some("0.05"));
    let h = env.mock.count("GET", "/history");
    assert_eq!(env.push().await, 204);
    let r = env.sync_ok().await;
    assert_eq!(r.stored, 4, "{r:?}");
    assert_eq!(env.mock.count("GET", "/history") - h, 3, "two throttled calls and the one that worked");
    let mut expected = batch;

    // Throttled beyond the retry bound: the sync fails (transient), the cursor stays.
    let cursor = env.cursor().await;
    let batch = add_all(&env.mock, &mails[4..8]);
    env.mock.throttle_next(100, Some("0"));
    assert_eq!(env.push().await, 204);
    let rs = env.drain_sync().await;
    assert!(matches!(rs[..], [Err(SourceError::Transient(_))]), "{rs:?}");
    assert_eq!(env.state().await, ConnState::Degraded);
    assert_eq!(env.cursor().await, cursor);
    assert!(env.mock.count("GET", "/history") - h < 3 + 10, "retries are bounded");

    // Throttling over; a deleted message is skipped, not an error.
    env.mock.throttle_next(0, None);
    let gone = add_all(&env.mock, &mails[8..10]);
    env.mock.delete_message(&gone[0].0);
    assert_eq!(env.push().await, 204);
    let r = env.sync_ok().await;
    assert_eq!((r.stored, r.skipped), (5, 1), "{r:?}");
    assert_eq!(env.state().await, ConnState::Connected);
    expected.extend(batch);
    expected.push(gone[1].clone());
    assert_once(&env.stored().await, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cursor_moves_only_after_the_last_page() {
    let env = Env::new().await;
    let mails = corpus(10, 97);
    env.connect().await;
    env.sync_ok().await;
    let cursor = env.cursor().await;
    env.mock.set_page_size(2);
    let all = add_all(&env.mock, &mails[..7]);
    // Page 3 of 4 has a message Gmail keeps failing (5xx): the sync stops there.
    env.mock.break_message(Some(&all[5].0));
    assert_eq!(env.push().await, 204);
    let rs = env.drain_sync().await;
    assert!(matches!(rs[..], [Err(SourceError::Transient(_))]), "{rs:?}");
    assert_eq!(env.cursor().await, cursor, "the cursor moved before the last page");
    assert_eq!(env.stored().await.len(), 5, "the pages before the failure were ingested");
    // Gmail recovers: the next sync re-lists from the old cursor; nothing twice.
    env.mock.break_message(None);
    assert_eq!(env.push().await, 204);
    let r = env.sync_ok().await;
    assert_eq!((r.stored, r.duplicates), (2, 5), "{r:?}");
    assert_once(&env.stored().await, &all);
    assert_eq!(env.cursor().await, Some(env.mock.history_id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_during_a_running_sync_is_picked_up_by_the_holder() {
    let env = Env::new().await;
    let mails = corpus(2, 97);
    env.connect().await;
    env.sync_ok().await;
    let one = add_all(&env.mock, &mails[..1]);
    env.mock.hold_gets();
    let req = |h: u64| SyncRequest {
        inbox: INBOX.into(),
        provider: Provider::Gmail,
        reason: "push".into(),
        hint: json!({"history_id": h.to_string()}),
    };
    let (ports, cfg, inbox, r1) =
        (env.ports.clone(), env.cfg.clone(), env.inbox.clone(), req(env.mock.history_id()));
    let a = tokio::spawn(async move { gmail::sync(&ports, &cfg, &inbox, &r1).await });
    // Wait until A is fetching (it holds the lease and has listed its history).
    let t = std::time::Instant::now();
    while env.mock.count("GET", &format!("/messages/{}", one[0].0)) == 0 {
        assert!(t.elapsed() < Duration::from_secs(20), "sync A never fetched");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let two = add_all(&env.mock, &mails[1..2]);
    let b = gmail::sync(&env.ports, &env.cfg, &env.inbox, &req(env.mock.history_id())).await.unwrap();
    assert_eq!((b.stored, b.skipped), (0, 1), "B found the lease taken: {b:?}");
    env.mock.release_gets();
    let a = a.await.unwrap().unwrap();
    assert_eq!(a.stored, 2, "A ran another round for B's request: {a:?}");
    let mut expected = one;
    expected.extend(two);
    assert_once(&env.stored().await, &expected);
    assert_eq!(env.cursor().await, Some(env.mock.history_id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_renewal_rewatches_only_what_is_due() {
    let env = Env::new().await;
    env.connect().await;
    env.sync_ok().await;
    env.assert_watched().await;
    let now = Utc::now();
    let r = gmail::renew_watch(&env.ports, &env.cfg, now).await.unwrap();
    assert_eq!((r.renewed, r.not_due), (0, 1), "a fresh watch is not renewed");
    let watches = env.mock.count("POST", "/watch");
    let r = gmail::renew_watch(&env.ports, &env.cfg, now + chrono::Duration::hours(21)).await.unwrap();
    assert_eq!((r.renewed, r.failed), (1, 0));
    assert_eq!(env.mock.count("POST", "/watch"), watches + 1);
    let c = connection::get(&env.ports, &env.inbox).await.unwrap().unwrap();
    assert!(c.settings["watch"]["renewed_at"].is_string());
    assert_eq!(c.settings["backfill_days"], 14, "other settings kept");
    assert_eq!(mailroom_app::mailbox::schedule::enqueue_fallback(&env.ports).await.unwrap().queued, 1);
    gmail::stop_watch(&env.ports, &env.cfg, &env.inbox).await.unwrap();
    assert!(env.mock.watch_state().is_none());
}
