//! Microsoft 365 through Graph, in-process: embedded storage, our two webhooks on an axum
//! router on 127.0.0.1:0 (so that the mock's validation POSTs and notifications reach
//! them), the mock identity platform + Graph of `mailroom_tests::mock_graph`, the sync
//! worker and the pipeline stages run by hand.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{Duration as ChronoDuration, Utc};
use mailroom_app::mailbox::connection::{self, Connection, Provider, State as ConnState};
use mailroom_app::mailbox::sync::{SyncReport, SyncRequest};
use mailroom_app::runtime::config::{MicrosoftConfig, OAuthConfig};
use mailroom_app::{Ports, Stages, keys, mailbox::graph, mailbox::oauth};
use mailroom_core::{EmailAddress, Folder};
use mailroom_store::{Key, Query as TableQuery};
use mailroom_tests::mock_graph::{self, GrantFailure, MockGraph, MockMessage};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn notification_route(
    State(p): State<Ports>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    reply(graph::handle_notification(&p, q.get("validationToken").map(String::as_str), &body).await)
}

async fn lifecycle_route(
    State(p): State<Ports>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    reply(graph::handle_lifecycle(&p, q.get("validationToken").map(String::as_str), &body).await)
}

fn reply(r: graph::WebhookReply) -> Response {
    (StatusCode::from_u16(r.status).unwrap(), [(header::CONTENT_TYPE, r.content_type)], r.body)
        .into_response()
}

struct Harness {
    _dir: tempfile::TempDir,
    ports: Ports,
    mock: MockGraph,
    cfg: MicrosoftConfig,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One message's stored copy, as the ingestor recorded it.
#[derive(Debug, Clone)]
struct Copy {
    source_id: String,
    folder: Folder,
    thread_hint: Option<String>,
    process_count: i64,
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::embedded(dir.path()).unwrap();
        let mock = MockGraph::start().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let webhooks = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .route("/webhooks/graph", post(notification_route))
            .route("/webhooks/graph-lifecycle", post(lifecycle_route))
            .with_state(ports.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        let cfg = MicrosoftConfig {
            oauth: OAuthConfig {
                client_id: mock_graph::CLIENT_ID.into(),
                client_secret: Some(mock_graph::CLIENT_SECRET.into()),
                auth_url: mock.authorize_url(),
                token_url: mock.token_url(),
                scopes: vec!["offline_access".into(), "https://graph.microsoft.com/Mail.Read".into()],
                redirect_url: format!("{webhooks}/oauth/callback"),
            },
            api_base: mock.base.clone(),
            notification_url: format!("{webhooks}/webhooks/graph"),
            lifecycle_url: format!("{webhooks}/webhooks/graph-lifecycle"),
        };
        Harness { _dir: dir, ports, mock, cfg, server }
    }

    /// What the OAuth callback does for a Graph mailbox: tokens, the connection, a
    /// `connect` sync request (the worker runs `graph::on_connect` for it). Returns the
    /// inbox and the mailbox's GUID.
    async fn connect(&self, mail: &str) -> (EmailAddress, String) {
        let user = self.mock.add_user(mail);
        let inbox = EmailAddress::parse(mail).unwrap();
        self.reconnect(&inbox, &user).await;
        (inbox, user)
    }

    async fn reconnect(&self, inbox: &EmailAddress, user: &str) {
        let rt = self.mock.grant(user);
        let conn = Connection {
            inbox: inbox.key(),
            provider: Provider::Graph,
            settings: match connection::get(&self.ports, inbox).await.unwrap() {
                Some(c) => c.settings,
                None => json!({"user_id": user}),
            },
            state: ConnState::Connected,
            connected_at: Utc::now(),
            last_success: None,
            last_error: None,
            last_error_at: None,
            lag_seconds: None,
            consecutive_failures: 0,
        };
        connection::save(&self.ports, &conn).await.unwrap();
        oauth::store_tokens(
            &self.ports,
            inbox,
            &oauth::TokenSet {
                access_token: "expired".into(),
                refresh_token: Some(rt),
                expires_at: Utc::now() - ChronoDuration::minutes(5),
            },
        )
        .await
        .unwrap();
        let req = SyncRequest {
            inbox: inbox.key(),
            provider: Provider::Graph,
            reason: "connect".into(),
            hint: json!({}),
        };
        mailroom_app::mailbox::sync::enqueue(&self.ports, &req).await.unwrap();
    }

