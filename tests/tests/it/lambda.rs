//! The Lambda binaries, run for real under cargo-lambda's runtime API emulator
//! (`cargo lambda watch --only-lambda-apis`) and invoked with `cargo lambda invoke`,
//! against moto.

use base64::Engine;
use mailroom_app::mailbox::connection::{self, Connection, Provider, State as ConnState};
use mailroom_store::{Key, Table};
use mailroom_tests::mock_google::{self, DataEncoding, Jwt, MockGoogle};
use mailroom_tests::{AwsStack, bin, repo_root};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cargo_lambda() -> PathBuf {
    let p = repo_root().join(".venv/bin/cargo-lambda");
    assert!(
        p.is_file(),
        "cargo-lambda is not installed: {} is missing. Run scripts/test.sh (it installs cargo-lambda from PyPI into .venv)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the emulator and the function binary attached to it.
pub(crate) fn start(function: &str, env: &[(String, String)]) -> (u16, Kill, Kill) {
    let port = free_port();
    let watch = Kill(
        Command::new(cargo_lambda())
            .args(["lambda", "watch", "--only-lambda-apis", "-A", "127.0.0.1", "-P", &port.to_string()])
            .current_dir(repo_root())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting cargo lambda watch"),
    );
    mailroom_tests::wait_for_port(port, Duration::from_secs(30));
    let f = Kill(
        Command::new(bin(function))
            .envs(env.iter().cloned())
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}/.rt"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the function binary"),
    );
    (port, watch, f)
}

/// `cargo lambda invoke` aimed at the emulator on `port`.
fn invoke_cmd(port: u16) -> Command {
    let mut c = Command::new(cargo_lambda());
    c.args(["lambda", "invoke", "-A", "127.0.0.1", "-P", &port.to_string()]).current_dir(repo_root());
    c
}

