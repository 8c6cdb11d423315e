//! The settings pages in headless Chromium (tests/browser/settings.mjs): an admin creates
//! a team inbox on IMAP against the test dovecot with SMTP submission, turns tickets on,
//! adds a member and runs "send a test email" to all green; axe-core on every page; a
//! non-admin gets 404. Nothing the verification made shows in the lists or the report.

use mailroom_tests::dovecot::Dovecot;
use mailroom_tests::repo_root;
use mailroom_tests::serve::Serve;
use mailroom_tests::smtp::SmtpSink;

const INBOX: &str = "help@acme.test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_sets_up_an_imap_inbox_in_the_browser_and_verifies_it() {
    let dv = Dovecot::start();
    let smtp = SmtpSink::start_delivering(&dv.user, &dv.password, &dv.inbox_maildir(), None);
    // A customer's message waiting in the mailbox: it comes in with the first poll.
    let customer = format!(
        "From: Val <val@vip.test>\r\nTo: {INBOX}\r\nSubject: Question from a VIP\r\nMessage-ID: <vip-1@vip.test>\r\nDate: {}\r\n\r\nHello there.\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    dv.save("INBOX", customer.as_bytes());
    let data = tempfile::tempdir().unwrap();
    let ws = data.path().join("workspace.toml");
    std::fs::write(
        &ws,
        "name = \"Settings\"\n\
         [[users]]\nemail = \"ann@acme.test\"\nname = \"Ann\"\nrole = \"admin\"\n\n\
         [[users]]\nemail = \"bob@acme.test\"\nname = \"Bob\"\n\n\
         [[teams]]\nid = \"support\"\nname = \"Support\"\nmembers = [\"bob@acme.test\"]\n\n\
         [[pipelines]]\nid = \"support\"\nname = \"Support\"\nstages = [{ id = \"new\", name = \"New\" }, { id = \"closed\", name = \"Closed\", closed = true }]\n\n\
         [security]\nallow_private_mail_hosts = true\n",
    )
    .unwrap();
    mailroom_tests::mailroom_ok(data.path(), &["apply", ws.to_str().unwrap()]);
    let serve = Serve::start(data, &[]);
    let link = |u: &str| login_link(&serve, u);
    let shots = repo_root().join("target/screenshots/settings");
    let cfg = serde_json::json!({
        "base": serve.base,
        "adminLink": link("ann@acme.test"),
        "agentLink": link("bob@acme.test"),
        "inbox": INBOX,
        "imap": {"host": "127.0.0.1", "port": dv.port_tls, "user": dv.user, "password": dv.password, "caPem": dv.ca_pem()},
        "smtp": {"host": "127.0.0.1", "port": smtp.port()},
        "member": "bob@acme.test",
        "shots": shots,
    });
    walk(&serve, "settings.mjs", cfg).await;

    // The workspace is as the pages set it: read back through the admin API.
    let token =
        String::from_utf8(mailroom_tests::mailroom_ok(serve.data(), &["token", "ann@acme.test"])).unwrap();
    let ws: serde_json::Value = reqwest::Client::new()
        .get(serve.url("/admin/workspace"))
        .bearer_auth(token.trim())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ws = &ws["workspace"];
    let inbox = ws["inboxes"].as_array().unwrap().iter().find(|i| i["address"] == INBOX).expect("the inbox");
    assert_eq!(inbox["tickets"]["enabled"], true, "{inbox}");
    assert_eq!(inbox["tickets"]["pipeline"], "support", "{inbox}");
    assert_eq!(inbox["members"]["users"][0], "bob@acme.test", "{inbox}");
    let rules: Vec<&str> =
        ws["rules"].as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(rules, ["vip senders", "tests to support"]);
    let billing = ws["teams"].as_array().unwrap().iter().find(|t| t["id"] == "billing").expect("billing");
    assert_eq!(billing["members"][0], "carol@acme.test", "{billing}");
    let ann = ws["users"].as_array().unwrap().iter().find(|u| u["email"] == "ann@acme.test").unwrap();
    assert_eq!(ann["notifications"]["mention"], "none", "{ann}");
    assert_eq!(ann["notifications"]["digest"], true, "{ann}");
    // Nothing the verification made is listed or counted; the customer's message is.
    let contacts = mailroom_tests::mailroom_json(serve.data(), &["contacts", "--json"]);
    let emails: Vec<&str> = contacts.as_array().unwrap().iter().filter_map(|c| c["email"].as_str()).collect();
    assert_eq!(emails, ["val@vip.test"], "{contacts}");
    let report = mailroom_tests::mailroom_json(serve.data(), &["report", "--json"]);
    assert_eq!(
        (
            report["messages"]["in"].as_i64(),
            report["messages"]["out"].as_i64(),
            report["tickets_created"].as_i64()
        ),
        (Some(1), Some(0), Some(1)),
        "{report}"
    );
    assert_eq!(smtp.messages().len(), 2, "the test message and the reply went through SMTP");

    // The same button turns red, with the server's reason, when the SMTP server wants
    // another password, and when the IMAP server is down.
    let port = smtp.port();
    drop(smtp);
    let rotated = SmtpSink::start_delivering(&dv.user, "a-rotated-password", &dv.inbox_maildir(), Some(port));
    let run = verify_in_browser(&serve, "smtp-refused").await;
    assert_eq!(run["outcome"], "failed", "{run}");
    let send = step(&run, "send");
    assert_eq!(send["status"], "fail", "{run}");
    assert!(send["detail"].as_str().unwrap().contains("535"), "the SMTP server's reason: {send}");
    drop(rotated);
    let _smtp = SmtpSink::start_delivering(&dv.user, &dv.password, &dv.inbox_maildir(), Some(port));
    let mut dv = dv;
    dv.stop();
    let run = verify_in_browser(&serve, "imap-down").await;
    assert_eq!(run["outcome"], "failed", "{run}");
    assert_eq!(step(&run, "send")["status"], "pass", "{run}");
    let received = step(&run, "received");
    assert_eq!(received["status"], "fail", "{run}");
    assert!(received["detail"].as_str().unwrap().contains("IMAP poll failed"), "the reason: {received}");
}

