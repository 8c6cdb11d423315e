//! Inbox verification ("send a test email", docs/inbox-setup.md) against the private
//! dovecot and an SMTP server that delivers into its INBOX, through the real `mailroom`
//! binary: all green on a working inbox, with nothing left in the lists or the report;
//! red with the server's reason when the SMTP password is refused and when the IMAP
//! server is down.

use mailroom_tests::dovecot::Dovecot;
use mailroom_tests::smtp::SmtpSink;
use mailroom_tests::{bin, mailroom_json, mailroom_ok};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const INBOX: &str = "support@acme.test";

fn workspace(data: &Path) {
    let ws = data.join("workspace.toml");
    std::fs::write(
        &ws,
        format!(
            "name = \"Verify\"\n\
             [[users]]\nemail = \"ann@acme.test\"\nname = \"Ann\"\nrole = \"admin\"\n\n\
             [[users]]\nemail = \"bob@acme.test\"\nname = \"Bob\"\n\n\
             [[teams]]\nid = \"support\"\nname = \"Support\"\nmembers = [\"bob@acme.test\"]\nassign = \"round_robin\"\n\n\
             [[pipelines]]\nid = \"support\"\nname = \"Support\"\nstages = [{{ id = \"new\", name = \"New\" }}, {{ id = \"closed\", name = \"Closed\", closed = true }}]\n\n\
             [[inboxes]]\naddress = \"{INBOX}\"\nmembers = {{ users = [\"bob@acme.test\"] }}\n\
             tickets = {{ enabled = true, pipeline = \"support\", stage = \"new\" }}\n\n\
             [[rules]]\nname = \"test messages to support\"\n\
             conditions = [{{ field = \"subject\", op = \"contains_any_word\", values = [\"test\"] }}]\n\
             actions = {{ team = \"support\" }}\n"
        ),
    )
    .unwrap();
    mailroom_ok(data, &["apply", ws.to_str().unwrap()]);
}

fn connect(data: &Path, dv: &Dovecot, smtp_port: u16) {
    let out = Command::new(bin("mailroom"))
        .arg("--data")
        .arg(data)
        .args(["inbox", "connect-imap", INBOX, "--host", "127.0.0.1", "--port", &dv.port_tls.to_string()])
        .args(["--allow-private-host", "--security", "tls", "--user", &dv.user])
        .args(["--password-env", "MAILROOM_TEST_IMAP_PASSWORD", "--ca-file"])
        .arg(dv.ca_file())
        .args(["--smtp-host", "127.0.0.1", "--smtp-port", &smtp_port.to_string(), "--smtp-security", "none"])
        .env("MAILROOM_TEST_IMAP_PASSWORD", &dv.password)
        .output()
        .unwrap();
    assert!(out.status.success(), "connect-imap: {}", String::from_utf8_lossy(&out.stderr));
}

/// `mailroom inbox verify INBOX --json`: (exit success, the run).
fn verify(data: &Path, wait: u64) -> (bool, Value) {
    let out = Command::new(bin("mailroom"))
        .arg("--data")
        .arg(data)
        .args(["inbox", "verify", INBOX, "--json", "--wait", &wait.to_string()])
        .output()
        .unwrap();
    let run: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify printed no run ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), run)
}

fn step<'v>(run: &'v Value, key: &str) -> &'v Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap_or_else(|| panic!("no step {key}: {run}"))
}