pub(crate) fn invoke(port: u16, payload: &serde_json::Value) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("event.json");
    std::fs::write(&file, payload.to_string()).unwrap();
    let t = Instant::now();
    loop {
        let out = invoke_cmd(port)
            .args(["--output-format", "json", "-F"])
            .arg(&file)
            .output()
            .expect("running cargo lambda invoke");
        if out.status.success() {
            return serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!("invoke output is not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
            });
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "cargo lambda invoke failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

const MAIL: &[u8] = b"Delivered-To: support@acme-corp.example\r\nFrom: Jane Doe <jane@customer.example>\r\nTo: support@acme-corp.example\r\nSubject: Where is my invoice?\r\nMessage-ID: <lambda-test-1@customer.example>\r\nDate: Mon, 4 Mar 2024 10:00:00 +0000\r\n\r\nHello, I cannot find it.\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_match_functions_run_under_cargo_lambda_against_moto() {
    let stack = AwsStack::create().await;
    let env = stack.function_env();

    // Ingest: raw to S3, pointer to SQS.
    let (port, _w, _f) = start("mailroom-ingest", &env);
    let raw_b64 = base64::engine::general_purpose::STANDARD.encode(MAIL);
    let resp = invoke(port, &serde_json::json!({"raw_base64": raw_b64}));
    assert_eq!(resp["outcome"], "stored", "{resp}");
    let key = resp["key"].as_str().expect("key").to_string();
    assert!(key.starts_with("raw/support@acme-corp.example/2024/03/04/"), "{key}");
    let obj =
        stack.clients.s3.get_object().bucket(&stack.bucket).key(&key).send().await.expect("raw object in S3");
    assert_eq!(obj.body.collect().await.unwrap().into_bytes().as_ref(), MAIL);
    let msgs = stack
        .clients
        .sqs
        .receive_message()
        .queue_url(&stack.queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    assert_eq!(msgs.len(), 1, "one pointer on the ingest queue");
    let body = msgs[0].body().unwrap().to_string();
    let ptr: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ptr["key"], key.as_str());
    assert_eq!(ptr["inbox"], "support@acme-corp.example");
    // The same bytes again: nothing new.
    let again = invoke(port, &serde_json::json!({"raw_base64": raw_b64}));
    assert_eq!(again["outcome"], "requeued", "not processed yet, so it is queued again: {again}");
    // Bad input gets a clear error.
    let bad = invoke_cmd(port).args(["--data-ascii", r#"{"raw_base64":"%%%"}"#]).output().unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("base64")
            || String::from_utf8_lossy(&bad.stderr).contains("base64")
    );

    // Match: an SQS batch with the pointer and a poison message; only the poison fails.
    let (mport, _mw, _mf) = start("mailroom-match", &env);
    let event = serde_json::json!({"Records": [
        {"messageId": "m-good", "receiptHandle": "r1", "body": body, "eventSource": "aws:sqs"},
        {"messageId": "m-poison", "receiptHandle": "r2", "body": "{not json", "eventSource": "aws:sqs"},
        {"messageId": "m-good-again", "receiptHandle": "r3", "body": body, "eventSource": "aws:sqs"},
    ]});
    let resp = invoke(mport, &event);
    assert_eq!(resp["batchItemFailures"], serde_json::json!([{"itemIdentifier": "m-poison"}]), "{resp}");
    let table = mailroom_store::aws::DynamoTable::new(stack.clients.dynamodb.clone(), &stack.table);
    let msg = table
        .get(&Key::new("msg#lambda-test-1@customer.example", "msg"))
        .await
        .unwrap()
        .expect("message row in DynamoDB");
    assert_eq!(msg["inbox"], "support@acme-corp.example");
    assert_eq!(msg["copies"].as_array().map(Vec::len), Some(1), "redelivery recorded the copy once: {msg:?}");
}

/// The scheduled sweep function: a conversation whose first-response deadline passed gets
/// one `sla_breached` event (read through the `sla-due` index on DynamoDB), the gauges
/// come back in the response, and a second run finds nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sweep_function_writes_one_breach_event_against_moto() {
    use mailroom_app::reports::{MsgFact, NewMessage, refresh};
    let stack = AwsStack::create().await;
    let ports = stack.ports();
    let ws = mailroom_tests::acme_workspace();
    mailroom_app::workspace::apply(&ports, &ws).await.unwrap();
    // A customer's message five days ago, never answered: any five days hold more than the
    // standard policy's 8 business hours (Berlin, Mon-Fri 08-18), and the sweep's gauges
    // look at the last 90 days.
    let conv = "csweeptest";
    let mut item = mailroom_app::keys::conv_key(conv).item();
    item.insert("id".into(), serde_json::json!(conv));
    item.insert("inbox".into(), serde_json::json!("support@acme-corp.example"));
    item.insert("team".into(), serde_json::json!("support"));
    item.insert("status".into(), serde_json::json!("open"));
    ports.table.put(item, None).await.unwrap();
    let t = (chrono::Utc::now() - chrono::Duration::days(5)).timestamp();
    let fact = MsgFact {
        t,
        out: false,
        normal: true,
        agent: None,
        logged: true,
        reason: None,
        channel: "email".into(),
    };
    refresh(&ports, &ws, conv, Some(NewMessage { id: "sweep-1@customer.example", fact, keep_logged: false }))
        .await
        .unwrap();
    let figures = mailroom_app::reports::figures(&ports, conv).await.unwrap().expect("report state");
    assert_eq!(figures.sla.as_deref(), Some("due"));

    let (port, _w, _f) = start("mailroom-sweep", &stack.function_env());
    let out = invoke(port, &serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event"}));
    assert_eq!(out["breached"], serde_json::json!([conv]), "{out}");
    assert_eq!(out["open"], 1, "{out}");
    assert_eq!(out["unassigned"], 1, "{out}");
    let events = mailroom_app::feed::conversation_events(&ports, conv).await.unwrap();
    let breaches = events.iter().filter(|e| e["type"] == "sla_breached").count();
    assert_eq!(breaches, 1, "{events:?}");
    let again = invoke(port, &serde_json::json!({}));
    assert_eq!(again["breached"], serde_json::json!([]), "{again}");
    let events = mailroom_app::feed::conversation_events(&ports, conv).await.unwrap();
    assert_eq!(events.iter().filter(|e| e["type"] == "sla_breached").count(), 1);
}

/// The scheduled IMAP poll function against a private dovecot and moto: the password
/// sealed with KMS, the lease and cursors as DynamoDB conditional writes, raw mail in S3
/// and pointers on SQS; a second run fetches nothing, and `{"inbox": …}` polls one inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_poll_function_polls_dovecot_into_moto() {
    use mailroom_app::mailbox::imap::{self, PollOptions};
    let dv = mailroom_tests::dovecot::Dovecot::start();
    let mail = |id: &str, from: &str, to: &str| {
        format!(
            "From: {from}\r\nTo: {to}\r\nSubject: Lambda poll\r\nMessage-ID: <{id}>\r\nDate: {}\r\n\r\nHello.\r\n",
            chrono::Utc::now().to_rfc2822()
        )
    };
    dv.save(
        "INBOX",
        mail("imap-lambda-1@customer.example", "jane@customer.example", "support@acme.test").as_bytes(),
    );
    dv.save(
        "INBOX",
        mail("imap-lambda-2@customer.example", "joe@customer.example", "support@acme.test").as_bytes(),
    );
    dv.save("Sent", mail("imap-lambda-3@acme.test", "support@acme.test", "jane@customer.example").as_bytes());

    let stack = AwsStack::create().await;
    let ports = stack.ports();
    let inbox = mailroom_core::EmailAddress::parse("support@acme.test").unwrap();
    let settings = dv.imap_settings();
    imap::connect(&ports, &inbox, settings, &dv.password, &PollOptions::default()).await.expect("connect");
    let sealed = ports.table.get(&Key::new("conn#support@acme.test", "secret#imap")).await.unwrap().unwrap();
    assert!(!serde_json::to_string(&sealed).unwrap().contains(&dv.password), "stored in the clear");

    let (port, _w, _f) = start("mailroom-imap-poll", &stack.function_env());
    let out = invoke(port, &serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event"}));
    let r = &out["inboxes"][0];
    assert_eq!(
        (r["outcome"].as_str(), r["fetched"].as_u64(), r["stored"].as_u64()),
        (Some("polled"), Some(3), Some(3)),
        "{out}"
    );
    let objects = stack
        .clients
        .s3
        .list_objects_v2()
        .bucket(&stack.bucket)
        .prefix("raw/support@acme.test/")
        .send()
        .await
        .unwrap()
        .contents
        .unwrap_or_default();
    assert_eq!(objects.len(), 3, "raw mail in S3");
    let depth = stack
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default()
        .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .cloned();
    assert_eq!(depth.as_deref(), Some("3"), "one pointer per message on the ingest queue");
    let cursor =
        mailroom_app::mailbox::connection::get_cursor(&ports, &inbox, "INBOX").await.unwrap().unwrap();
    assert_eq!(cursor.value["last_uid"], 2, "{cursor:?}");
    let conn = mailroom_app::mailbox::connection::get(&ports, &inbox).await.unwrap().unwrap();
    assert_eq!(conn.state, mailroom_app::mailbox::connection::State::Connected);

    let again = invoke(port, &serde_json::json!({"inbox": "support@acme.test"}));
    assert_eq!(again["inboxes"][0]["outcome"], "polled", "{again}");
    assert_eq!(again["inboxes"][0]["fetched"], 0, "{again}");
}

// ---- Mailbox connections: webhooks, mailbox-sync, scheduler ----

const PUBLIC_URL: &str = "https://mailroom.test";

/// [`invoke`] from inside the test's runtime: the mocks are tasks on that runtime, so
/// the blocking wait for `cargo lambda invoke` must leave a worker free for them.
pub(crate) fn invoke_blocking(port: u16, payload: &serde_json::Value) -> serde_json::Value {
    tokio::task::block_in_place(|| invoke(port, payload))
}

/// The function environment for the Google side pointed at a [`MockGoogle`].
pub(crate) fn google_env(stack: &AwsStack, mock: &MockGoogle) -> Vec<(String, String)> {
    let mut env = stack.function_env();
    for (k, v) in [
        ("MAILROOM_PUBLIC_URL", PUBLIC_URL.to_string()),
        ("MAILROOM_GOOGLE_CLIENT_ID", mock_google::CLIENT_ID.to_string()),
        ("MAILROOM_GOOGLE_CLIENT_SECRET", mock_google::CLIENT_SECRET.to_string()),
        ("MAILROOM_GOOGLE_AUTH_URL", mock.auth_url()),
        ("MAILROOM_GOOGLE_TOKEN_URL", mock.token_url()),
        ("MAILROOM_GMAIL_API", mock.url.clone()),
        ("MAILROOM_GOOGLE_JWKS_URL", mock.jwks_url()),
        ("MAILROOM_PUBSUB_AUDIENCE", mock_google::PUSH_AUDIENCE.to_string()),
        ("MAILROOM_PUBSUB_EMAIL", mock_google::PUSH_EMAIL.to_string()),
        ("MAILROOM_GMAIL_TOPIC", mock_google::TOPIC.to_string()),
        ("MAILROOM_BACKFILL_DAYS", "14".to_string()),
    ] {
        env.push((k.to_string(), v));
    }
    env
}

/// A Gmail connection in `state`, stored on moto; with tokens from the mock (sealed with
/// the stack's KMS key) unless it is `reconnect_required`.
pub(crate) async fn gmail_connection(
    ports: &mailroom_app::Ports,
    mock: &MockGoogle,
    inbox: &str,
    state: ConnState,
) {
    let c = Connection {
        inbox: inbox.into(),
        provider: Provider::Gmail,
        settings: serde_json::json!({"backfill_days": 14}),
        state,
        connected_at: chrono::Utc::now(),
        last_success: None,
        last_error: None,
        last_error_at: None,
        lag_seconds: None,
        consecutive_failures: 0,
    };
    connection::save(ports, &c).await.unwrap();
    if state == ConnState::ReconnectRequired {
        return;
    }
    let (access, refresh) = mock.grant();
    let t = mailroom_app::mailbox::oauth::TokenSet {
        access_token: access,
        refresh_token: Some(refresh),
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(50),
    };
    let inbox = mailroom_core::EmailAddress::parse(inbox).unwrap();
    mailroom_app::mailbox::oauth::store_tokens(ports, &inbox, &t).await.unwrap();
}

/// An API Gateway HTTP API (payload 2.0) event, the shape lambda_http reads.
pub(crate) fn http_event(
    method: &str,
    path: &str,
    query: &str,
    headers: serde_json::Value,
    body: Option<&str>,
) -> serde_json::Value {
    let mut headers = headers;
    headers["host"] = serde_json::json!("mailroom.test");
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "mailroomapi",
            "domainName": "mailroom.test",
            "domainPrefix": "mailroom",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "test"},
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "04/Mar/2024:10:00:00 +0000",
            "timeEpoch": 1709546400000i64
        },
        "body": body,
        "isBase64Encoded": false
    })
}