/// `tests/browser/verify_run.mjs`: "Send a test email" on the inbox's page, to the end.
async fn verify_in_browser(serve: &Serve, name: &str) -> serde_json::Value {
    let cfg = serde_json::json!({
        "base": serve.base, "adminLink": login_link(serve, "ann@acme.test"), "inbox": INBOX, "name": name,
        "shots": repo_root().join("target/screenshots/settings"),
    });
    let out = walk(serve, "verify_run.mjs", cfg).await;
    serde_json::from_str(out.lines().next().unwrap_or_default()).expect("verify_run.mjs printed its run")
}

fn step<'v>(run: &'v serde_json::Value, key: &str) -> &'v serde_json::Value {
    run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == key)
        .unwrap_or_else(|| panic!("no step {key}: {run}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_adds_gmail_and_microsoft_365_inboxes_through_their_sign_in() {
    use mailroom_tests::mock_google::MockGoogle;
    use mailroom_tests::mock_graph::MockGraph;
    let google = MockGoogle::start("sales@acme.test").await;
    let graph = MockGraph::start().await;
    let ms = graph.add_user("ms@acme.test");
    graph.authorize_as(&ms);
    let data = tempfile::tempdir().unwrap();
    let ws = data.path().join("workspace.toml");
    std::fs::write(
        &ws,
        "name = \"OAuth\"\n[[users]]\nemail = \"ann@acme.test\"\nname = \"Ann\"\nrole = \"admin\"\n",
    )
    .unwrap();
    mailroom_tests::mailroom_ok(data.path(), &["apply", ws.to_str().unwrap()]);
    let mut env = google.serve_env();
    env.extend(graph.serve_env());
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let serve = Serve::start(data, &env_refs);
    let cfg = serde_json::json!({
        "base": serve.base,
        "adminLink": login_link(&serve, "ann@acme.test"),
        "shots": repo_root().join("target/screenshots/settings"),
        "providers": [
            {"provider": "gmail", "wrong": "other@acme.test", "right": "sales@acme.test"},
            {"provider": "graph", "wrong": "other-ms@acme.test", "right": "ms@acme.test"},
        ],
    });
    walk(&serve, "settings_oauth.mjs", cfg).await;
    // Only the right mailboxes are connected.
    let status = mailroom_tests::mailroom_json(serve.data(), &["inbox", "status", "--json"]);
    let connected: Vec<&str> =
        status.as_array().unwrap().iter().filter_map(|c| c["inbox"].as_str()).collect();
    assert_eq!(connected.len(), 2, "{status}");
    assert!(connected.contains(&"sales@acme.test") && connected.contains(&"ms@acme.test"), "{status}");
}

/// Runs `tests/browser/SCRIPT CONFIG` and requires success; returns its stdout (one JSON
/// line).
async fn walk(serve: &Serve, script: &str, cfg: serde_json::Value) -> String {
    let browser = repo_root().join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists()
            && browser.join("node_modules/axe-core").exists(),
        "playwright-core or axe-core is missing: run `npm ci` in tests/browser (scripts/test.sh does)"
    );
    let path = serve.data().join(format!("{script}-{}.json", rand::random::<u32>()));
    std::fs::write(&path, cfg.to_string()).unwrap();
    let out = tokio::process::Command::new("node")
        .current_dir(&browser)
        .arg(script)
        .arg(&path)
        .output()
        .await
        .expect("node is missing: install Node.js 20 or later");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{script} failed:\n{}\n{stdout}\nserve's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        serve.log_tail()
    );
    stdout
}

/// A one-time sign-in link for `user` (each is good once).
fn login_link(serve: &Serve, user: &str) -> String {
    let out = mailroom_tests::mailroom_ok(serve.data(), &["login-link", user, "--url", &serve.base]);
    String::from_utf8(out).unwrap().trim().to_string()
}