#[test]
fn verify_is_green_on_a_working_imap_inbox_and_leaves_nothing_in_lists_or_reports() {
    let dv = Dovecot::start();
    let smtp = SmtpSink::start_delivering(&dv.user, &dv.password, &dv.inbox_maildir(), None);
    let data = tempfile::tempdir().unwrap();
    workspace(data.path());
    connect(data.path(), &dv, smtp.port());

    let (ok, run) = verify(data.path(), 30);
    assert!(ok, "verify failed: {}", serde_json::to_string_pretty(&run).unwrap());
    assert_eq!(run["outcome"], "passed");
    for s in run["steps"].as_array().unwrap() {
        assert_eq!(s["status"], "pass", "step {} is not green: {run}", s["key"]);
    }
    assert!(step(&run, "routed")["detail"].as_str().unwrap().contains("test messages to support"), "{run}");
    assert!(
        step(&run, "ticket")["detail"].as_str().unwrap().contains("pipeline support at stage new"),
        "{run}"
    );
    // The test message went through SMTP into the IMAP INBOX, and the reply too (to the
    // inbox itself); the reply was filed in Sent by APPEND.
    let sent = smtp.messages();
    assert_eq!(sent.len(), 2, "test message and reply");
    assert!(String::from_utf8_lossy(&sent[0]).contains("X-Mailroom-Verify"));
    assert_eq!(dv.maildir_files("Sent").len(), 1, "the reply's Sent copy");

    // Nothing the run made shows in the lists or the report.
    let contacts = mailroom_json(data.path(), &["contacts", "--json"]);
    assert_eq!(contacts.as_array().map(Vec::len), Some(0), "a test contact is listed: {contacts}");
    let convs = mailroom_json(data.path(), &["conversations", "--json"]);
    assert_eq!(convs.as_array().map(Vec::len), Some(0), "a test conversation is listed: {convs}");
    let report = mailroom_json(data.path(), &["report", "--json"]);
    assert_eq!(report["messages"]["in"], 0, "{report}");
    assert_eq!(report["messages"]["out"], 0, "{report}");
    assert_eq!(report["tickets_created"], 0, "{report}");
    assert_eq!((report["open"].as_i64(), report["closed"].as_i64()), (Some(0), Some(0)), "{report}");

    // A customer's message after it is counted as usual (the exclusion is the run's only).
    let customer = format!(
        "From: Carla <carla@customer.test>\r\nTo: {INBOX}\r\nSubject: Hello\r\nMessage-ID: <c1@customer.test>\r\nDate: {}\r\n\r\nHi\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    dv.save("INBOX", customer.as_bytes());
    mailroom_ok(data.path(), &["poll", "--once"]);
    let report = mailroom_json(data.path(), &["report", "--json"]);
    assert_eq!(report["messages"]["in"], 1, "{report}");
}

#[test]
fn verify_is_red_with_the_reason_when_smtp_refuses_the_password_or_imap_is_down() {
    let mut dv = Dovecot::start();
    let smtp = SmtpSink::start_delivering(&dv.user, &dv.password, &dv.inbox_maildir(), None);
    let port = smtp.port();
    let data = tempfile::tempdir().unwrap();
    workspace(data.path());
    connect(data.path(), &dv, port);

    // The SMTP server now wants another password.
    drop(smtp);
    let smtp = SmtpSink::start_delivering(&dv.user, "a-rotated-password", &dv.inbox_maildir(), Some(port));
    let (ok, run) = verify(data.path(), 10);
    assert!(!ok && run["outcome"] == "failed", "{run}");
    assert_eq!(step(&run, "connection")["status"], "pass", "{run}");
    let send = step(&run, "send");
    assert_eq!(send["status"], "fail", "{run}");
    assert!(send["detail"].as_str().unwrap().contains("535"), "the server's reason: {send}");
    assert_eq!(step(&run, "received")["status"], "pending", "{run}");
    drop(smtp);

    // SMTP works again, but the IMAP server is down.
    let _smtp = SmtpSink::start_delivering(&dv.user, &dv.password, &dv.inbox_maildir(), Some(port));
    dv.stop();
    let (ok, run) = verify(data.path(), 10);
    assert!(!ok, "{run}");
    assert_eq!(step(&run, "send")["status"], "pass", "{run}");
    let received = step(&run, "received");
    assert_eq!(received["status"], "fail", "{run}");
    let why = received["detail"].as_str().unwrap();
    assert!(why.contains("IMAP poll failed") && why.contains("127.0.0.1"), "the reason: {why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_is_green_on_a_gmail_inbox_by_push_history_sync_and_its_sent_copy() {
    use mailroom_tests::mock_google::MockGoogle;
    const SALES: &str = "sales@acme.test";
    let google = MockGoogle::start(SALES).await;
    let (serve, http) = serve_connected(SALES, "gmail", google.serve_env(), "gmail").await;
    // Pub/Sub pushes every later change of the mailbox to serve's webhook.
    google.push_to(&serve.url("/webhooks/gmail"));
    wait_until("the Gmail watch", &serve, 20, || google.watch_state().is_some()).await;
    let run = verify_over_api(&serve, &http, SALES).await;
    assert_passed(&run, &serve);
    for s in run["steps"].as_array().unwrap().iter().filter(|s| s["key"] != "ticket") {
        assert_eq!(s["status"], "pass", "step {} is not green: {run}", s["key"]);
    }
    // This inbox creates no tickets: the step says so rather than failing.
    assert_eq!(step(&run, "ticket")["status"], "skipped", "{run}");
    assert!(step(&run, "ticket")["detail"].as_str().unwrap().contains("ticket creation is off"), "{run}");
    assert!(step(&run, "send")["detail"].as_str().unwrap().contains("Gmail API"), "{run}");
    // Received by push and history sync, not by a poll: the history was read.
    assert!(google.count("GET", "/gmail/v1/users/me/history") > 0, "no history sync");
    assert_eq!(google.sent().len(), 2, "the test message and the reply went through messages.send");
    let report = mailroom_json(serve.data(), &["report", "--json"]);
    assert_eq!(
        (report["messages"]["in"].as_i64(), report["messages"]["out"].as_i64()),
        (Some(0), Some(0)),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_is_green_on_a_microsoft_365_inbox_by_change_notifications_and_delta_sync() {
    use mailroom_tests::mock_graph::MockGraph;
    const MS: &str = "ms@acme.test";
    let graph = MockGraph::start().await;
    let user = graph.add_user(MS);
    graph.authorize_as(&user);
    let (serve, http) = serve_connected(MS, "microsoft", graph.serve_env(), "graph").await;
    // serve's connect sync subscribes both folders; from then on Graph notifies them.
    wait_until("both folders' subscriptions", &serve, 30, || graph.subscriptions().len() >= 2).await;
    graph.notify_on_send();
    let run = verify_over_api(&serve, &http, MS).await;
    assert_passed(&run, &serve);
    assert!(step(&run, "send")["detail"].as_str().unwrap().contains("Microsoft Graph"), "{run}");
    assert_eq!(step(&run, "sent_copy")["status"], "pass", "{run}");
    assert_eq!(graph.sent(&user).len(), 2, "the test message and the reply went through sendMail");
    let report = mailroom_json(serve.data(), &["report", "--json"]);
    assert_eq!(
        (report["messages"]["in"].as_i64(), report["messages"]["out"].as_i64()),
        (Some(0), Some(0)),
        "{report}"
    );
}

/// `POST /admin/inboxes/{inbox}/verify` as the admin, then the run read again until it ends.
async fn verify_over_api(serve: &mailroom_tests::serve::Serve, http: &reqwest::Client, inbox: &str) -> Value {
    let token = String::from_utf8(mailroom_ok(serve.data(), &["token", "ann@acme.test"])).unwrap();
    let token = token.trim().to_string();
    let r = http
        .post(serve.url(&format!("/admin/inboxes/{inbox}/verify")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202, "{}", serve.log_tail());
    let mut run: Value = r.json().await.unwrap();
    let t = std::time::Instant::now();
    while run["outcome"] == "running" {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(60),
            "still running: {run}\n{}",
            serve.log_tail()
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let url = serve.url(&format!("/admin/inboxes/{inbox}/verify/{}", run["id"].as_str().unwrap()));
        run = http.get(url).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    }
    run
}

/// `mailroom serve` for a workspace of one admin and `inbox` (`provider` in the workspace),
/// with the mock's environment, the inbox connected through the OAuth flow (`oauth`).
async fn serve_connected(
    inbox: &str,
    provider: &str,
    env: Vec<(String, String)>,
    oauth: &str,
) -> (mailroom_tests::serve::Serve, reqwest::Client) {
    let data = tempfile::tempdir().unwrap();
    let ws = data.path().join("workspace.toml");
    std::fs::write(
        &ws,
        format!(
            "name = \"Verify\"\n[[users]]\nemail = \"ann@acme.test\"\nname = \"Ann\"\nrole = \"admin\"\n\n\
             [[inboxes]]\naddress = \"{inbox}\"\nprovider = \"{provider}\"\n"
        ),
    )
    .unwrap();
    mailroom_ok(data.path(), &["apply", ws.to_str().unwrap()]);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let serve = mailroom_tests::serve::Serve::start(data, &env_refs);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    mailroom_tests::serve::connect_mailbox(
        &http,
        &serve.base,
        serve.data(),
        "ann@acme.test",
        oauth,
        inbox,
        || serve.log_tail(),
    )
    .await;
    (serve, http)
}

/// Polls `done` every 100 ms for up to `secs` seconds.
async fn wait_until(what: &str, serve: &mailroom_tests::serve::Serve, secs: u64, done: impl Fn() -> bool) {
    let t = std::time::Instant::now();
    while !done() {
        assert!(t.elapsed() < std::time::Duration::from_secs(secs), "no {what}: {}", serve.log_tail());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn assert_passed(run: &Value, serve: &mailroom_tests::serve::Serve) {
    assert_eq!(
        run["outcome"],
        "passed",
        "{}\n{}",
        serde_json::to_string_pretty(run).unwrap(),
        serve.log_tail()
    );
}