/// Every message on a queue now (received, then deleted).
pub(crate) async fn drain_queue(stack: &AwsStack, url: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    loop {
        let msgs = stack
            .clients
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if msgs.is_empty() {
            return out;
        }
        for m in msgs {
            out.push(serde_json::from_str(m.body().unwrap()).expect("a JSON message"));
            stack
                .clients
                .sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

fn header<'a>(resp: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    resp["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// The webhooks function (lambda_http) under cargo lambda, fed API Gateway HTTP API v2
/// events: the Graph validation handshake, a Gmail push with a genuine Pub/Sub token (a
/// sync request on the sync queue) and a forged one (refused, nothing queued), and the
/// admin-only start route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_function_answers_graph_validation_and_gmail_push_under_cargo_lambda() {
    const INBOX: &str = "sales@acme-corp.example";
    let stack = AwsStack::create().await;
    let ports = stack.ports();
    let mock = MockGoogle::start(INBOX).await;
    gmail_connection(&ports, &mock, INBOX, ConnState::Connected).await;
    let (port, _w, _f) = start("mailroom-webhooks", &google_env(&stack, &mock));

    // (a) Graph's validation handshake: the decoded token echoed as text/plain.
    let token = "Validation: Testing client application reachability for subscription Request-Id: 9e1f";
    let query = "validationToken=Validation%3A%20Testing%20client%20application%20reachability%20for%20subscription%20Request-Id%3A%209e1f";
    let resp =
        invoke_blocking(port, &http_event("POST", "/webhooks/graph", query, serde_json::json!({}), None));
    assert_eq!(resp["statusCode"], 200, "{resp}");
    assert!(header(&resp, "content-type").is_some_and(|c| c.starts_with("text/plain")), "{resp}");
    assert_eq!(resp["isBase64Encoded"], false, "{resp}");
    assert_eq!(resp["body"], token, "{resp}");

    // (b) A genuine Gmail push: 204 and one `push` sync request on the sync queue.
    let body =
        String::from_utf8(mock.push_body(INBOX, mock.history_id() + 5, DataEncoding::UrlNoPad)).unwrap();
    let push = |jwt: String| {
        http_event(
            "POST",
            "/webhooks/gmail",
            "",
            serde_json::json!({"content-type": "application/json", "authorization": format!("Bearer {jwt}")}),
            Some(&body),
        )
    };
    let resp = invoke_blocking(port, &push(mock.push_jwt(Jwt::Good)));
    assert_eq!(resp["statusCode"], 204, "{resp}");
    let queued = drain_queue(&stack, &stack.sync_url).await;
    assert_eq!(queued.len(), 1, "one sync request: {queued:?}");
    assert_eq!(queued[0]["inbox"], INBOX, "{queued:?}");
    assert_eq!(queued[0]["provider"], "gmail", "{queued:?}");
    assert_eq!(queued[0]["reason"], "push", "{queued:?}");

    // (c) Forged tokens: refused, nothing queued.
    for forged in [Jwt::OtherKey, Jwt::BadAudience] {
        let resp = invoke_blocking(port, &push(mock.push_jwt(forged)));
        let status = resp["statusCode"].as_u64();
        assert!(matches!(status, Some(401 | 403)), "{forged:?}: {resp}");
    }
    let queued = drain_queue(&stack, &stack.sync_url).await;
    assert!(queued.is_empty(), "a forged push queued {queued:?}");

    // (d) No connection starts here: that is the API's (an admin's or the inbox owner's
    // token). The shared admin-token route is gone; an unknown route answers problem+json.
    let query = "inbox=sales%40acme-corp.example";
    let bearer = serde_json::json!({"authorization": "Bearer lambda-test-admin-token-0123"});
    let resp = invoke_blocking(port, &http_event("POST", "/connections/gmail/start", query, bearer, None));
    assert_eq!(resp["statusCode"], 404, "{resp}");
    let ct = resp["headers"]["content-type"].as_str().unwrap_or_default();
    assert_eq!(ct, "application/problem+json", "{resp}");
}

fn gmail_mail(n: u32) -> Vec<u8> {
    format!(
        "From: Customer {n} <c{n}@customer.example>\r\nTo: sales@acme-corp.example\r\nSubject: Question {n}\r\nMessage-ID: <gmail-lambda-{n}@customer.example>\r\nDate: {}\r\n\r\nHello {n}.\r\n",
        chrono::Utc::now().to_rfc2822()
    )
    .into_bytes()
}

async fn ingest_depth(stack: &AwsStack) -> Option<String> {
    stack
        .clients
        .sqs
        .get_queue_attributes()
        .queue_url(&stack.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default()
        .get(&aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .cloned()
}

async fn raw_objects(stack: &AwsStack) -> Vec<String> {
    stack
        .clients
        .s3
        .list_objects_v2()
        .bucket(&stack.bucket)
        .prefix("raw/")
        .send()
        .await
        .unwrap()
        .contents
        .unwrap_or_default()
        .into_iter()
        .filter_map(|o| o.key)
        .collect()
}

fn sqs_event(id: &str, req: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"Records": [
        {"messageId": id, "receiptHandle": format!("rh-{id}"), "body": req.to_string(), "eventSource": "aws:sqs"},
    ]})
}

/// The mailbox-sync function: a `connect` request for a Gmail mailbox whose tokens are
/// sealed with KMS on moto watches it and backfills its 3 messages into S3 and the
/// ingest queue; a later `push` finds nothing new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_sync_function_syncs_a_gmail_mailbox_into_moto() {
    const INBOX: &str = "sales@acme-corp.example";
    let stack = AwsStack::create().await;
    let ports = stack.ports();
    let mock = MockGoogle::start(INBOX).await;
    for n in 1..=3 {
        mock.add_message(&gmail_mail(n), &["INBOX", "UNREAD"]);
    }
    gmail_connection(&ports, &mock, INBOX, ConnState::Connected).await;
    let sealed = ports.table.get(&Key::new(format!("conn#{INBOX}"), "secret#oauth")).await.unwrap();
    let sealed = serde_json::to_string(&sealed.expect("the sealed tokens")).unwrap();
    assert!(!sealed.contains("mock-refresh"), "tokens stored in the clear: {sealed}");

    let (port, _w, _f) = start("mailroom-mailbox-sync", &google_env(&stack, &mock));
    let req = serde_json::json!({"inbox": INBOX, "provider": "gmail", "reason": "connect", "hint": {}});
    let resp = invoke_blocking(port, &sqs_event("sync-1", req));
    assert_eq!(resp["batchItemFailures"], serde_json::json!([]), "{resp}");
    let (topic, _) = mock.watch_state().expect("the connect request called users.watch");
    assert_eq!(topic, mock_google::TOPIC);
    let objects = raw_objects(&stack).await;
    assert_eq!(objects.len(), 3, "raw mail in S3: {objects:?}");
    assert!(objects.iter().all(|k| k.starts_with(&format!("raw/{INBOX}/"))), "{objects:?}");
    assert_eq!(
        ingest_depth(&stack).await.as_deref(),
        Some("3"),
        "one pointer per message on the ingest queue"
    );
    let conn =
        connection::get(&ports, &mailroom_core::EmailAddress::parse(INBOX).unwrap()).await.unwrap().unwrap();
    assert_eq!(conn.state, ConnState::Connected, "{conn:?}");
    assert!(conn.last_success.is_some(), "{conn:?}");

    // A push for what is already synced: nothing new.
    let hint = serde_json::json!({"history_id": mock.history_id().to_string()});
    let req = serde_json::json!({"inbox": INBOX, "provider": "gmail", "reason": "push", "hint": hint});
    let resp = invoke_blocking(port, &sqs_event("sync-2", req));
    assert_eq!(resp["batchItemFailures"], serde_json::json!([]), "{resp}");
    // And a fallback, which lists the history: still nothing new.
    let req = serde_json::json!({"inbox": INBOX, "provider": "gmail", "reason": "fallback"});
    let history_lists = mock.count("GET", "/history");
    let resp = invoke_blocking(port, &sqs_event("sync-3", req));
    assert_eq!(resp["batchItemFailures"], serde_json::json!([]), "{resp}");
    assert!(mock.count("GET", "/history") > history_lists, "the fallback read the history");
    assert_eq!(raw_objects(&stack).await.len(), 3, "nothing new in S3");
    assert_eq!(ingest_depth(&stack).await.as_deref(), Some("3"), "nothing new on the ingest queue");

    // A request that cannot be read is a batch item failure.
    let bad = serde_json::json!({"Records": [
        {"messageId": "sync-bad", "receiptHandle": "rh-bad", "body": "{not json", "eventSource": "aws:sqs"},
    ]});
    let resp = invoke_blocking(port, &bad);
    assert_eq!(resp["batchItemFailures"], serde_json::json!([{"itemIdentifier": "sync-bad"}]), "{resp}");
}

/// The scheduler function: one Gmail mailbox whose watch is due (renewed, one fallback
/// sync queued) and one that must be reconnected (counted, left alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_function_publishes_health_and_queues_fallback_syncs() {
    const INBOX: &str = "sales@acme-corp.example";
    const GONE: &str = "billing@acme-corp.example";
    let stack = AwsStack::create().await;
    let ports = stack.ports();
    let mock = MockGoogle::start(INBOX).await;
    // No watch recorded in its settings: due.
    gmail_connection(&ports, &mock, INBOX, ConnState::Connected).await;
    gmail_connection(&ports, &mock, GONE, ConnState::ReconnectRequired).await;

    let (port, _w, _f) = start("mailroom-scheduler", &google_env(&stack, &mock));
    let out =
        invoke_blocking(port, &serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event"}));
    assert_eq!(out["reconnect_required"], 1, "{out}");
    assert_eq!(out["connected"], 1, "{out}");
    assert_eq!(out["fallback_syncs"], 1, "{out}");
    assert_eq!(out["watches_renewed"], 1, "{out}");
    assert_eq!(out["renewals_failed"], 0, "{out}");
    let (topic, exp) = mock.watch_state().expect("users.watch was called");
    assert_eq!(topic, mock_google::TOPIC);
    let conn =
        connection::get(&ports, &mailroom_core::EmailAddress::parse(INBOX).unwrap()).await.unwrap().unwrap();
    assert_eq!(conn.settings["watch"]["expiration_ms"], serde_json::json!(exp), "{conn:?}");
    let queued = drain_queue(&stack, &stack.sync_url).await;
    assert_eq!(queued.len(), 1, "one fallback sync: {queued:?}");
    assert_eq!(queued[0]["inbox"], INBOX, "{queued:?}");
    assert_eq!(queued[0]["provider"], "gmail", "{queued:?}");
    assert_eq!(queued[0]["reason"], "fallback", "{queued:?}");

    // The watch is fresh now: the next run renews nothing and still queues the fallback.
    let again =
        invoke_blocking(port, &serde_json::json!({"source": "aws.events", "detail-type": "Scheduled Event"}));
    assert_eq!(again["watches_renewed"], 0, "{again}");
    assert_eq!(again["fallback_syncs"], 1, "{again}");
    assert_eq!(again["reconnect_required"], 1, "{again}");
}

/// The track function (lambda_http) under cargo lambda against moto: the pixel answers the
/// GIF (base64 through API Gateway), the click the 302 to the signed link, an altered
/// token a 403; the hits land in DynamoDB. Then a click burst recorded on DynamoDB is
/// re-classified by its conditional transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn track_function_serves_pixel_and_redirect_under_cargo_lambda() {
    use mailroom_app::outbound::track::{self, Hit, TrackToken, Verdict};
    const CHROME: &str =
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
    let stack = AwsStack::create().await;
    let ports = stack.ports();
    let (port, _w, _f) = start("mailroom-track", &stack.function_env());
    let base = "https://abc.execute-api.eu-west-1.amazonaws.com";
    let mid = "lambda-track-1@acme-corp.example";
    let html = r#"<body><a href="https://acme.example/a?x=1&amp;y=2">a</a></body>"#;
    let tracked = track::add_trackers_at(
        &ports.signer,
        base,
        mid,
        &["jane@customer.example".into()],
        html,
        chrono::Utc::now() - chrono::Duration::hours(1),
    );
    let path_of = |prefix: &str| {
        let i = tracked.find(&format!("{base}{prefix}")).expect("a tracking URL") + base.len();
        tracked[i..i + tracked[i..].find('"').unwrap()].to_string()
    };
    let (pixel, click) = (path_of("/t/o/"), path_of("/t/c/"));
    let hdrs = serde_json::json!({"user-agent": CHROME, "x-forwarded-for": "203.0.113.5, 198.51.100.1"});

    let resp = invoke_blocking(port, &http_event("GET", &pixel, "", hdrs.clone(), None));
    assert_eq!(resp["statusCode"], 200, "{resp}");
    assert_eq!(header(&resp, "cache-control"), Some("no-store, private"), "{resp}");
    assert_eq!(resp["isBase64Encoded"], true, "{resp}");
    let gif = base64::engine::general_purpose::STANDARD.decode(resp["body"].as_str().unwrap()).unwrap();
    assert_eq!(gif, track::PIXEL_GIF);

    let resp = invoke_blocking(port, &http_event("GET", &click, "", hdrs.clone(), None));
    assert_eq!(resp["statusCode"], 302, "{resp}");
    assert_eq!(header(&resp, "location"), Some("https://acme.example/a?x=1&y=2"), "{resp}");

    // The signature's last hex digit changed.
    let last = if click.ends_with('0') { "1" } else { "0" };
    let tampered = format!("{}{last}", &click[..click.len() - 1]);
    let resp = invoke_blocking(port, &http_event("GET", &tampered, "", hdrs.clone(), None));
    assert_eq!(resp["statusCode"], 403, "{resp}");
    assert_eq!(header(&resp, "location"), None, "{resp}");

    let a = track::activity(&ports, mid).await.unwrap();
    assert_eq!((a.opens, a.clicks, a.machine_opens, a.machine_clicks), (1, 1, 0, 0), "{a:#?}");
    assert!(a.events.iter().all(|e| e.ip_prefix.as_deref() == Some("203.0.113.0/24")), "{a:#?}");
    let tl =
        ports.table.query_all(mailroom_store::Query::new("timeline#jane@customer.example")).await.unwrap();
    assert_eq!(tl.len(), 2, "{tl:#?}");

    // Three links within the burst window, recorded as human one by one: DynamoDB's
    // conditional transactions turn all three into machine clicks, counters included.
    let burst = "lambda-burst@acme-corp.example";
    for n in 1..=3 {
        let tok = TrackToken {
            message_id: burst.into(),
            recipients: vec!["jane@customer.example".into()],
            sent_at: 0,
            href: Some(format!("https://acme.example/{n}")),
        };
        let human = Verdict { machine: false, reason: None, via: None };
        track::record(&ports, &tok, Hit::Click, &human, CHROME, None).await.unwrap();
    }
    let a = track::activity(&ports, burst).await.unwrap();
    assert_eq!((a.clicks, a.machine_clicks), (0, 3), "{a:#?}");
    assert!(a.events.iter().all(|e| e.reason.as_deref() == Some("burst")), "{a:#?}");
    let tl =
        ports.table.query_all(mailroom_store::Query::new("timeline#jane@customer.example")).await.unwrap();
    assert_eq!(tl.len(), 2, "the burst's timeline entries were removed: {tl:#?}");
}