    /// Runs the sync worker until its queue is empty (dispatching as `sync::handle` does:
    /// `connect` to `graph::on_connect`, the rest to `graph::sync`), then the pipeline
    /// stages.
    async fn sync(&self) -> Vec<(SyncRequest, Result<SyncReport, String>)> {
        let mut out = Vec::new();
        loop {
            let msgs = self
                .ports
                .sync_queue
                .receive(10, Duration::from_secs(60), Duration::from_millis(0))
                .await
                .unwrap();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                let req: SyncRequest = serde_json::from_str(&m.body).unwrap();
                let inbox = EmailAddress::parse(&req.inbox).unwrap();
                let r = if req.reason == "connect" {
                    graph::on_connect(&self.ports, &self.cfg, &inbox).await.map(|c| c.sync)
                } else {
                    graph::sync(&self.ports, &self.cfg, &inbox, &req).await
                };
                let r = r.map_err(|e| e.to_string());
                self.ports.sync_queue.delete(&m.receipt).await.unwrap();
                out.push((req, r));
            }
        }
        let stages = Stages::new(&self.ports);
        let r = stages.drain().await.unwrap();
        assert_eq!(r.failed, 0, "a pipeline stage failed");
        out
    }

    async fn sync_ok(&self) -> SyncReport {
        let mut total = SyncReport::default();
        for (req, r) in self.sync().await {
            let r = r.unwrap_or_else(|e| panic!("sync {req:?} failed: {e}"));
            total.fetched += r.fetched;
            total.stored += r.stored;
            total.duplicates += r.duplicates;
            total.skipped += r.skipped;
        }
        total
    }

    async fn sync_queue_len(&self) -> u64 {
        self.ports.sync_queue.approximate_len().await.unwrap()
    }

    /// Every stored copy of the inbox.
    async fn copies(&self, inbox: &EmailAddress) -> Vec<Copy> {
        let t = &self.ports.table;
        let mut out = Vec::new();
        for i in t.query_all(TableQuery::new(keys::copies_index_pk(inbox)).index("gsi1")).await.unwrap() {
            let full = t.get(&Key::of(&i).unwrap()).await.unwrap().unwrap();
            let p = &full["pointer"];
            out.push(Copy {
                source_id: p["source_id"].as_str().unwrap_or_default().to_string(),
                folder: serde_json::from_value(p["folder"].clone()).unwrap(),
                thread_hint: p["thread_hint"].as_str().map(str::to_string),
                process_count: full.get("process_count").and_then(Value::as_i64).unwrap_or(-1),
            });
        }
        out
    }

    /// Asserts the inbox holds exactly these messages, each stored and processed once, in
    /// the right folder.
    async fn assert_stored_once(&self, inbox: &EmailAddress, expected: &[(MockMessage, Folder)]) {
        let copies = self.copies(inbox).await;
        let mut seen = HashMap::new();
        for c in &copies {
            *seen.entry(c.source_id.clone()).or_insert(0) += 1;
            assert_eq!(c.process_count, 1, "copy {c:?} processed {} times", c.process_count);
        }
        for (m, folder) in expected {
            let c = copies.iter().find(|c| c.source_id == m.immutable_id).unwrap_or_else(|| {
                panic!("{} ({}) was not ingested; copies: {copies:?}", m.immutable_id, m.internet_message_id)
            });
            assert_eq!(c.folder, *folder, "{} in the wrong folder", m.immutable_id);
            assert_eq!(
                c.thread_hint.as_deref(),
                Some(m.conversation_id.as_str()),
                "conversationId as the thread hint"
            );
            assert_eq!(seen[&m.immutable_id], 1, "{} stored twice", m.immutable_id);
        }
        assert_eq!(copies.len(), expected.len(), "unexpected copies: {copies:?}");
        let messages = mailroom_app::views::conversations::inbox_messages(&self.ports, inbox).await.unwrap();
        assert_eq!(messages.len(), expected.len(), "one message record per message");
    }

    fn deliver(
        &self,
        user: &str,
        folder: &str,
        inbox: &EmailAddress,
        n: u32,
        subject: &str,
    ) -> Vec<MockMessage> {
        (0..n)
            .map(|i| {
                let mid = format!("{subject}-{i}-{}@customer.test", rand::random::<u32>());
                let (from, to) = if folder == "sentitems" {
                    (inbox.to_string(), "customer@customer.test".to_string())
                } else {
                    ("customer@customer.test".to_string(), inbox.to_string())
                };
                let mime = mock_graph::mime(&from, &to, &format!("{subject} {i}"), &mid);
                self.mock.deliver(user, folder, mime, Utc::now() - ChronoDuration::hours(1))
            })
            .collect()
    }

    fn value_fetches(&self, id: &str) -> usize {
        self.mock
            .log()
            .iter()
            .filter(|l| l.uri.contains(&format!("/messages/{id}/$value")) && l.status == 200)
            .count()
    }
}

