//! The pipeline's functions as deployed (issue 24, item 1): each binary under cargo
//! lambda, configured only by the environment infra/template.yaml gives it
//! (`scripts/template_env.py` resolves Globals and the function's variables, with the
//! stack's resources mapped to their moto stand-ins), against moto. A customer message
//! goes through ingest, match, route and ticket, each stage's queue records handed to the
//! next as Lambda's SQS poller would; the events function publishes what happened to the
//! EventBridge bus; an agent's reply goes through the api function to the send queue and
//! out through the send function to the Gmail mock, and its Sent copy back to ingest; the
//! sweep runs once. A variable the code reads under another name than the template sets
//! fails here. What the test adds to the template's environment: the AWS endpoint (moto),
//! the JWKS URL and the Google endpoints and client secret (the mocks on loopback).

use crate::lambda::{drain_queue, gmail_connection, google_env, http_event, invoke_blocking, start};
use mailroom_app::mailbox::connection::State as ConnState;
use mailroom_store::{Key, Query};
use mailroom_tests::mock_google::{self, MockGoogle};
use mailroom_tests::{AwsStack, moto_env, repo_root};
use serde_json::{Value, json};
use std::process::Command;

/// The template's environment of `function`, resolved against `stack` (and `bus`), plus
/// what every process needs to reach moto.
fn template_env(
    function: &str,
    stack: &AwsStack,
    bus: &str,
    more: &[(&str, &str)],
    params: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut sets = vec![
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
    sets.extend_from_slice(more);
    let mut cmd = Command::new(repo_root().join(".venv/bin/python"));
    cmd.arg("scripts/template_env.py").arg(function).current_dir(repo_root());
    for (id, v) in sets {
        cmd.arg("--set").arg(format!("{id}={v}"));
    }
    for (name, v) in params {
        cmd.arg("--param").arg(format!("{name}={v}"));
    }
    let out = cmd.output().expect("running scripts/template_env.py (scripts/test.sh installs .venv)");
    assert!(out.status.success(), "{function}: {}", String::from_utf8_lossy(&out.stderr));
    let vars: serde_json::Map<String, Value> = serde_json::from_slice(&out.stdout).unwrap();
    let mut env = moto_env();
    env.extend(vars.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string())));
    env
}

/// The user pool's id the test gives the template (the issuer's URL ends in it).
const POOL: &str = "us-east-1_deployed";

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
    // The HTTP API, the user pool and the chat socket are not on moto: their names only
    // make URLs (the API's own URL, the token issuer).
    let web = [
        ("MailroomHttpApi", "api1"),
        ("UserPool", POOL),
        ("UserPoolClient", "api-client"),
        ("WebUserPoolClient", "web-client"),
        ("UserPoolDomain", "mailroom-test"),
        ("ChatSocketApi", "ws1"),
    ];
    let env = |f: &str| template_env(f, &stack, &bus, &web, &[]);
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

    // A reply: the api function queues it (an agent's token, checked against the JWKS of
    // the issuer the template names), the send function sends it through Gmail.
    let google = MockGoogle::start("support@acme-corp.example").await;
    gmail_connection(&ports, &google, "support@acme-corp.example", ConnState::Connected).await;
    let conv = mailroom_app::views::conversations::list(&ports).await.unwrap();
    assert_eq!(conv.len(), 1, "{conv:?}");
    let mut api_env = env("ApiFunction");
    // The one addition: Cognito's JWKS is on the internet, the mock's on loopback.
    api_env.push(("MAILROOM_OIDC_JWKS_URL".into(), google.jwks_url()));
    let issuer = api_env.iter().find(|(k, _)| k == "MAILROOM_OIDC_ISSUER").map(|(_, v)| v.clone()).unwrap();
    assert_eq!(issuer, format!("https://cognito-idp.us-east-1.amazonaws.com/{POOL}"));
    let (port, _w, _f) = start("mailroom-api", &api_env);
    let now = chrono::Utc::now().timestamp();
    let token = google.sign(
        &json!({"iss": issuer, "aud": "api-client", "sub": "maria", "email": "maria.keller@acme-corp.example",
                "email_verified": true, "iat": now, "exp": now + 600}),
        false,
    );
    let body = json!({"text": "We refunded the second charge.", "request_id": "deployed-1"}).to_string();
    let headers = json!({"authorization": format!("Bearer {token}"), "content-type": "application/json"});
    let path = format!("/conversations/{}/replies", conv[0].id);
    let out = invoke_blocking(port, &http_event("POST", &path, "", headers, Some(&body)));
    assert_eq!(out["statusCode"], 202, "{out}");
    let queued = drain_queue(&stack, &stack.send_url).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    let mut send_env =
        template_env("SendFunction", &stack, &bus, &web, &[("GoogleClientId", mock_google::CLIENT_ID)]);
    // The Google endpoints and the client secret: the mock's (the template names Google's).
    let mock_side = google_env(&stack, &google);
    send_env.extend(mock_side.into_iter().filter(|(k, _)| {
        [
            "MAILROOM_GOOGLE_CLIENT_SECRET",
            "MAILROOM_GOOGLE_TOKEN_URL",
            "MAILROOM_GOOGLE_AUTH_URL",
            "MAILROOM_GMAIL_API",
        ]
        .contains(&k.as_str())
    }));
    let (port, _w, _f) = start("mailroom-send", &send_env);
    let out = invoke_blocking(port, &sqs_batch(&queued));
    assert_eq!(out["batchItemFailures"], json!([]), "SendFunction: {out}");
    let sent = google.sent();
    assert_eq!(sent.len(), 1, "Gmail messages.send was called once");
    assert!(String::from_utf8_lossy(&sent[0]).contains("We refunded the second charge."));
    // The sent MIME goes back in as the inbox's Sent copy.
    assert_eq!(drain_queue(&stack, &stack.queue_url).await.len(), 1, "no Sent copy queued for ingest");

    // Sweep (scheduled): runs once against the same table.
    let (port, _w, _f) = start("mailroom-sweep", &env("SweepFunction"));
    let out = invoke_blocking(port, &json!({"source": "aws.events", "detail-type": "Scheduled Event"}));
    assert!(out.get("errorMessage").is_none(), "{out}");
}