// ---- The HTTP API ----

const API_ISSUER: &str = "https://idp.mailroom.test";
const API_AUDIENCE: &str = "mailroom-api-lambda-test";

const API_WORKSPACE: &str = r#"
name = "API Lambda test"

[[users]]
email = "ann@acme.test"
name = "Ann Admin"
role = "admin"

[[users]]
email = "bob@acme.test"
name = "Bob Member"

[[users]]
email = "carl@acme.test"
name = "Carl Outsider"

[[teams]]
id = "support"
members = ["bob@acme.test"]

[[inboxes]]
address = "support@acme.test"
members = { teams = ["support"] }

[[inboxes]]
address = "billing@acme.test"
members = { users = ["carl@acme.test"] }
"#;

/// The api function (lambda_http) under cargo lambda against moto, with the mock Google
/// server as the OIDC issuer (its JWKS): a valid ID token gets the user, missing, expired
/// and foreign tokens get 401, a member sees a support@ conversation that a non-member
/// gets 404 for, and the OpenAPI document needs no token. Without an issuer configured
/// the function refuses to start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_function_checks_oidc_tokens_and_inbox_membership_under_cargo_lambda() {
    let stack = AwsStack::create().await;
    let ports = stack.ports();
    let ws = mailroom_core::workspace::parse_toml(API_WORKSPACE).expect("the test workspace is valid");
    mailroom_app::workspace::apply(&ports, &ws).await.unwrap();
    // One customer message to support@, through the pipeline (S3, SQS, DynamoDB on moto).
    let mut mail = mailroom_app::RawMail::new(
        format!(
            "Delivered-To: support@acme.test\r\nFrom: Dana <dana@customer.test>\r\nTo: support@acme.test\r\nSubject: Printer on fire\r\nMessage-ID: <{}@customer.test>\r\nDate: {}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nPlease help.\r\n--b1\r\nContent-Type: text/html\r\nContent-Disposition: attachment; filename=\"fire<script>.html\"\r\nContent-Transfer-Encoding: base64\r\n\r\nPHA+c21va2U8L3A+\r\n--b1--\r\n",
            mailroom_tests::unique("api-lambda"),
            chrono::Utc::now().to_rfc2822()
        )
        .into_bytes(),
        "test",
    );
    mail.inbox = Some(mailroom_core::EmailAddress::parse("support@acme.test").unwrap());
    mailroom_app::Ingestor::new(ports.clone()).ingest(mail).await.expect("ingest");
    let done = mailroom_app::Stages::new(&ports).process_visible().await.expect("pipeline");
    assert_eq!(done.failed, 0, "a pipeline stage failed");
    let convs = mailroom_app::views::conversations::list(&ports).await.unwrap();
    assert_eq!(convs.len(), 1, "{convs:?}");
    let conv = convs[0].id.clone();

    let google = MockGoogle::start("nobody@acme.test").await;
    let mut env = stack.function_env();
    env.push(("MAILROOM_PUBLIC_URL".into(), PUBLIC_URL.into()));

    // No issuer: the function refuses to start, saying what is missing.
    let out = tokio::task::block_in_place(|| {
        Command::new(bin("mailroom-api"))
            .envs(env.iter().cloned())
            .env_remove("MAILROOM_OIDC_ISSUER")
            .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
            .output()
            .expect("running mailroom-api")
    });
    assert!(!out.status.success(), "started without an OIDC issuer");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MAILROOM_OIDC_ISSUER"), "{err}");

    env.push(("MAILROOM_OIDC_ISSUER".into(), API_ISSUER.into()));
    env.push(("MAILROOM_OIDC_AUDIENCE".into(), API_AUDIENCE.into()));
    env.push(("MAILROOM_OIDC_JWKS_URL".into(), google.jwks_url()));
    let (port, _w, _f) = start("mailroom-api", &env);

    let now = chrono::Utc::now().timestamp();
    let token = |email: &str, iss: &str, exp: i64| {
        google.sign(
            &serde_json::json!({"iss": iss, "aud": API_AUDIENCE, "sub": email, "email": email, "email_verified": true, "iat": now, "exp": exp}),
            false,
        )
    };
    let get = |path: &str, token: Option<String>| {
        let headers = match token {
            Some(t) => serde_json::json!({"authorization": format!("Bearer {t}")}),
            None => serde_json::json!({}),
        };
        let resp = invoke_blocking(port, &http_event("GET", path, "", headers, None));
        let status = resp["statusCode"].as_u64().unwrap_or_else(|| panic!("no status: {resp}"));
        let body = resp["body"].as_str().map(|b| serde_json::from_str(b).unwrap_or(serde_json::json!(b)));
        (status, body.unwrap_or_default(), resp)
    };

    // A valid ID token: the user, their role and inboxes.
    let (status, me, resp) = get("/me", Some(token("ann@acme.test", API_ISSUER, now + 600)));
    assert_eq!(status, 200, "{resp}");
    assert_eq!(me["email"], "ann@acme.test", "{me}");
    assert_eq!(me["role"], "admin", "{me}");
    let (status, me, resp) = get("/me", Some(token("bob@acme.test", API_ISSUER, now + 600)));
    assert_eq!(status, 200, "{resp}");
    assert_eq!(me["inboxes"], serde_json::json!(["support@acme.test"]), "{me}");

    // No token, an expired one, another issuer's, another key's: 401, a problem document.
    let forged = google.sign(
        &serde_json::json!({"iss": API_ISSUER, "aud": API_AUDIENCE, "email": "ann@acme.test", "exp": now + 600}),
        true,
    );
    for (what, t) in [
        ("no token", None),
        ("expired", Some(token("ann@acme.test", API_ISSUER, now - 3600))),
        ("another issuer", Some(token("ann@acme.test", "https://evil.test", now + 600))),
        ("another key", Some(forged)),
    ] {
        let (status, body, resp) = get("/me", t);
        assert_eq!(status, 401, "{what}: {resp}");
        assert_eq!(header(&resp, "content-type"), Some("application/problem+json"), "{what}: {resp}");
        assert_eq!(body["status"], 401, "{what}: {body}");
    }

    // The conversation is support@'s: its member sees it, a non-member gets 404 (as for
    // one that does not exist).
    let path = format!("/conversations/{conv}");
    let (status, detail, resp) = get(&path, Some(token("bob@acme.test", API_ISSUER, now + 600)));
    assert_eq!(status, 200, "{resp}");
    assert_eq!(detail["inbox"], "support@acme.test", "{detail}");
    let (status, _, resp) = get(&path, Some(token("carl@acme.test", API_ISSUER, now + 600)));
    assert_eq!(status, 404, "{resp}");
    let (status, _, resp) =
        get("/conversations/no-such-conversation", Some(token("carl@acme.test", API_ISSUER, now + 600)));
    assert_eq!(status, 404, "{resp}");
    let (status, list, resp) = get("/conversations", Some(token("carl@acme.test", API_ISSUER, now + 600)));
    assert_eq!(status, 200, "{resp}");
    assert_eq!(list["items"], serde_json::json!([]), "{list}");

    // The attachment's link is a presigned S3 URL (the 6 MB Lambda answer cap does not
    // apply), served by S3 as a download under a cleaned name; carl gets no link.
    let sha = detail["messages"][0]["attachments"][0]["sha256"].as_str().expect("the attachment").to_string();
    let link_path = format!("/conversations/{conv}/attachments/{sha}");
    let (status, link, resp) = get(&link_path, Some(token("bob@acme.test", API_ISSUER, now + 600)));
    assert_eq!(status, 200, "{resp}");
    let url = link["url"].as_str().expect("a url");
    assert!(
        url.starts_with(&mailroom_tests::moto_endpoint()) && url.contains("X-Amz-Signature="),
        "not presigned on moto: {url}"
    );
    assert!(url.contains("X-Amz-Expires=300"), "{url}");
    let got = reqwest::get(url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-disposition"], "attachment; filename=\"firescript.html\"");
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"<p>smoke</p>");
    let (status, _, resp) = get(&link_path, Some(token("carl@acme.test", API_ISSUER, now + 600)));
    assert_eq!(status, 404, "{resp}");

    // The OpenAPI document needs no token.
    let (status, doc, resp) = get("/openapi.json", None);
    assert_eq!(status, 200, "{resp}");
    assert!(doc["paths"]["/me"].is_object(), "{doc}");
}