fn with_folder(msgs: &[MockMessage], f: Folder) -> Vec<(MockMessage, Folder)> {
    msgs.iter().map(|m| (m.clone(), f)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connect_validates_both_urls_and_backfills_inbox_and_sent() {
    let h = Harness::new().await;
    let user = h.mock.add_user("support@acme.test");
    let inbox = EmailAddress::parse("support@acme.test").unwrap();
    let in_msgs = h.deliver(&user, "inbox", &inbox, 3, "Order");
    let sent = h.deliver(&user, "sentitems", &inbox, 2, "Re: Order");
    // Older than the backfill window: not pulled in.
    let old = h.mock.deliver(
        &user,
        "inbox",
        mock_graph::mime("old@customer.test", "support@acme.test", "Ancient", "ancient@customer.test"),
        Utc::now() - ChronoDuration::days(60),
    );
    h.reconnect(&inbox, &user).await;
    let report = h.sync_ok().await;
    assert_eq!((report.fetched, report.stored), (5, 5), "{report:?}");

    let subs = h.mock.subscriptions();
    assert_eq!(subs.len(), 2, "{subs:?}");
    for s in &subs {
        assert_eq!(s.resource, format!("users/{user}/mailFolders('{}')/messages", s.folder));
        assert!(s.expires <= Utc::now() + ChronoDuration::minutes(4230));
        assert!(s.expires > Utc::now() + ChronoDuration::hours(60), "expiry {:?} is too short", s.expires);
        assert_eq!(s.lifecycle_url.as_deref(), Some(h.cfg.lifecycle_url.as_str()));
        assert!(s.client_state.len() >= 32);
    }
    assert_ne!(subs[0].client_state, subs[1].client_state, "one clientState per subscription");
    let validations = h.mock.validations();
    assert_eq!(validations.len(), 4, "both URLs of both subscriptions validated: {validations:?}");
    assert!(validations.iter().all(|(_, ok)| *ok), "{validations:?}");
    // The clientState is stored sealed, never in the clear.
    let raw = serde_json::to_string(
        &h.ports.table.query_all(TableQuery::new(format!("conn#{}", inbox.key()))).await.unwrap(),
    )
    .unwrap();
    assert!(
        !raw.contains(&subs[0].client_state) && !raw.contains(&subs[1].client_state),
        "clientState stored in the clear"
    );
    let mut expected = with_folder(&in_msgs, Folder::Inbox);
    expected.extend(with_folder(&sent, Folder::Sent));
    h.assert_stored_once(&inbox, &expected).await;
    assert_eq!(h.value_fetches(&old.immutable_id), 0, "the backfill is bounded");

    let log = h.mock.log();
    let deltas: Vec<_> = log.iter().filter(|l| l.uri.contains("/messages/delta")).collect();
    assert!(
        deltas.iter().any(|l| l.uri.contains("$filter=receivedDateTime%20ge%20")),
        "first delta is filtered"
    );
    for d in &deltas {
        assert!(d.prefer.iter().any(|p| p == "odata.maxpagesize=50"), "{d:?}");
        assert!(d.prefer.iter().any(|p| p == "IdType=\"ImmutableId\""), "{d:?}");
    }
    for v in log.iter().filter(|l| l.uri.contains("$value")) {
        assert!(v.prefer.iter().any(|p| p == "IdType=\"ImmutableId\""), "{v:?}");
    }
    let c = connection::get(&h.ports, &inbox).await.unwrap().unwrap();
    assert_eq!(c.state, ConnState::Connected);
    assert!(c.last_success.is_some());
    assert_eq!(c.settings["user_id"], json!(user));
    for f in ["inbox", "sentitems"] {
        let cur = connection::get_cursor(&h.ports, &inbox, f).await.unwrap().unwrap();
        assert!(cur.value["delta_link"].as_str().unwrap().contains("$deltatoken="), "{cur:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn notifications_sync_new_mail_exactly_once() {
    let h = Harness::new().await;
    let (inbox, user) = h.connect("support@acme.test").await;
    assert_eq!(h.sync_ok().await.stored, 0);

    let m = h.deliver(&user, "inbox", &inbox, 1, "Question");
    h.mock.notify(&user, "inbox", &m[0]).await.assert_accepted();
    assert_eq!(h.sync_queue_len().await, 1, "one sync request per notification batch");
    let r = h.sync_ok().await;
    assert_eq!((r.fetched, r.stored), (1, 1), "{r:?}");
    h.assert_stored_once(&inbox, &with_folder(&m, Folder::Inbox)).await;

    // Graph redelivers the same notification: nothing new is fetched or stored.
    h.mock.notify(&user, "inbox", &m[0]).await.assert_accepted();
    let r = h.sync_ok().await;
    assert_eq!((r.fetched, r.stored), (0, 0), "{r:?}");
    assert_eq!(h.value_fetches(&m[0].immutable_id), 1);

    // Our own reply shows up in Sent Items.
    let s = h.deliver(&user, "sentitems", &inbox, 1, "Re: Question");
    h.mock.notify(&user, "sentitems", &s[0]).await.assert_accepted();
    let r = h.sync_ok().await;
    assert_eq!(r.stored, 1, "{r:?}");
    let mut expected = with_folder(&m, Folder::Inbox);
    expected.extend(with_folder(&s, Folder::Sent));
    h.assert_stored_once(&inbox, &expected).await;
    for p in h.mock.pushes() {
        p.assert_accepted();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wrong_client_state_is_rejected_and_nothing_is_queued() {
    let h = Harness::new().await;
    let (inbox, user) = h.connect("support@acme.test").await;
    h.sync_ok().await;
    let m = h.deliver(&user, "inbox", &inbox, 1, "Forged");
    let url = h.cfg.notification_url.clone();

    let forged = h.mock.forged_notification(&user, "inbox", &m[0], "guessed-state");
    let p = h.mock.post(&url, &json!({"value": [forged.clone()]})).await;
    assert_eq!(p.status, 403, "{p:?}");
    // Same length as the real one, last byte different.
    let real = h.mock.subscription(&user, "inbox").unwrap().client_state;
    let mut near = real.clone();
    near.pop();
    near.push(if real.ends_with('0') { '1' } else { '0' });
    let p = h
        .mock
        .post(&url, &json!({"value": [h.mock.forged_notification(&user, "inbox", &m[0], &near)]}))
        .await;
    assert_eq!(p.status, 403, "{p:?}");
    assert_eq!(h.sync_queue_len().await, 0, "a rejected notification queues nothing");
    assert_eq!(h.sync().await.len(), 0);
    assert_eq!(h.copies(&inbox).await.len(), 0, "nothing ingested");
    assert_eq!(h.value_fetches(&m[0].immutable_id), 0);

    // A subscription we do not know: acknowledged (Graph would retry for hours), ignored.
    let mut unknown = h.mock.notification_item(&user, "inbox", &m[0]);
    unknown["subscriptionId"] = json!(mock_graph::guid());
    let p = h.mock.post(&url, &json!({"value": [unknown]})).await;
    assert_eq!(p.status, 202, "{p:?}");
    assert_eq!(h.sync_queue_len().await, 0);
    // Not a batch at all.
    assert_eq!(h.mock.post(&url, &json!({"nope": 1})).await.status, 400);

    // A batch mixing a forged and a genuine item: the genuine one counts, alone.
    let genuine = h.mock.notification_item(&user, "inbox", &m[0]);
    let p = h.mock.post(&url, &json!({"value": [forged, genuine]})).await;
    assert_eq!(p.status, 202, "{p:?}");
    assert_eq!(h.sync_queue_len().await, 1);
    assert_eq!(h.sync_ok().await.stored, 1);
    h.assert_stored_once(&inbox, &with_folder(&m, Folder::Inbox)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lifecycle_events_missed_removed_and_reauthorization() {
    let h = Harness::new().await;
    let (inbox, user) = h.connect("support@acme.test").await;
    h.sync_ok().await;
    let mut expected = Vec::new();

    // missed: a message Graph never told us about arrives through delta.
    let missed = h.deliver(&user, "inbox", &inbox, 1, "Missed");
    let sub = h.mock.subscription(&user, "inbox").unwrap();
    h.mock.lifecycle(&sub, "missed").await.assert_accepted();
    assert_eq!(h.sync_ok().await.stored, 1);
    expected.extend(with_folder(&missed, Folder::Inbox));
    h.assert_stored_once(&inbox, &expected).await;

    // subscriptionRemoved: a new subscription (validated again), then delta.
    let removed = h.mock.drop_subscription(&sub.id).unwrap();
    let during = h.deliver(&user, "inbox", &inbox, 1, "While removed");
    let validations_before = h.mock.validations().len();
    h.mock.lifecycle(&removed, "subscriptionRemoved").await.assert_accepted();
    assert_eq!(h.sync_ok().await.stored, 1);
    expected.extend(with_folder(&during, Folder::Inbox));
    h.assert_stored_once(&inbox, &expected).await;
    let new_sub = h.mock.subscription(&user, "inbox").expect("inbox subscription recreated");
    assert_ne!(new_sub.id, removed.id);
    assert_ne!(new_sub.client_state, removed.client_state, "a fresh clientState");
    assert_eq!(h.mock.validations().len(), validations_before + 2);
    let c = connection::get(&h.ports, &inbox).await.unwrap().unwrap();
    assert_eq!(c.settings["subscriptions"]["inbox"]["id"], json!(new_sub.id));
    // The new subscription's notifications count; the old one's are unknown now.
    let next = h.deliver(&user, "inbox", &inbox, 1, "After");
    h.mock.notify(&user, "inbox", &next[0]).await.assert_accepted();
    assert_eq!(h.sync_queue_len().await, 1);
    let old_item = json!({"value": [{
        "subscriptionId": removed.id, "clientState": removed.client_state, "changeType": "created",
        "resource": "Users/x/Messages/y", "tenantId": mock_graph::TENANT,
    }]});
    assert_eq!(h.mock.post(&h.cfg.notification_url, &old_item).await.status, 202);
    assert_eq!(h.sync_queue_len().await, 1, "the removed subscription queues nothing");
    assert_eq!(h.sync_ok().await.stored, 1);
    expected.extend(with_folder(&next, Folder::Inbox));

    // reauthorizationRequired: the subscription is PATCHed (which reauthorizes it).
    let sent_sub = h.mock.subscription(&user, "sentitems").unwrap();
    let log_before = h.mock.log().len();
    h.mock.lifecycle(&sent_sub, "reauthorizationRequired").await.assert_accepted();
    h.sync_ok().await;
    let log = h.mock.log();
    let new_requests = &log[log_before..];
    assert!(
        new_requests.iter().any(|l| l.method == "PATCH"
            && l.uri == format!("/v1.0/subscriptions/{}", sent_sub.id)
            && l.status == 200),
        "{new_requests:?}"
    );
    let after = h.mock.subscription(&user, "sentitems").unwrap();
    assert_eq!(after.id, sent_sub.id);
    assert!(after.expires >= sent_sub.expires, "expiry extended");
    h.assert_stored_once(&inbox, &expected).await;
    for p in h.mock.pushes() {
        p.assert_accepted();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delta_pages_and_a_410_restart_lose_nothing_and_store_nothing_twice() {
    let h = Harness::new().await;
    let user = h.mock.add_user("support@acme.test");
    let inbox = EmailAddress::parse("support@acme.test").unwrap();
    let mut msgs = h.deliver(&user, "inbox", &inbox, 120, "Bulk");
    h.reconnect(&inbox, &user).await;
    let r = h.sync_ok().await;
    assert_eq!((r.fetched, r.stored), (120, 120), "{r:?}");
    let inbox_deltas: Vec<_> =
        h.mock.log().into_iter().filter(|l| l.uri.contains("mailFolders/inbox/messages/delta")).collect();
    assert_eq!(inbox_deltas.len(), 3, "120 messages in pages of 50: {inbox_deltas:?}");
    assert!(inbox_deltas[1].uri.contains("$skiptoken=") && inbox_deltas[2].uri.contains("$skiptoken="));

    // The stored deltaLink is replayed verbatim.
    let link = connection::get_cursor(&h.ports, &inbox, "inbox").await.unwrap().unwrap().value["delta_link"]
        .as_str()
        .unwrap()
        .to_string();
    let more = h.deliver(&user, "inbox", &inbox, 3, "After expiry");
    h.mock.expire_delta_tokens(&user, "inbox");
    h.mock.notify(&user, "inbox", &more[0]).await.assert_accepted();
    let before = h.mock.log().len();
    let r = h.sync_ok().await;
    let log = h.mock.log();
    let replay = log[before..].iter().find(|l| l.uri.contains("/messages/delta")).unwrap();
    assert_eq!(format!("{}{}", h.mock.base, replay.uri), link, "the deltaLink replayed verbatim");
    assert_eq!(replay.status, 410);
    let restart = log[before..].iter().filter(|l| l.uri.contains("/messages/delta")).nth(1).unwrap();
    assert!(
        restart.uri.contains("$filter=receivedDateTime%20ge%20"),
        "restarted from the base URL: {restart:?}"
    );
    assert_eq!(r.stored, 3, "{r:?}");
    assert_eq!(r.duplicates, 120, "re-listed messages are recognised: {r:?}");
    msgs.extend(more);
    h.assert_stored_once(&inbox, &with_folder(&msgs, Folder::Inbox)).await;
    let events = connection::events(&h.ports, &inbox).await.unwrap();
    assert!(events.iter().any(|e| e["type"] == json!("graph_delta_restarted")), "{events:?}");

    // And the new cursor works: one more message, one more fetch.
    let last = h.deliver(&user, "inbox", &inbox, 1, "Last");
    h.mock.notify(&user, "inbox", &last[0]).await.assert_accepted();
    let r = h.sync_ok().await;
    assert_eq!((r.fetched, r.stored), (1, 1), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throttling_with_a_fractional_retry_after_is_waited_out() {
    let h = Harness::new().await;
    let (inbox, user) = h.connect("support@acme.test").await;
    h.sync_ok().await;
    let m = h.deliver(&user, "inbox", &inbox, 1, "Busy");
    h.mock.throttle("/$value", 1);
    h.mock.notify(&user, "inbox", &m[0]).await.assert_accepted();
    let r = h.sync_ok().await;
    assert_eq!(r.stored, 1, "{r:?}");
    let tries: Vec<_> = h.mock.log().into_iter().filter(|l| l.uri.ends_with("/$value")).collect();
    assert_eq!(tries.iter().map(|l| l.status).collect::<Vec<_>>(), vec![429, 200]);
    let waited = tries[1].at - tries[0].at;
    assert!(
        waited >= Duration::from_millis(2128),
        "Retry-After: 2.128 not honoured: retried after {waited:?}"
    );
    assert!(waited < Duration::from_secs(6), "waited far longer than asked: {waited:?}");
    h.assert_stored_once(&inbox, &with_folder(&m, Folder::Inbox)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn never_more_than_four_requests_in_flight_per_mailbox() {
    let h = Harness::new().await;
    let user = h.mock.add_user("support@acme.test");
    let inbox = EmailAddress::parse("support@acme.test").unwrap();
    let msgs = h.deliver(&user, "inbox", &inbox, 40, "Parallel");
    h.mock.set_value_delay(Duration::from_millis(100));
    h.reconnect(&inbox, &user).await;
    let started = Instant::now();
    let r = h.sync_ok().await;
    println!("40 messages at 100 ms each took {:?}", started.elapsed());
    assert_eq!(r.stored, 40);
    assert_eq!(h.mock.concurrency_violations(), 0);
    let max = h.mock.max_inflight(&user);
    assert_eq!(max, 4, "the fetches run in parallel, 4 at a time (saw {max})");
    h.assert_stored_once(&inbox, &with_folder(&msgs, Folder::Inbox)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_refresh_tokens_are_kept_and_a_revoked_grant_needs_a_reconnect() {
    let h = Harness::new().await;
    let (inbox, user) = h.connect("support@acme.test").await;
    h.sync_ok().await;
    let mut expected = Vec::new();

    // Graph refuses the access token: refreshed (rotating the refresh token), retried.
    for round in 0..3 {
        h.mock.expire_access_tokens(&user);
        let m = h.deliver(&user, "inbox", &inbox, 1, &format!("Rotation {round}"));
        h.mock.notify(&user, "inbox", &m[0]).await.assert_accepted();
        assert_eq!(h.sync_ok().await.stored, 1);
        expected.extend(with_folder(&m, Folder::Inbox));
        let live = h.mock.live_refresh_tokens(&user);
        assert_eq!(live.len(), 1, "the mock keeps one live refresh token");
        let stored = connection::get_secret(&h.ports, &inbox, oauth::SECRET).await.unwrap().unwrap();
        let stored: oauth::TokenSet = serde_json::from_slice(&stored.value).unwrap();
        assert_eq!(
            stored.refresh_token.as_deref(),
            Some(live[0].as_str()),
            "the rotated refresh token was written back"
        );
    }

    // The grant is revoked: the next sync marks the mailbox reconnect_required.
    h.mock.revoke(&user, GrantFailure::InvalidGrant);
    h.mock.expire_access_tokens(&user);
    let during_in = h.deliver(&user, "inbox", &inbox, 2, "During outage");
    let during_sent = h.deliver(&user, "sentitems", &inbox, 1, "Re: During outage");
    h.mock.notify(&user, "inbox", &during_in[0]).await.assert_accepted();
    let results = h.sync().await;
    assert!(results.iter().any(|(_, r)| r.is_err()), "{results:?}");
    let c = connection::get(&h.ports, &inbox).await.unwrap().unwrap();
    assert_eq!(c.state, ConnState::ReconnectRequired);
    assert!(
        c.last_error.as_deref().unwrap_or_default().contains("invalid_grant")
            || c.last_error.as_deref().unwrap_or_default().contains("AADSTS70008"),
        "{c:?}"
    );
    let events = connection::events(&h.ports, &inbox).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e["type"] == json!("inbox_reconnect_required")).count(),
        1,
        "{events:?}"
    );
    // Nothing retries meanwhile.
    let refreshes = h.mock.refreshes();
    h.mock.notify(&user, "inbox", &during_in[1]).await.assert_accepted();
    let r = h.sync_ok().await;
    assert_eq!((r.fetched, r.skipped), (0, 1));
    assert_eq!(h.mock.refreshes(), refreshes, "no refresh attempts while reconnect_required");

    // Reconnecting backfills what came during the outage, and nothing twice.
    h.reconnect(&inbox, &user).await;
    let r = h.sync_ok().await;
    assert_eq!(r.stored, 3, "{r:?}");
    expected.extend(with_folder(&during_in, Folder::Inbox));
    expected.extend(with_folder(&during_sent, Folder::Sent));
    h.assert_stored_once(&inbox, &expected).await;
    let c = connection::get(&h.ports, &inbox).await.unwrap().unwrap();
    assert_eq!(c.state, ConnState::Connected);
    assert_eq!(h.mock.subscriptions().len(), 2, "old subscriptions replaced, not piled up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interaction_required_also_needs_a_reconnect() {
    let h = Harness::new().await;
    let (inbox, user) = h.connect("billing@acme.test").await;
    h.sync_ok().await;
    h.mock.revoke(&user, GrantFailure::InteractionRequired);
    h.mock.expire_access_tokens(&user);
    let m = h.deliver(&user, "inbox", &inbox, 1, "MFA");
    h.mock.notify(&user, "inbox", &m[0]).await.assert_accepted();
    h.sync().await;
    let c = connection::get(&h.ports, &inbox).await.unwrap().unwrap();
    assert_eq!(c.state, ConnState::ReconnectRequired, "{c:?}");
    assert!(c.last_error.as_deref().unwrap_or_default().contains("interaction_required"), "{c:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn renewal_extends_expiring_subscriptions_and_recreates_dropped_ones() {
    let h = Harness::new().await;
    let (inbox, user) = h.connect("support@acme.test").await;
    h.sync_ok().await;
    // Nothing is due right after connecting.
    let r = graph::renew_subscriptions(&h.ports, &h.cfg, Utc::now()).await.unwrap();
    assert_eq!((r.mailboxes, r.renewed, r.recreated), (1, 0, 0), "{r:?}");

    // 20 hours from now both have less than 24 h left... as far as our records go: the
    // mock only accepts expiries up to 4230 min from its (real) now, so age our records.
    let mut c = connection::get(&h.ports, &inbox).await.unwrap().unwrap();
    for f in ["inbox", "sentitems"] {
        c.settings["subscriptions"][f]["expires_at"] = json!(Utc::now() + ChronoDuration::hours(5));
    }
    connection::save(&h.ports, &c).await.unwrap();
    let dropped = h.mock.subscription(&user, "sentitems").unwrap();
    h.mock.drop_subscription(&dropped.id);
    let m = h.deliver(&user, "sentitems", &inbox, 1, "Sent while dropped");

    let r = graph::renew_subscriptions(&h.ports, &h.cfg, Utc::now()).await.unwrap();
    assert_eq!((r.renewed, r.recreated, r.failed), (1, 1, 0), "{r:?}");
    let c = connection::get(&h.ports, &inbox).await.unwrap().unwrap();
    for f in ["inbox", "sentitems"] {
        let s = h.mock.subscription(&user, f).unwrap();
        assert_eq!(c.settings["subscriptions"][f]["id"], json!(s.id));
        assert!(s.expires > Utc::now() + ChronoDuration::hours(60), "{f} renewed to ~70 h: {:?}", s.expires);
    }
    assert_ne!(h.mock.subscription(&user, "sentitems").unwrap().id, dropped.id);
    // The recreation queued a catch-up for the folder.
    assert_eq!(h.sync_ok().await.stored, 1);
    h.assert_stored_once(&inbox, &with_folder(&m, Folder::Sent)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_notifications_are_all_answered_within_3s() {
    let h = Harness::new().await;
    let (inbox, user) = h.connect("support@acme.test").await;
    h.sync_ok().await;
    let m = h.deliver(&user, "inbox", &inbox, 1, "Flood");
    let item = h.mock.notification_item(&user, "inbox", &m[0]);
    let body = json!({"value": [item]}).to_string();
    let client = reqwest::Client::new();
    let url = Arc::new(h.cfg.notification_url.clone());
    let started = Instant::now();
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                let t = Instant::now();
                let r = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                (r.map(|r| r.status().as_u16()).unwrap_or(0), t.elapsed())
            })
        })
        .collect();
    let mut max = Duration::ZERO;
    let mut statuses = HashSet::new();
    for t in tasks {
        let (status, took) = t.await.unwrap();
        statuses.insert(status);
        max = max.max(took);
    }
    println!("200 concurrent notifications: max latency {max:?}, all done in {:?}", started.elapsed());
    assert_eq!(statuses, HashSet::from([202]), "every notification acknowledged");
    assert!(max < Duration::from_secs(3), "Graph wants a 2xx within 3 s; the slowest took {max:?}");
    // They collapse into one message stored once.
    let r = h.sync_ok().await;
    assert_eq!(r.stored, 1, "{r:?}");
    assert_eq!(h.value_fetches(&m[0].immutable_id), 1, "fetched once however many notifications");
    h.assert_stored_once(&inbox, &with_folder(&m, Folder::Inbox)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_notification_during_a_sync_is_picked_up_by_the_sync_holding_the_lease() {
    let h = Harness::new().await;
    let (inbox, user) = h.connect("support@acme.test").await;
    h.sync_ok().await;
    let first = h.deliver(&user, "inbox", &inbox, 4, "Slow");
    h.mock.close_value_gate();
    let req = SyncRequest {
        inbox: inbox.key(),
        provider: Provider::Graph,
        reason: "notification".into(),
        hint: json!({"folder": "inbox"}),
    };
    let (ports, cfg, req1) = (h.ports.clone(), h.cfg.clone(), req.clone());
    let inbox1 = inbox.clone();
    let holder = tokio::spawn(async move { graph::sync(&ports, &cfg, &inbox1, &req1).await });
    // Wait until the first sync is fetching, held at the gate (it holds the lease then).
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.mock.held_values() == 0 {
        assert!(Instant::now() < deadline, "the first sync never fetched");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let late = h.deliver(&user, "sentitems", &inbox, 1, "Re: Slow");
    let mut req2 = req.clone();
    req2.hint = json!({"folder": "sentitems"});
    let r = graph::sync(&h.ports, &h.cfg, &inbox, &req2).await.unwrap();
    assert_eq!((r.fetched, r.skipped), (0, 1), "the mailbox is busy: {r:?}");
    h.mock.open_value_gate();
    let r = holder.await.unwrap().unwrap();
    assert_eq!(r.stored, 5, "the holder ran another round for the late request: {r:?}");
    assert_eq!(h.sync().await.len(), 0);
    let mut expected = with_folder(&first, Folder::Inbox);
    expected.extend(with_folder(&late, Folder::Sent));
    h.assert_stored_once(&inbox, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivered_subscription_removed_event_creates_one_subscription() {
    let h = Harness::new().await;
    let (_inbox, user) = h.connect("support@acme.test").await;
    h.sync_ok().await;
    let sub = h.mock.subscription(&user, "inbox").unwrap();
    h.mock.drop_subscription(&sub.id);
    h.mock.lifecycle(&sub, "subscriptionRemoved").await.assert_accepted();
    h.mock.lifecycle(&sub, "subscriptionRemoved").await.assert_accepted();
    h.sync_ok().await;
    // Graph retries once more after we handled it.
    h.mock.lifecycle(&sub, "subscriptionRemoved").await.assert_accepted();
    h.sync_ok().await;
    let subs = h.mock.subscriptions();
    assert_eq!(subs.len(), 2, "one per folder, however often the event came: {subs:?}");
    let creates =
        h.mock.log().iter().filter(|l| l.method == "POST" && l.uri == "/v1.0/subscriptions").count();
    assert_eq!(creates, 3, "two at connect, one recreation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_validation_says_the_webhook_must_be_reachable() {
    let h = Harness::new().await;
    let user = h.mock.add_user("support@acme.test");
    let inbox = EmailAddress::parse("support@acme.test").unwrap();
    h.mock.set_fail_validation(true);
    let rt = h.mock.grant(&user);
    let conn = Connection {
        inbox: inbox.key(),
        provider: Provider::Graph,
        settings: json!({}),
        state: ConnState::Connected,
        connected_at: Utc::now(),
        last_success: None,
        last_error: None,
        last_error_at: None,
        lag_seconds: None,
        consecutive_failures: 0,
    };
    connection::save(&h.ports, &conn).await.unwrap();
    let tokens = oauth::TokenSet {
        access_token: "x".into(),
        refresh_token: Some(rt),
        expires_at: Utc::now() - ChronoDuration::minutes(1),
    };
    oauth::store_tokens(&h.ports, &inbox, &tokens).await.unwrap();
    let e = graph::on_connect(&h.ports, &h.cfg, &inbox).await.unwrap_err();
    assert!(e.to_string().contains("validation request failed"), "{e}");
    // The GUID was looked up through /me, since the connection did not carry it.
    let c = connection::get(&h.ports, &inbox).await.unwrap().unwrap();
    assert_eq!(c.settings["user_id"], json!(user));
    assert_eq!(c.state, ConnState::Degraded, "the failure shows on the connection");
    assert!(c.last_error.unwrap_or_default().contains("validation request failed"));
    assert!(h.mock.subscriptions().is_empty());
    assert_eq!(h.sync_queue_len().await, 0, "no backfill without subscriptions");
}

/// The sync worker, the scheduler and Lambda handlers spawn these: they must be `Send`
/// for any lifetime (a compile-time check).
#[allow(dead_code)]
fn entry_points_can_be_spawned(p: Ports, c: MicrosoftConfig, i: EmailAddress, r: SyncRequest) {
    tokio::spawn(async move {
        let _ = graph::on_connect(&p, &c, &i).await;
        let _ = graph::sync(&p, &c, &i, &r).await;
        let _ = graph::renew_subscriptions(&p, &c, Utc::now()).await;
        let _ = graph::handle_notification(&p, None, b"").await;
        let _ = graph::handle_lifecycle(&p, Some("token"), b"").await;
    });
}
