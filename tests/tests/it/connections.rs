//! Mailbox connections end to end through the real `mailroom serve` binary: a child
//! process with its own data directory and its provider settings pointing at the in-test
//! mocks (tests/src/mock_google.rs, tests/src/mock_graph.rs), all on 127.0.0.1. What is
//! proven is the local wiring: the admin-only start route, the OAuth redirect dance, the
//! callback queueing the `connect` sync, serve's sync worker and pipeline running it, the
//! webhooks answering bursts of pushes quickly, and the CLI reading what serve stored.

use mailroom_app::Ports;
use mailroom_tests::mock_google::{self, DataEncoding, Jwt, MockGoogle};
use mailroom_tests::mock_graph::{MockGraph, MockMessage};
use mailroom_tests::{bin, repo_root, wait_for_port};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const GMAIL_INBOX: &str = "sales@acme-corp.example";
const GRAPH_INBOX: &str = "support@acme-corp.example";
const BURST: usize = 200;
/// What Pub/Sub and Graph allow a push endpoint.
const PUSH_DEADLINE: Duration = Duration::from_secs(3);
/// How long serve gets for a connect or a round of syncs.
const SETTLE: Duration = Duration::from_secs(25);

/// `mailroom serve` as a child process; killed on drop. Its stderr goes to a file in
/// the data directory, shown when a wait times out.
struct Serve {
    child: Child,
    data: tempfile::TempDir,
    base: String,
    log: PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start(env: &[(String, String)]) -> Serve {
        let data = tempfile::tempdir().unwrap();
        // The acme workspace: sales@ and support@ are its shared inboxes.
        let out = Command::new(bin("mailroom"))
            .arg("--data")
            .arg(data.path())
            .arg("apply")
            .arg(repo_root().join("examples/acme-corp.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "mailroom apply: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = data.path().join("serve.log");
        let child = Command::new(bin("mailroom"))
            .arg("--data")
            .arg(data.path())
            .args(["serve", "--port", &port.to_string()])
            .env("MAILROOM_BACKFILL_DAYS", "14")
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let s = Serve { child, data, base: format!("http://127.0.0.1:{port}"), log };
        wait_for_port(port, Duration::from_secs(20));
        s
    }

    fn data(&self) -> &Path {
        self.data.path()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Runs `mailroom --data DATA ARGS --json` beside serve.
    async fn cli_json(&self, args: &[&str]) -> Value {
        let out = tokio::process::Command::new(bin("mailroom"))
            .arg("--data")
            .arg(self.data())
            .args(args)
            .output()
            .await
            .unwrap();
        assert!(out.status.success(), "mailroom {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("mailroom {args:?} printed no JSON: {e}"))
    }

    /// `mailroom inbox status --json`, by inbox.
    async fn status(&self) -> BTreeMap<String, Value> {
        let v = self.cli_json(&["inbox", "status", "--json"]).await;
        v.as_array()
            .expect("a status list")
            .iter()
            .map(|s| (s["inbox"].as_str().unwrap().to_string(), s.clone()))
            .collect()
    }

    /// The Message-IDs `mailroom conversations --json` lists, with how often each appears.
    async fn message_ids(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for c in self.cli_json(&["conversations", "--json"]).await.as_array().expect("conversations") {
            for m in c["messages"].as_array().expect("messages") {
                *out.entry(m["message_id"].as_str().unwrap().to_string()).or_insert(0) += 1;
            }
        }
        out
    }

    async fn stats(&self) -> Value {
        self.cli_json(&["stats", "--json"]).await
    }

    /// Polls `f` until it yields, or fails with serve's log after `max`.
    async fn wait<T, F, Fut>(&self, what: &str, max: Duration, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let t = Instant::now();
        loop {
            if let Some(v) = f().await {
                println!("{what}: after {:?}", t.elapsed());
                return v;
            }
            assert!(t.elapsed() < max, "{what}: not after {max:?}; serve's log:\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Waits until serve has nothing left to do: the sync queue and every pipeline queue
    /// empty (an embedded queue counts in-flight messages too), then the stats.
    async fn wait_idle(&self, ports: &Ports) -> Value {
        self.wait("serve idle", SETTLE, || async {
            let sync = ports.sync_queue.approximate_len().await.unwrap();
            let s = self.stats().await;
            let busy = sync
                + ["ingest_queue", "route_queue", "ticket_queue"]
                    .iter()
                    .map(|q| s[q].as_u64().unwrap())
                    .sum::<u64>();
            (busy == 0).then_some(s)
        })
        .await
    }

    /// The data directory's storage, opened beside serve (SQLite in WAL mode) to read the
    /// sync queue's depth, which no CLI command prints.
    fn ports(&self) -> Ports {
        Ports::embedded(self.data()).unwrap()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn connect(http: &reqwest::Client, serve: &Serve, provider: &str, inbox: &str) {
    let admin = mailroom_tests::serve::ACME_ADMIN;
    mailroom_tests::serve::connect_mailbox(http, &serve.base, serve.data(), admin, provider, inbox, || {
        serve.log_tail()
    })
    .await;
}

/// Waits until the inbox is `connected` with a successful sync recorded.
async fn wait_connected(serve: &Serve, inbox: &str, provider: &str) -> Value {
    serve
        .wait(&format!("{inbox} connected and synced"), SETTLE, || async {
            let s = serve.status().await.get(inbox).cloned()?;
            assert_eq!(s["provider"], provider, "{s}");
            assert_ne!(s["state"], "reconnect_required", "{s}");
            (s["state"] == "connected" && s["last_success"].is_string()).then_some(s)
        })
        .await
}

/// POSTs every body at once (one task each), returning (status, latency) per request.
async fn burst(
    http: &reqwest::Client,
    url: &str,
    reqs: Vec<(Option<String>, Vec<u8>)>,
) -> Vec<(u16, Duration)> {
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(reqs.len()));
    let tasks: Vec<_> = reqs
        .into_iter()
        .map(|(bearer, body)| {
            let (http, url, gate) = (http.clone(), url.to_string(), gate.clone());
            tokio::spawn(async move {
                let mut req = http.post(&url).header("content-type", "application/json").body(body);
                if let Some(t) = bearer {
                    req = req.bearer_auth(t);
                }
                gate.wait().await;
                let t = Instant::now();
                let status = req.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                (status, t.elapsed())
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Asserts every reply is in `ok` and within the push deadline; prints max and p50.
fn assert_fast(what: &str, replies: &[(u16, Duration)], ok: &[u16]) {
    let mut lat: Vec<Duration> = replies.iter().map(|r| r.1).collect();
    lat.sort();
    let (p50, max) = (lat[lat.len() / 2], lat[lat.len() - 1]);
    println!("{what}: {} requests, p50 {p50:?}, max {max:?}", replies.len());
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for (s, _) in replies {
        *statuses.entry(*s).or_default() += 1;
    }
    assert!(statuses.keys().all(|s| ok.contains(s)), "{what}: statuses {statuses:?}, want only {ok:?}");
    assert!(max < PUSH_DEADLINE, "{what}: slowest reply took {max:?} (p50 {p50:?})");
}

/// A hand-written RFC 5322 message; returns (Message-ID without brackets, raw).
fn mail(n: usize, inbound: bool, inbox: &str) -> (String, Vec<u8>) {
    let id = format!("e2e-{n}-{:08x}@customer.test", rand::random::<u32>());
    let customer = format!("Customer {n} <c{n}@customer.test>");
    let (from, to) = if inbound { (customer.as_str(), inbox) } else { (inbox, customer.as_str()) };
    let raw = format!(
        "From: {from}\r\nTo: {to}\r\nSubject: Order question {n}\r\nMessage-ID: <{id}>\r\nDate: {}\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello, about order {n}.\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    (id, raw.into_bytes())
}

/// Adds messages to the Gmail mock: inbound ones in INBOX, outbound ones in SENT.
fn gmail_add(mock: &MockGoogle, from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| {
            let inbound = i % 3 != 2;
            let (id, raw) = mail(i, inbound, GMAIL_INBOX);
            mock.add_message(&raw, if inbound { &["INBOX", "UNREAD"] } else { &["SENT"] });
            id
        })
        .collect()
}

/// Delivers messages to the Graph mock: inbound ones to inbox, outbound to sentitems.
fn graph_add(
    mock: &MockGraph,
    user: &str,
    from: usize,
    n: usize,
) -> Vec<(MockMessage, String, &'static str)> {
    (from..from + n)
        .map(|i| {
            let inbound = i % 3 != 2;
            let (id, raw) = mail(i, inbound, GRAPH_INBOX);
            let folder = if inbound { "inbox" } else { "sentitems" };
            (mock.deliver(user, folder, raw.into(), chrono::Utc::now()), id, folder)
        })
        .collect()
}

/// Waits until exactly `want` is listed, each Message-ID once, and serve is idle; then
/// checks the stats agree (one copy, processed once, per message) and nothing died.
async fn assert_ingested_once(serve: &Serve, ports: &Ports, inbox: &str, want: &BTreeSet<String>) {
    serve
        .wait(&format!("{} messages of {inbox} listed", want.len()), SETTLE, || async {
            let got = serve.message_ids().await;
            let ids: BTreeSet<String> = got.keys().cloned().collect();
            assert!(
                ids.is_subset(want),
                "unexpected messages: {:?}",
                ids.difference(want).collect::<Vec<_>>()
            );
            (ids == *want).then_some(())
        })
        .await;
    let s = serve.wait_idle(ports).await;
    let got = serve.message_ids().await;
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), *want);
    let twice: Vec<_> = got.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "listed more than once: {twice:?}");
    let i = &s["inboxes"][inbox];
    let n = want.len() as u64;
    assert_eq!(
        (i["copies"].as_u64(), i["processed"].as_u64(), i["messages"].as_u64()),
        (Some(n), Some(n), Some(n)),
        "{s}"
    );
    for dlq in ["ingest_dlq", "route_dlq", "ticket_dlq"] {
        assert_eq!(s[dlq], 0, "{dlq}: {s}");
    }
    assert_eq!(
        ports.sync_dlq.as_ref().unwrap().approximate_len().await.unwrap(),
        0,
        "sync requests dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmail_connects_through_serve_and_absorbs_a_push_burst() {
    let mock = MockGoogle::start(GMAIL_INBOX).await;
    mock.set_page_size(50);
    let mut want: BTreeSet<String> = gmail_add(&mock, 0, 6).into_iter().collect();
    let serve = Serve::start(&mock.serve_env());
    let ports = serve.ports();
    let http = http();

    connect(&http, &serve, "gmail", GMAIL_INBOX).await;
    let s = wait_connected(&serve, GMAIL_INBOX, "gmail").await;
    assert_eq!(s["consecutive_failures"], 0, "{s}");
    let (topic, _) = mock.watch_state().expect("serve's worker called users.watch");
    assert_eq!(topic, mock_google::TOPIC);
    assert_ingested_once(&serve, &ports, GMAIL_INBOX, &want).await;

    // New mail, then a burst of genuine pushes for it, all at once.
    want.extend(gmail_add(&mock, 100, 9));
    let hid = mock.history_id();
    let t = Instant::now();
    let reqs: Vec<_> = (0..BURST)
        .map(|_| (Some(mock.push_jwt(Jwt::Good)), mock.push_body(GMAIL_INBOX, hid, DataEncoding::UrlNoPad)))
        .collect();
    println!("signed {BURST} push tokens in {:?}", t.elapsed());
    let hook = format!("{}/webhooks/gmail", serve.base);
    let replies = burst(&http, &hook, reqs).await;
    assert_fast("gmail pushes", &replies, &[204]);
    assert_ingested_once(&serve, &ports, GMAIL_INBOX, &want).await;
    let s = serve.status().await[GMAIL_INBOX].clone();
    assert_eq!(
        (s["state"].as_str(), s["consecutive_failures"].as_u64()),
        (Some("connected"), Some(0)),
        "{s}"
    );

    // Forged pushes: refused, nothing queued, nothing fetched.
    gmail_add(&mock, 200, 1);
    let body = mock.push_body(GMAIL_INBOX, mock.history_id(), DataEncoding::UrlNoPad);
    let gets = mock.count("GET", "/gmail/");
    for (jwt, want_status) in [
        (None, 401),
        (Some("not.a.jwt".to_string()), 401),
        (Some(mock.push_jwt(Jwt::OtherKey)), 401),
        (Some(mock.push_jwt(Jwt::WrongEmail)), 403),
    ] {
        let mut req = http.post(&hook).header("content-type", "application/json").body(body.clone());
        if let Some(t) = &jwt {
            req = req.bearer_auth(t);
        }
        let status = req.send().await.unwrap().status().as_u16();
        assert_eq!(status, want_status, "forged push {jwt:?}");
    }
    assert_eq!(ports.sync_queue.approximate_len().await.unwrap(), 0, "a forged push queued a sync");
    assert_eq!(mock.count("GET", "/gmail/"), gets, "a forged push made serve call Gmail");
    assert_eq!(serve.message_ids().await.len(), want.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_connects_through_serve_and_absorbs_a_notification_burst() {
    let mock = MockGraph::start().await;
    let user = mock.add_user(GRAPH_INBOX);
    mock.authorize_as(&user);
    let first = graph_add(&mock, &user, 0, 6);
    let mut want: BTreeSet<String> = first.iter().map(|(_, id, _)| id.clone()).collect();
    let serve = Serve::start(&mock.serve_env());
    let ports = serve.ports();
    let http = http();

    connect(&http, &serve, "graph", GRAPH_INBOX).await;
    let s = wait_connected(&serve, GRAPH_INBOX, "graph").await;
    assert_eq!(s["consecutive_failures"], 0, "{s}");
    // on_connect in serve's worker subscribed both folders; Graph validated serve's URLs.
    let subs = mock.subscriptions();
    let folders: BTreeSet<&str> = subs.iter().map(|s| s.folder.as_str()).collect();
    assert_eq!(folders, BTreeSet::from(["inbox", "sentitems"]), "{subs:?}");
    for sub in &subs {
        assert_eq!(sub.notification_url, format!("{}/webhooks/graph", serve.base));
        assert_eq!(
            sub.lifecycle_url.as_deref(),
            Some(format!("{}/webhooks/graph-lifecycle", serve.base).as_str())
        );
    }
    let validations = mock.validations();
    assert!(!validations.is_empty(), "Graph never validated serve's webhook");
    assert!(validations.iter().all(|(_, ok)| *ok), "failed validations: {validations:?}");
    assert!(
        validations.iter().any(|(u, _)| u == &format!("{}/webhooks/graph", serve.base)),
        "{validations:?}"
    );
    assert_ingested_once(&serve, &ports, GRAPH_INBOX, &want).await;

    // New mail in both folders, then a burst of genuine notifications for it.
    let more = graph_add(&mock, &user, 100, 9);
    want.extend(more.iter().map(|(_, id, _)| id.clone()));
    let reqs: Vec<_> = (0..BURST)
        .map(|i| {
            let (m, _, folder) = &more[i % more.len()];
            let item = mock.notification_item(&user, folder, m);
            (None, json!({"value": [item]}).to_string().into_bytes())
        })
        .collect();
    let hook = format!("{}/webhooks/graph", serve.base);
    let replies = burst(&http, &hook, reqs).await;
    assert_fast("graph notifications", &replies, &[202]);
    assert_ingested_once(&serve, &ports, GRAPH_INBOX, &want).await;
    assert_eq!(mock.concurrency_violations(), 0, "serve went over Outlook's 4 concurrent requests");

    // A wrong clientState: 403, nothing queued, the new message stays unfetched.
    let late = graph_add(&mock, &user, 200, 1);
    let forged = mock.forged_notification(&user, "inbox", &late[0].0, "guessed-client-state");
    let graph_calls = mock.log().len();
    let p = mock.post(&hook, &json!({"value": [forged]})).await;
    assert_eq!(p.status, 403, "{p:?}");
    assert_eq!(ports.sync_queue.approximate_len().await.unwrap(), 0, "a forged notification queued a sync");
    assert_eq!(mock.log().len(), graph_calls, "a forged notification made serve call Graph");
    assert_eq!(serve.message_ids().await.len(), want.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_status_lists_gmail_and_graph_connections_of_one_serve() {
    let google = MockGoogle::start(GMAIL_INBOX).await;
    let graph = MockGraph::start().await;
    let user = graph.add_user(GRAPH_INBOX);
    graph.authorize_as(&user);
    let mut env = google.serve_env();
    env.extend(graph.serve_env());
    let serve = Serve::start(&env);
    let http = http();
    assert!(serve.status().await.is_empty(), "a fresh data directory has no connections");

    connect(&http, &serve, "gmail", GMAIL_INBOX).await;
    connect(&http, &serve, "graph", GRAPH_INBOX).await;
    wait_connected(&serve, GMAIL_INBOX, "gmail").await;
    wait_connected(&serve, GRAPH_INBOX, "graph").await;
    let all = serve.status().await;
    let listed: BTreeMap<&str, (&str, &str)> = all
        .iter()
        .map(|(inbox, s)| (inbox.as_str(), (s["provider"].as_str().unwrap(), s["state"].as_str().unwrap())))
        .collect();
    assert_eq!(
        listed,
        BTreeMap::from([(GMAIL_INBOX, ("gmail", "connected")), (GRAPH_INBOX, ("graph", "connected"))]),
        "{all:?}"
    );
    assert_eq!(all[GRAPH_INBOX]["settings"]["user_id"], user, "{all:?}");
}
