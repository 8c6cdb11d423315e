//! The pipeline's functions as deployed (issue 24, item 1): each binary under cargo
//! lambda, configured only by the environment infra/template.yaml gives it
//! (`scripts/template_env.py` resolves Globals and the function's variables, with the
//! stack's resources mapped to their moto stand-ins), against moto. A customer message
//! goes through ingest, match, route and ticket, each stage's queue record handed to the
//! next as Lambda's SQS poller would; the events function then publishes what happened to
//! the EventBridge bus, and the sweep runs once. A variable the code reads under another
//! name than the template sets fails here.

use crate::lambda::{drain_queue, invoke_blocking, start};
use mailroom_store::{Key, Query};
use mailroom_tests::{AwsStack, moto_env, repo_root};
use serde_json::{Value, json};
use std::process::Command;

/// The template's environment of `function`, resolved against `stack` (and `bus`), plus
/// what every process needs to reach moto.
fn template_env(function: &str, stack: &AwsStack, bus: &str) -> Vec<(String, String)> {
    let sets = [
        ("ThreadKeySecret", stack.thread_key_secret.as_str()),
        ("MailBucket", &stack.bucket),
        ("MainTable", &stack.table),
        ("IngestQueue", &stack.queue_url),
        ("RouteQueue", &stack.route_url),
        ("TicketQueue", &stack.ticket_url),
        ("SyncQueue", &stack.sync_url),
        ("SendQueue", &stack.send_url),
        ("MailroomKey", &stack.kms_key),
        ("EventBus", bus),
    ];
    let mut cmd = Command::new(repo_root().join(".venv/bin/python"));
    cmd.arg("scripts/template_env.py").arg(function).current_dir(repo_root());
    for (id, v) in sets {
        cmd.arg("--set").arg(format!("{id}={v}"));
    }
    let out = cmd.output().expect("running scripts/template_env.py (scripts/test.sh installs .venv)");
    assert!(out.status.success(), "{function}: {}", String::from_utf8_lossy(&out.stderr));
    let vars: serde_json::Map<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut env = moto_env();
    env.extend(vars.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string())));
    env
}

/// An SQS event of Lambda's poller carrying `bodies`.
fn sqs_batch(bodies: &[Value]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({"messageId": format!("m{i}"), "receiptHandle": format!("r{i}"), "body": b.to_string(), "eventSource": "aws:sqs"})
        })
        .collect();
    json!({"Records": records})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_runs_through_the_pipeline_functions_configured_by_the_template() {
    let stack = AwsStack::create().await;
    let ports = stack.ports();
    mailroom_app::workspace::apply(&ports, &mailroom_tests::acme_workspace()).await.unwrap();
    let conf = mailroom_tests::moto_conf().await;
    let (bus, bus_queue) = mailroom_tests::event_bus_into_queue(&conf).await;
    let env = |f: &str| template_env(f, &stack, &bus);
    let id = mailroom_tests::unique("deployed");
    let mail = format!(
        "Delivered-To: support@acme-corp.example\r\nFrom: Jane Doe <jane@customer.example>\r\nTo: support@acme-corp.example\r\nSubject: My invoice is wrong\r\nMessage-ID: <{id}@customer.example>\r\nDate: {}\r\n\r\nThe invoice charges me twice.\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    // Ingest (invoked directly): the raw copy to S3, its pointer to the ingest queue.
    let (port, _w, _f) = start("mailroom-ingest", &env("IngestFunction"));
    let raw = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, mail.as_bytes());
    let out = invoke_blocking(port, &json!({"raw_base64": raw}));
    assert_eq!(out["outcome"], "stored", "{out}");
    let mut batch = drain_queue(&stack, &stack.queue_url).await;
    assert_eq!(batch.len(), 1, "{batch:?}");

    // Match, route and ticket: each gets the records the one before queued, as Lambda's
    // SQS poller hands them over.
    for (function, binary, next) in [
        ("MatchFunction", "mailroom-match", Some(&stack.route_url)),
        ("RouteFunction", "mailroom-route", Some(&stack.ticket_url)),
        ("TicketFunction", "mailroom-ticket", None),
    ] {
        assert!(!batch.is_empty(), "{function}: nothing was queued for it");
        let (port, _w, _f) = start(binary, &env(function));
        let out = invoke_blocking(port, &sqs_batch(&batch));
        assert_eq!(out["batchItemFailures"], json!([]), "{function}: {out}");
        batch = match next {
            Some(q) => drain_queue(&stack, q).await,
            None => Vec::new(),
        };
    }
    let msg = ports.table.get(&Key::new(format!("msg#{id}@customer.example"), "msg")).await.unwrap();
    let msg = msg.expect("the message item");
    assert_eq!(msg.get("inbox").and_then(Value::as_str), Some("support@acme-corp.example"), "{msg:?}");
    let tickets =
        ports.table.query_all(Query::new(mailroom_app::keys::TICKETS_INDEX_PK).index("gsi1")).await.unwrap();
    assert_eq!(tickets.len(), 1, "the ticket stage made one ticket: {tickets:?}");

    // Events (scheduled): the feed goes to the bus the template names.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (port, _w, _f) = start("mailroom-events", &env("EventsFunction"));
    let out = invoke_blocking(port, &json!({"source": "aws.events", "detail-type": "Scheduled Event"}));
    assert!(out.get("errorMessage").is_none(), "{out}");
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let r = sqs.receive_message().queue_url(&bus_queue).max_number_of_messages(10).send().await.unwrap();
        if r.messages().is_empty() && !kinds.is_empty() {
            break;
        }
        for m in r.messages() {
            let e: Value = serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or_default();
            kinds.push(e["detail-type"].as_str().unwrap_or_default().to_string());
        }
    }
    // The match stage's event and the ticket stage's, from the functions above.
    for kind in ["message_logged", "conversation_opened"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} on the bus: {kinds:?}");
    }

    // Sweep (scheduled): runs once against the same table.
    let (port, _w, _f) = start("mailroom-sweep", &env("SweepFunction"));
    let out = invoke_blocking(port, &json!({"source": "aws.events", "detail-type": "Scheduled Event"}));
    assert!(out.get("errorMessage").is_none(), "{out}");
}
