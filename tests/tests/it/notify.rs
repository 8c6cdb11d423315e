//! Events, notifications and the form channel through the real `mailroom serve`: a local
//! webhook receiver (axum) gets every event with valid signatures, aiosmtpd gets the
//! notification emails, forms post into an inbox like email.

use axum::body::Bytes;
use axum::http::HeaderMap;
use mailroom_app::Ports;
use mailroom_tests::smtp_sink::SmtpSink;
use mailroom_tests::{bin, repo_root, wait_for_port};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SUPPORT: &str = "support@acme-corp.example";

struct Serve {
    child: Child,
    data: tempfile::TempDir,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The acme workspace with a 24x7 two-second first-response SLA (so a breach happens
/// during the test), a form, and Elena who wants no mention emails.
fn workspace_text() -> String {
    let text = std::fs::read_to_string(repo_root().join("examples/acme-corp.toml")).unwrap();
    let text = text.replace(
        "first_response = \"8h\"\ntime_to_close = \"5d\"\ncalendar = \"berlin\"",
        "first_response = \"2s\"\ntime_to_close = \"5d\"",
    );
    assert!(text.contains("first_response = \"2s\""), "the acme SLA policy changed: update this test");
    let text = text.replace(
        "email = \"elena.petrova@acme-corp.example\"",
        "email = \"elena.petrova@acme-corp.example\"\nnotifications = { mention = \"none\" }",
    );
    format!("{text}\n[[forms]]\nid = \"contact\"\ninbox = \"{SUPPORT}\"\nname = \"Contact us\"\n")
}

impl Serve {
    fn start(env: &[(&str, String)]) -> Serve {
        Serve::start_with(&workspace_text(), env)
    }

    fn start_with(workspace: &str, env: &[(&str, String)]) -> Serve {
        let data = tempfile::tempdir().unwrap();
        let ws = data.path().join("workspace.toml");
        std::fs::write(&ws, workspace).unwrap();
        ok(data.path(), &["apply".as_ref(), ws.as_os_str()]);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(bin("mailroom"))
            .arg("--data")
            .arg(data.path())
            .args(["serve", "--port", &port.to_string()])
            .env("MAILROOM_EVENTS_RELAY_SECONDS", "1")
            .env("MAILROOM_INGEST_TOKEN", mailroom_tests::INGEST_TOKEN)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(data.path().join("serve.log")).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, Duration::from_secs(20));
        Serve { child, data, base: format!("http://127.0.0.1:{port}") }
    }

    fn cli(&self, args: &[&str]) -> String {
        let a: Vec<&std::ffi::OsStr> = args.iter().map(|s| s.as_ref()).collect();
        ok(self.data.path(), &a)
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.cli(args)).unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("serve.log")).unwrap_or_default()
    }

    async fn ingest(&self, raw: &str) {
        let r = reqwest::Client::new()
            .post(format!("{}/ingest?inbox={SUPPORT}", self.base))
            .bearer_auth(mailroom_tests::INGEST_TOKEN)
            .body(raw.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());
    }

    fn conversations(&self) -> Vec<Value> {
        self.json(&["conversations", "--json"]).as_array().unwrap().clone()
    }

    async fn wait<T>(&self, what: &str, max: Duration, mut f: impl FnMut() -> Option<T>) -> T {
        let t = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(t.elapsed() < max, "{what}: not after {max:?}; serve's log:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn ok(data: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = Command::new(bin("mailroom")).arg("--data").arg(data).args(args).output().unwrap();
    assert!(out.status.success(), "mailroom {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A webhook receiver: every POST's headers and body.
type Received = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn webhook_receiver() -> (u16, Received) {
    let got: Received = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let g = g.clone();
            async move {
                g.lock().unwrap().push((headers, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, got)
}

fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    text.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string())
    })
}

/// (recipient, X-Mailroom-Notification) of each email.
fn summary(mails: &[Vec<u8>]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = mails
        .iter()
        .map(|m| {
            (header(m, "To").unwrap_or_default(), header(m, "X-Mailroom-Notification").unwrap_or_default())
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_webhooks_and_notifications_reach_the_right_users() {
    let smtp = SmtpSink::start();
    let (hook_port, hooks) = webhook_receiver().await;
    let serve = Serve::start(&[
        ("MAILROOM_EVENT_WEBHOOKS", format!("http://127.0.0.1:{hook_port}/hook")),
        ("MAILROOM_NOTIFY_SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port())),
        ("MAILROOM_NOTIFY_FROM", "mailroom@acme-corp.example".into()),
    ]);
    let now = chrono::Utc::now().to_rfc2822();
    serve
        .ingest(&format!(
            "From: Carla Customer <carla@customer.example>\r\nTo: {SUPPORT}\r\nSubject: Printer on fire\r\n\
             Message-ID: <first@customer.example>\r\nDate: {now}\r\n\r\nIt is on fire.\r\n"
        ))
        .await;
    let conv = serve
        .wait("assigned conversation", Duration::from_secs(30), || {
            serve.conversations().into_iter().find(|c| c["assignee"].is_string())
        })
        .await;
    let assignee = conv["assignee"].as_str().unwrap().to_string();
    let conv_id = conv["id"].as_str().unwrap().to_string();
    let mails = smtp.wait_for(1, Duration::from_secs(20));
    assert_eq!(summary(&mails), vec![(assignee.clone(), "assigned".to_string())]);
    let first = String::from_utf8_lossy(&mails[0]).to_string();
    assert!(first.contains("Auto-Submitted: auto-generated"), "{first}");
    assert!(first.contains("Printer on fire"), "{first}");

    // The customer writes again: the assignee hears of it.
    serve
        .ingest(&format!(
            "From: Carla Customer <carla@customer.example>\r\nTo: {SUPPORT}\r\nSubject: Re: Printer on fire\r\n\
             Message-ID: <second@customer.example>\r\nIn-Reply-To: <first@customer.example>\r\n\
             Date: {now}\r\n\r\nStill burning.\r\n"
        ))
        .await;
    smtp.wait_for(2, Duration::from_secs(20));

    // A comment mentioning Sofia (email) and Elena (mention = none), by the assignee.
    {
        let ports = Ports::embedded(serve.data.path()).unwrap();
        mailroom_app::feed::emit(
            &ports,
            mailroom_app::feed::Subject::Conversation(&conv_id),
            "comment_added",
            json!({"author": assignee, "comment_id": "c1", "mentions": [
                "sofia.rossi@acme-corp.example", "elena.petrova@acme-corp.example", assignee]}),
        )
        .await
        .unwrap();
        ports.flush().unwrap();
    }
    smtp.wait_for(3, Duration::from_secs(20));

    // The 2-second first-response SLA has passed without a reply: the sweep finds it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let sweep = serve.json(&["sweep"]);
    assert_eq!(sweep["breached"], json!([conv_id]), "{sweep}");
    smtp.wait_for(4, Duration::from_secs(20));

    // A few more relay runs send nothing more.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mails = smtp.messages();
    let mut want = vec![
        (assignee.clone(), "assigned".to_string()),
        (assignee.clone(), "customer_reply".to_string()),
        (assignee.clone(), "sla_breach".to_string()),
        ("sofia.rossi@acme-corp.example".to_string(), "mention".to_string()),
    ];
    want.sort();
    assert_eq!(summary(&mails), want);

    // Every event reached the webhook once, in order, signed.
    let key = serve.cli(&["events", "secret"]).trim().to_string();
    let got = serve
        .wait("sla_breached at the webhook", Duration::from_secs(20), || {
            let g = hooks.lock().unwrap().clone();
            g.iter().any(|(_, b)| String::from_utf8_lossy(b).contains("\"sla_breached\"")).then_some(g)
        })
        .await;
    let mut ids = std::collections::HashSet::new();
    let mut kinds = Vec::new();
    let mut last_at = String::new();
    for (h, body) in &got {
        let sig = h["x-mailroom-signature"].to_str().unwrap();
        assert_eq!(sig, mailroom_app::outbound::relay::webhook_signature(&key, body), "bad signature");
        let ev: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(h["x-mailroom-event-id"].to_str().unwrap(), ev["id"].as_str().unwrap());
        assert!(ids.insert(ev["id"].as_str().unwrap().to_string()), "event delivered twice: {ev}");
        let at = ev["at"].as_str().unwrap().to_string();
        assert!(at >= last_at, "out of order: {at} after {last_at}");
        last_at = at;
        kinds.push(ev["type"].as_str().unwrap().to_string());
    }
    for k in [
        "message_logged",
        "conversation_opened",
        "assigned",
        "ticket_created",
        "comment_added",
        "sla_breached",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} event in {kinds:?}");
    }
    assert_eq!(kinds.iter().filter(|k| *k == "message_logged").count(), 2, "{kinds:?}");
    // A wrong key does not verify.
    assert_ne!(
        mailroom_app::outbound::relay::webhook_signature("wrong", &got[0].1),
        got[0].0["x-mailroom-signature"]
    );
}

/// Importing old mail notifies nobody: not the assignees routing picked, not the SLA
/// deadlines that passed days ago. A person's assignment of the same conversation does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_imports_notify_nobody_but_a_manual_assignment_does() {
    let smtp = SmtpSink::start();
    let serve = Serve::start(&[
        ("MAILROOM_NOTIFY_SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port())),
        ("MAILROOM_NOTIFY_FROM", "mailroom@acme-corp.example".into()),
    ]);
    let old = (chrono::Utc::now() - chrono::Duration::days(5)).to_rfc2822();
    for (n, subject) in [(1, "Printer on fire"), (2, "Invoice question")] {
        serve
            .ingest(&format!(
                "From: Carla Customer <carla{n}@customer.example>\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n\
                 Message-ID: <old{n}@customer.example>\r\nDate: {old}\r\n\r\nFrom last week.\r\n"
            ))
            .await;
    }
    let convs = serve
        .wait("two assigned conversations", Duration::from_secs(30), || {
            let c: Vec<Value> =
                serve.conversations().into_iter().filter(|c| c["assignee"].is_string()).collect();
            (c.len() == 2).then_some(c)
        })
        .await;
    // Their 2-second first-response deadlines passed five days ago.
    let sweep = serve.json(&["sweep"]);
    assert_eq!(sweep["breached"].as_array().map(Vec::len), Some(2), "{sweep}");
    // Several relay runs (every second): nothing is sent.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(summary(&smtp.messages()), vec![], "history notified someone");

    // An admin gives one of them to another support agent through the API: they hear of it.
    let conv = convs[0]["id"].as_str().unwrap();
    let to = ["tom.becker@acme-corp.example", "priya.raman@acme-corp.example"]
        .into_iter()
        .find(|u| convs[0]["assignee"] != *u)
        .unwrap();
    let token = serve.cli(&["token", "maria.keller@acme-corp.example"]).trim().to_string();
    let r = reqwest::Client::new()
        .post(format!("{}/conversations/{conv}/assignment", serve.base))
        .bearer_auth(token)
        .json(&json!({"assignee": to}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    let mails = smtp.wait_for(1, Duration::from_secs(20));
    assert_eq!(summary(&mails), vec![(to.to_string(), "assigned".to_string())]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages().len(), 1, "{:?}", summary(&smtp.messages()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_submissions_open_conversations_like_email() {
    let serve = Serve::start(&[]);
    let http = reqwest::Client::new();
    let url = format!("{}/forms/contact/submissions", serve.base);
    // No secret yet: refused.
    let r = http.post(&url).json(&json!({"email": "a@b.example", "message": "x"})).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let secret = serve.cli(&["form", "secret", "contact"]).trim().to_string();
    assert_eq!(secret.len(), 64);
    let body = serde_json::to_vec(&json!({
        "email": "Dora@Prospect.example", "name": "Dora Prospect", "subject": "Invoice question",
        "message": "Why was I charged twice on my invoice?", "plan": "pro"
    }))
    .unwrap();
    let sig = mailroom_app::outbound::relay::webhook_signature(&secret, &body);
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>, url: String| {
        let mut rb = http.post(url).header("content-type", "application/json").body(body);
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        rb.send()
    };
    // Missing, wrong signature, wrong secret, unknown form.
    let r = post(vec![], body.clone(), url.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let wrong = mailroom_app::outbound::relay::webhook_signature("nope", &body);
    let r = post(vec![("x-mailroom-form-signature", wrong)], body.clone(), url.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = post(vec![("x-mailroom-form-secret", "0".repeat(64))], body.clone(), url.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = post(
        vec![("x-mailroom-form-secret", secret.clone())],
        body.clone(),
        format!("{}/forms/nope/submissions", serve.base),
    )
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(serve.conversations().len(), 0, "a refused submission stored something");
    // A bad body.
    let bad = br#"{"email":"not-an-address","message":"x"}"#.to_vec();
    let r = post(vec![("x-mailroom-form-secret", secret.clone())], bad, url.clone()).await.unwrap();
    assert_eq!(r.status().as_u16(), 422);
    assert!(r.text().await.unwrap().contains("not a valid address"));

    // Signed, twice with one Idempotency-Key: one message.
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = post(
            vec![("x-mailroom-form-signature", sig.clone()), ("idempotency-key", "k-1".into())],
            body.clone(),
            url.clone(),
        )
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        ids.push(r.json::<Value>().await.unwrap()["message_id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids[0], ids[1]);
    // The secret header works too (a urlencoded browser post).
    let r = http
        .post(&url)
        .header("x-mailroom-form-secret", &secret)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("email=erik%40other.example&message=Hello+there")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);

    let convs = serve
        .wait("two form conversations with tickets", Duration::from_secs(30), || {
            let c = serve.conversations();
            (c.len() == 2 && c.iter().all(|c| c["ticket"].is_object())).then_some(c)
        })
        .await;
    let dora =
        convs.iter().find(|c| c["contact_email"] == "dora@prospect.example").expect("Dora's conversation");
    assert_eq!(dora["inbox"], SUPPORT);
    assert_eq!(dora["messages"].as_array().unwrap().len(), 1, "{dora}");
    assert_eq!(dora["message_ids"][0], ids[0]);
    // Routed like an email: "invoice" goes to billing.
    assert_eq!(dora["team"], "billing", "{dora}");
    // The raw message is kept, with the form's headers.
    let ports = Ports::embedded(serve.data.path()).unwrap();
    let msg = ports.table.get(&mailroom_app::keys::message(&ids[0])).await.unwrap().unwrap();
    let raw = ports.blobs.get(msg["raw_key"].as_str().unwrap()).await.unwrap().expect("raw kept");
    let raw = String::from_utf8_lossy(&raw);
    assert!(raw.contains("X-Mailroom-Form: contact") && raw.contains("plan: pro"), "{raw}");
    let report = serve.json(&["report", "--json"]);
    assert_eq!(report["volume"]["by_channel"]["form"], 2, "{report}");
}

/// The AWS sinks against moto: EventBridge `PutEvents` (observed through a rule that
/// targets an SQS queue; more than 10 events, so more than one call) and SES v2
/// `SendEmail` from a verified identity (moto refuses an unverified sender).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_to_eventbridge_and_sends_with_ses_on_moto() {
    use mailroom_app::feed::Sink;
    use mailroom_app::outbound::notify::MailNotifier;
    use mailroom_app::outbound::relay::{BusSink, Relay};
    use mailroom_store::aws::{EventBridgeBus, SesSender};
    use std::sync::Arc;
    let stack = mailroom_tests::AwsStack::create().await;
    let ports = stack.ports();
    let conf = mailroom_tests::moto_conf().await;
    let ws = mailroom_tests::acme_workspace();
    mailroom_app::workspace::apply(&ports, &ws).await.unwrap();

    let eb = aws_sdk_eventbridge::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let (bus, q_url) = mailroom_tests::event_bus_into_queue(&conf).await;
    let ses = aws_sdk_sesv2::Client::new(&conf);
    ses.create_email_identity().email_identity("mailroom@acme-corp.example").send().await.unwrap();

    // 12 events: a comment mentioning Sofia, then 11 more.
    for i in 0..12 {
        let mentions = if i == 0 { json!(["sofia.rossi@acme-corp.example"]) } else { json!([]) };
        mailroom_app::feed::emit(&ports, mailroom_app::feed::Subject::Conversation("conv-1"),
            "comment_added",
            json!({"author": "maria.keller@acme-corp.example", "comment_id": format!("c{i}"), "mentions": mentions}),
        )
        .await
        .unwrap();
    }
    let relay = Relay {
        sinks: vec![Box::new(BusSink {
            bus: Arc::new(EventBridgeBus { client: eb.clone(), bus: bus.clone() }),
        }) as Box<dyn Sink>],
        notifier: Some(Box::new(MailNotifier {
            from: "mailroom@acme-corp.example".into(),
            sender: Arc::new(SesSender { client: ses.clone() }),
        })),
    };
    let later = chrono::Utc::now() + chrono::Duration::seconds(3);
    let out = relay.run_once(&ports, later).await;
    assert_eq!(out.len(), 2, "{out:?}");
    for o in &out {
        assert_eq!((o.delivered, o.error.as_deref()), (12, None), "{o:?}");
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        let r = sqs.receive_message().queue_url(&q_url).max_number_of_messages(10).send().await.unwrap();
        for m in r.messages() {
            got.push(serde_json::from_str::<Value>(m.body().unwrap()).unwrap());
            sqs.delete_message()
                .queue_url(&q_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        if got.len() >= 12 {
            break;
        }
    }
    assert_eq!(got.len(), 12, "{got:?}");
    for e in &got {
        assert_eq!(e["source"], "mailroom");
        assert_eq!(e["detail-type"], "comment_added");
        assert!(e["detail"]["id"].as_str().unwrap().starts_with("evt_"), "{e}");
    }
    // A wrong sender is refused by SES: the notifier reports it instead of losing it.
    let bad = MailNotifier {
        from: "nobody@unverified.example".into(),
        sender: Arc::new(SesSender { client: ses.clone() }),
    };
    let n = mailroom_app::outbound::notify::Notification {
        to: "sofia.rossi@acme-corp.example".into(),
        reason: "mention",
        subject: "x".into(),
        text: "x".into(),
        event_id: "evt_x".into(),
    };
    use mailroom_app::outbound::notify::Notifier;
    assert!(bad.send(&n).await.is_err(), "moto accepted an unverified sender: the SES check proves nothing");
    // A second run delivers nothing more.
    let again = relay.run_once(&ports, later + chrono::Duration::seconds(1)).await;
    assert!(again.iter().all(|o| o.delivered == 0 && o.error.is_none()), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_that_must_be_reconnected_notifies_its_owner_or_the_admins() {
    use mailroom_app::mailbox::connection::{self, Connection, Failure, Provider, State};
    let smtp = SmtpSink::start();
    let serve = Serve::start(&[
        ("MAILROOM_NOTIFY_SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port())),
        ("MAILROOM_NOTIFY_FROM", "mailroom@acme-corp.example".into()),
    ]);
    let tom = "tom.becker@acme-corp.example";
    {
        let ports = Ports::embedded(serve.data.path()).unwrap();
        for inbox in [SUPPORT, tom] {
            let addr = mailroom_core::EmailAddress::parse(inbox).unwrap();
            let c = Connection::new(&addr, Provider::Imap, json!({}), chrono::Utc::now());
            connection::save(&ports, &c).await.unwrap();
            let state = connection::record_error(
                &ports,
                &addr,
                "AUTHENTICATIONFAILED Authentication failed.",
                Failure::Terminal,
            )
            .await
            .unwrap();
            assert_eq!(state, State::ReconnectRequired);
            // A second refusal raises no second event.
            connection::record_error(&ports, &addr, "AUTHENTICATIONFAILED again", Failure::Terminal)
                .await
                .unwrap();
        }
        ports.flush().unwrap();
    }
    let mails = smtp.wait_for(2, Duration::from_secs(20));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails = if smtp.messages().len() > mails.len() { smtp.messages() } else { mails };
    let mut got: Vec<(String, String)> = mails
        .iter()
        .map(|m| (header(m, "To").unwrap_or_default(), header(m, "Subject").unwrap_or_default()))
        .collect();
    got.sort();
    // Tom owns his inbox; the shared support@ goes to the admin (Maria).
    assert_eq!(
        got,
        vec![
            ("maria.keller@acme-corp.example".to_string(), format!("[Mailroom] Reconnect {SUPPORT}")),
            (tom.to_string(), format!("[Mailroom] Reconnect {tom}")),
        ],
        "{}",
        serve.log()
    );
    let text = String::from_utf8_lossy(&mails[0]).to_string();
    assert!(
        text.contains("AUTHENTICATIONFAILED") && text.contains("X-Mailroom-Notification: reconnect_required"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_digest_goes_once_a_day_to_those_who_asked() {
    let smtp = SmtpSink::start();
    // Tom asks for it; nobody else does (it is off by default).
    let text = workspace_text().replace(
        "email = \"tom.becker@acme-corp.example\"",
        "email = \"tom.becker@acme-corp.example\"\nnotifications = { digest = true, assigned = \"none\", customer_reply = \"none\" }",
    );
    assert!(text.contains("digest = true"), "the acme workspace changed: update this test");
    let serve = Serve::start_with(
        &text,
        &[
            ("MAILROOM_NOTIFY_SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port())),
            ("MAILROOM_NOTIFY_FROM", "mailroom@acme-corp.example".into()),
            // From midnight UTC: whenever the test runs, today's digest is due.
            ("MAILROOM_DIGEST_HOUR", "0".into()),
        ],
    );
    let mails = smtp.wait_for(1, Duration::from_secs(20));
    // Later relay runs (every second) send no second one today.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let all = smtp.messages();
    let digests: Vec<&Vec<u8>> =
        all.iter().filter(|m| header(m, "X-Mailroom-Notification").as_deref() == Some("digest")).collect();
    assert_eq!(digests.len(), 1, "{:?}\n{}", summary(&all), serve.log());
    assert_eq!(header(digests[0], "To").as_deref(), Some("tom.becker@acme-corp.example"));
    let body = String::from_utf8_lossy(digests[0]).to_string();
    assert!(header(digests[0], "Subject").unwrap_or_default().starts_with("[Mailroom] Your day:"), "{body}");
    assert!(body.contains("Assigned to you and open: 0") && body.contains("unassigned:"), "{body}");
    assert!(body.contains("tom.becker@acme-corp.example"), "his inboxes are named: {body}");
    assert_eq!(mails.len(), 1);
}

/// Email-log alerts (issue 21): support@ received mail every day and then none; billing@
/// logged all its mail and then a day of auto-replies (never logged). The day's check
/// raises one alert each, once, and the admins get them by email.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_that_stops_receiving_or_stops_being_logged_alerts_the_admins() {
    let smtp = SmtpSink::start();
    let serve = Serve::start(&[
        ("MAILROOM_NOTIFY_SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port())),
        ("MAILROOM_NOTIFY_FROM", "mailroom@acme-corp.example".into()),
    ]);
    const BILLING: &str = "billing@acme-corp.example";
    // The judged day is today (the check runs as of tomorrow), so `serve`'s own daily
    // check, which judges yesterday, never meets these figures.
    let now = chrono::Utc::now();
    let today = now.date_naive();
    let client = reqwest::Client::new();
    let mut n = 0;
    let mut send = |inbox: &'static str, date: chrono::DateTime<chrono::Utc>, auto: bool| {
        n += 1;
        let extra = if auto { "Auto-Submitted: auto-replied\r\n" } else { "" };
        let subject = if auto { "Automatic reply: out of office" } else { "A question" };
        let raw = format!(
            "From: Customer {n} <c{n}@customer{n}.example>\r\nTo: {inbox}\r\nSubject: {subject} {n}\r\n{extra}Date: {}\r\nMessage-ID: <alert-{n}@customer.example>\r\n\r\nHello {n}\r\n",
            date.to_rfc2822()
        );
        let rq = client
            .post(format!("{}/ingest?inbox={inbox}", serve.base))
            .bearer_auth(mailroom_tests::INGEST_TOKEN)
            .body(raw);
        async move {
            let r = rq.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 202, "{}", r.text().await.unwrap());
        }
    };
    for back in 1..=7 {
        let day = (today - chrono::Duration::days(back)).and_hms_opt(10, 0, 0).unwrap().and_utc();
        for k in 0..6 {
            send(SUPPORT, day + chrono::Duration::minutes(k), false).await;
        }
        for k in 0..10 {
            send(BILLING, day + chrono::Duration::minutes(k), false).await;
        }
    }
    let start = today.and_hms_opt(0, 5, 0).unwrap().and_utc();
    for k in 0..20 {
        send(BILLING, start + chrono::Duration::minutes(k), true).await;
    }
    let total = 7 * 16 + 20;
    serve
        .wait("every message processed", Duration::from_secs(60), || {
            let msgs: usize =
                serve.conversations().iter().map(|c| c["message_ids"].as_array().unwrap().len()).sum();
            (msgs == total).then_some(())
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ports = Ports::embedded(serve.data.path()).unwrap();
    let ws = mailroom_app::workspace::load(&ports).await.unwrap().unwrap();
    let tomorrow = now + chrono::Duration::days(1);
    let alerts = mailroom_app::reports::log_alert::check(&ports, &ws, tomorrow).await.unwrap();
    let got: Vec<(&str, &str)> = alerts.iter().map(|a| (a.inbox.as_str(), a.kind)).collect();
    assert_eq!(got, [(SUPPORT, "stopped"), (BILLING, "share_dropped")], "{alerts:#?}");
    assert_eq!(alerts[1].day_figures.messages, 20);
    assert_eq!(alerts[1].day_figures.logged, 0);
    assert_eq!(alerts[1].baseline.logged, 70);
    // The day was judged: another check finds nothing new.
    assert!(mailroom_app::reports::log_alert::check(&ports, &ws, tomorrow).await.unwrap().is_empty());
    ports.flush().unwrap();
    drop(ports);

    let alert_mails = || {
        smtp.messages()
            .into_iter()
            .filter_map(|m| {
                // The whole subject, unfolded.
                let subject = mailroom_core::understand(&m).ok()?.message.subject;
                subject
                    .starts_with("[Mailroom] Email log")
                    .then(|| (header(&m, "To").unwrap_or_default(), subject))
            })
            .collect::<Vec<_>>()
    };
    let mut mails = serve
        .wait("the alert emails", Duration::from_secs(30), || {
            let m = alert_mails();
            (m.len() >= 2).then_some(m)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(alert_mails().len(), 2, "each alert once");
    mails.sort();
    let maria = "maria.keller@acme-corp.example".to_string();
    assert_eq!(
        mails,
        [
            (maria.clone(), format!("[Mailroom] Email log: {BILLING} logged 0% of its mail on {today}")),
            (maria, format!("[Mailroom] Email log: {SUPPORT} received no mail on {today}")),
        ]
    );
}
