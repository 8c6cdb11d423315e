//! The Lambda binaries, run for real under cargo-lambda's runtime API emulator
//! (`cargo lambda watch --only-lambda-apis`) and invoked with `cargo lambda invoke`,
//! against moto.

use base64::Engine;
use mailroom_store::{Key, Table};
use mailroom_tests::{AwsStack, bin, repo_root};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
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
fn start(function: &str, env: &[(String, String)]) -> (u16, Kill, Kill) {
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

fn invoke(port: u16, payload: &serde_json::Value) -> serde_json::Value {
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
    mailroom_app::workspace_store::apply(&ports, &ws).await.unwrap();
    // A customer's message five days ago, never answered: any five days hold more than the
    // standard policy's 8 business hours (Berlin, Mon-Fri 08-18), and the sweep's gauges
    // look at the last 90 days.
    let conv = "csweeptest";
    let mut item = mailroom_app::thread::conv_key(conv).item();
    item.insert("id".into(), serde_json::json!(conv));
    item.insert("inbox".into(), serde_json::json!("support@acme-corp.example"));
    item.insert("team".into(), serde_json::json!("support"));
    item.insert("status".into(), serde_json::json!("open"));
    ports.table.put(item, None).await.unwrap();
    let t = (chrono::Utc::now() - chrono::Duration::days(5)).timestamp();
    let fact = MsgFact { t, out: false, normal: true, agent: None, logged: true };
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
    let events = mailroom_app::reports::conversation_events(&ports, conv).await.unwrap();
    let breaches = events.iter().filter(|e| e["type"] == "sla_breached").count();
    assert_eq!(breaches, 1, "{events:?}");
    let again = invoke(port, &serde_json::json!({}));
    assert_eq!(again["breached"], serde_json::json!([]), "{again}");
    let events = mailroom_app::reports::conversation_events(&ports, conv).await.unwrap();
    assert_eq!(events.iter().filter(|e| e["type"] == "sla_breached").count(), 1);
}

/// The scheduled IMAP poll function against a private dovecot and moto: the password
/// sealed with KMS, the lease and cursors as DynamoDB conditional writes, raw mail in S3
/// and pointers on SQS; a second run fetches nothing, and `{"inbox": …}` polls one inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_poll_function_polls_dovecot_into_moto() {
    use mailroom_app::imap_poll::{self, ImapSettings, PollOptions, Security};
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
    let settings = ImapSettings {
        host: "127.0.0.1".into(),
        port: dv.port_tls,
        security: Security::Tls,
        user: dv.user.clone(),
        backfill_days: 14,
        ca_pem: Some(dv.ca_pem()),
    };
    imap_poll::connect(&ports, &inbox, settings, &dv.password, &PollOptions::default())
        .await
        .expect("connect");
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
    let cursor = mailroom_app::connections::get_cursor(&ports, &inbox, "INBOX").await.unwrap().unwrap();
    assert_eq!(cursor.value["last_uid"], 2, "{cursor:?}");
    let conn = mailroom_app::connections::get(&ports, &inbox).await.unwrap().unwrap();
    assert_eq!(conn.state, mailroom_app::connections::State::Connected);

    let again = invoke(port, &serde_json::json!({"inbox": "support@acme.test"}));
    assert_eq!(again["inboxes"][0]["outcome"], "polled", "{again}");
    assert_eq!(again["inboxes"][0]["fetched"], 0, "{again}");
}
