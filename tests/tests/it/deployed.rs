//! Every function as deployed (issue 24, item 1): each binary under cargo lambda,
//! configured only by the environment infra/template.yaml gives it
//! (`scripts/template_env.py` resolves Globals and the function's variables, with the
//! stack's resources mapped to their moto stand-ins), against moto and the mock providers.
//!
//! Mail comes in three ways: a Gmail push reaches the webhooks function, which queues a
//! sync that the mailbox-sync function runs against the Gmail mock; a visitor writes in
//! the chat function's socket; an importer invokes the ingest function. All of it goes
//! through match, route and ticket, each stage's queue records handed to the next as
//! Lambda's SQS poller would. The events function publishes what happened to the
//! EventBridge bus; an agent's reply goes through the api function to the send queue and
//! out through the send function to the Gmail mock; the track function serves a pixel
//! signed with the stack's key; the scheduler, the IMAP poll (against dovecot) and the
//! sweep run once. The test ends by checking that it started every function the Makefile
//! builds. A variable the code reads under another name than the template sets fails here.
//!
//! What the test adds to the template's environment: the AWS endpoint (moto), the Google
//! endpoints and JWKS URL, the chat's management endpoint (the mocks on loopback). The
//! Google client secret comes from Secrets Manager, as on AWS.

use crate::lambda::{drain_queue, gmail_connection, http_event, invoke_blocking, start};
use mailroom_app::mailbox::connection::State as ConnState;
use mailroom_store::{Key, Query};
use mailroom_tests::mock_apigw::MockApiGateway;
use mailroom_tests::mock_google::{self, DataEncoding, MockGoogle};
use mailroom_tests::{AwsStack, moto_env, repo_root};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

/// The user pool's id the test gives the template (the issuer's URL ends in it).
const POOL: &str = "us-east-1_deployed";
const SUPPORT: &str = "support@acme-corp.example";
const SHOP: &str = "https://shop.example";
const BILLING: &str = "billing@acme-corp.example";

/// The stack as the functions see it: the template's resources mapped to moto's (or, for
/// what moto does not run, to names that only make URLs), the template's parameters, and
/// the binaries started so far.
struct Deployed {
    stack: AwsStack,
    sets: Vec<(String, String)>,
    params: Vec<(String, String)>,
    google: MockGoogle,
    /// The queue the test's EventBridge rule sends the bus's events to.
    bus_queue: String,
    ran: Mutex<BTreeSet<String>>,
}

impl Deployed {
    /// The template's environment of `function`, plus what every process needs to reach
    /// moto.
    fn env(&self, function: &str) -> Vec<(String, String)> {
        let mut env = moto_env();
        env.extend(template_env(function, &self.sets, &self.params));
        env
    }

    /// [`Deployed::env`] with Google's endpoints pointed at the mock: the template leaves
    /// them to the code's defaults, which are on the internet.
    fn google_env(&self, function: &str) -> Vec<(String, String)> {
        let mut env = self.env(function);
        for (k, v) in [
            ("MAILROOM_GOOGLE_TOKEN_URL", self.google.token_url()),
            ("MAILROOM_GOOGLE_AUTH_URL", self.google.auth_url()),
            ("MAILROOM_GMAIL_API", self.google.url.clone()),
            ("MAILROOM_GOOGLE_JWKS_URL", self.google.jwks_url()),
        ] {
            assert!(!env.iter().any(|(name, _)| name == k), "{function}: the template now sets {k}");
            env.push((k.into(), v));
        }
        env
    }

    /// Starts `binary` (see [`start`]) and notes that it ran.
    fn start(
        &self,
        binary: &str,
        env: &[(String, String)],
    ) -> (u16, crate::lambda::Kill, crate::lambda::Kill) {
        self.ran.lock().unwrap().insert(binary.to_string());
        start(binary, env)
    }

    fn value(&self, env: &[(String, String)], name: &str) -> String {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
    }
}

/// The environment infra/template.yaml gives `function`, its resources resolved to `sets`
/// and its parameters to `params` (else their defaults).
fn template_env(
    function: &str,
    sets: &[(String, String)],
    params: &[(String, String)],
) -> Vec<(String, String)> {
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
    vars.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or_default().to_string())).collect()
}

/// Issue 24, item 4: with `DomainName` (and its certificate) every function that hands
/// out URLs (tracking links, the OAuth callback, the web inbox, the Gmail push audience)
/// uses that domain; without, the HTTP API's execute-api address.
#[test]
fn a_custom_domain_is_every_functions_public_url() {
    let sets: Vec<(String, String)> = [
        "ThreadKeySecret",
        "MailBucket",
        "MainTable",
        "IngestQueue",
        "RouteQueue",
        "TicketQueue",
        "SyncQueue",
        "SendQueue",
        "MailroomKey",
        "EventBus",
        "UserPool",
        "UserPoolClient",
        "WebUserPoolClient",
        "UserPoolDomain",
        "ChatSocketApi",
    ]
    .iter()
    .map(|id| (id.to_string(), format!("x-{id}")))
    .chain([("MailroomHttpApi".to_string(), "api1".to_string())])
    .collect();
    let domain = [
        ("DomainName".to_string(), "mail.acme.example".to_string()),
        (
            "DomainCertificateArn".to_string(),
            "arn:aws:acm:us-east-1:123456789012:certificate/0a1b".to_string(),
        ),
    ];
    let mut with_url = 0;
    for (f, _) in mailroom_tests::makefile_functions() {
        let f = f.as_str();
        let plain = template_env(f, &sets, &[]);
        let Some((_, url)) = plain.iter().find(|(k, _)| k == "MAILROOM_PUBLIC_URL") else { continue };
        with_url += 1;
        assert_eq!(url, "https://api1.execute-api.us-east-1.amazonaws.com", "{f}");
        let own = template_env(f, &sets, &domain);
        for (k, v) in
            own.iter().filter(|(k, _)| k == "MAILROOM_PUBLIC_URL" || k == "MAILROOM_PUBSUB_AUDIENCE")
        {
            assert!(v.starts_with("https://mail.acme.example"), "{f}: {k} = {v}");
        }
    }
    assert!(with_url >= 5, "only {with_url} functions have a public URL");
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

const SCHEDULED: &str = r#"{"source": "aws.events", "detail-type": "Scheduled Event"}"#;

/// A WebSocket API event for the chat function.
fn ws_event(route: &str, connection: &str, body: Option<Value>) -> Value {
    let event_type = match route {
        "$connect" => "CONNECT",
        "$disconnect" => "DISCONNECT",
        _ => "MESSAGE",
    };
    json!({
        "headers": {"host": "ws1.execute-api.us-east-1.amazonaws.com", "origin": SHOP},
        "queryStringParameters": if route == "$connect" { json!({"widget": "site"}) } else { Value::Null },
        "requestContext": {
            "routeKey": route, "eventType": event_type, "connectionId": connection,
            "messageDirection": "IN", "apiId": "ws1", "stage": "chat",
            "domainName": "ws1.execute-api.us-east-1.amazonaws.com",
            "requestId": format!("req-{connection}-{route}"),
            "connectedAt": 1_733_550_000_000i64, "requestTimeEpoch": 1_733_550_000_000i64,
            "identity": {"sourceIp": "198.51.100.7"}
        },
        "body": body.map(|b| b.to_string()),
        "isBase64Encoded": false
    })
}

fn customer_mail(id: &str, from: &str, to: &str, subject: &str) -> String {
    format!(
        "Delivered-To: {to}\r\nFrom: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: {}\r\n\r\nThe invoice charges me twice.\r\n",
        chrono::Utc::now().to_rfc2822()
    )
}

async fn setup() -> Deployed {
    let stack = AwsStack::create().await;
    let ports = stack.ports();
    let ws = mailroom_tests::acme_workspace_with_chat(SHOP);
    mailroom_app::workspace::apply(&ports, &ws).await.unwrap();
    let conf = mailroom_tests::moto_conf().await;
    let (bus, bus_queue) = mailroom_tests::event_bus_into_queue(&conf).await;
    // The Google client secret, as the stack keeps it: in Secrets Manager under the key.
    let client_secret = stack
        .clients
        .secretsmanager
        .create_secret()
        .name(mailroom_tests::unique("google-client-secret"))
        .kms_key_id(&stack.kms_key)
        .secret_string(mock_google::CLIENT_SECRET)
        .send()
        .await
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let google = MockGoogle::start(SUPPORT).await;
    let own = |s: &str| s.to_string();
    let sets = vec![
        (own("ThreadKeySecret"), stack.thread_key_secret.clone()),
        (own("GoogleClientSecret"), client_secret.clone()),
        (own("MailBucket"), stack.bucket.clone()),
        (own("MainTable"), stack.table.clone()),
        (own("IngestQueue"), stack.queue_url.clone()),
        (own("RouteQueue"), stack.route_url.clone()),
        (own("TicketQueue"), stack.ticket_url.clone()),
        (own("SyncQueue"), stack.sync_url.clone()),
        (own("SendQueue"), stack.send_url.clone()),
        (own("MailroomKey"), stack.kms_key.clone()),
        (own("EventBus"), bus),
        // The HTTP API, the user pool and the chat socket are not on moto: their names
        // only make URLs (the API's own URL, the token issuer, the management endpoint).
        (own("MailroomHttpApi"), own("api1")),
        (own("UserPool"), own(POOL)),
        (own("UserPoolClient"), own("api-client")),
        (own("WebUserPoolClient"), own("web-client")),
        (own("UserPoolDomain"), own("mailroom-test")),
        (own("ChatSocketApi"), own("ws1")),
    ];
    let params = vec![
        (own("GoogleClientId"), own(mock_google::CLIENT_ID)),
        (own("GoogleClientSecretArn"), client_secret),
        (own("PubSubServiceAccount"), own(mock_google::PUSH_EMAIL)),
        (own("GmailTopic"), own(mock_google::TOPIC)),
    ];
    Deployed { stack, sets, params, google, bus_queue, ran: Mutex::new(BTreeSet::new()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_function_runs_as_the_template_configures_it() {
    let d = setup().await;
    let (stack, google) = (&d.stack, &d.google);
    let ports = stack.ports();

    // 1. Gmail. The connection's first sync (queued when an admin connects the inbox)
    // watches the mailbox; then a customer writes, Pub/Sub pushes, the webhooks function
    // queues a sync, and the mailbox-sync function fetches the new message.
    gmail_connection(&ports, google, SUPPORT, ConnState::Connected).await;
    let sync_env = d.google_env("MailboxSyncFunction");
    let (sync, _w, _f) = d.start("mailroom-mailbox-sync", &sync_env);
    let connect = json!({"inbox": SUPPORT, "provider": "gmail", "reason": "connect", "hint": {}});
    let out = invoke_blocking(sync, &sqs_batch(&[connect]));
    assert_eq!(out["batchItemFailures"], json!([]), "MailboxSyncFunction: {out}");
    assert_eq!(google.watch_state().map(|w| w.0).as_deref(), Some(mock_google::TOPIC), "no users.watch");
    let gmail_id = mailroom_tests::unique("gmail") + "@customer.example";
    let mail = customer_mail(&gmail_id, "Jane Doe <jane@customer.example>", SUPPORT, "My invoice is wrong");
    google.add_message(mail.as_bytes(), &["INBOX", "UNREAD"]);

    let hooks_env = d.google_env("WebhooksFunction");
    // Pub/Sub signs for the audience the template gives (the Gmail push URL by default).
    let audience = d.value(&hooks_env, "MAILROOM_PUBSUB_AUDIENCE");
    assert_eq!(audience, "https://api1.execute-api.us-east-1.amazonaws.com/webhooks/gmail");
    let (hooks, _w, _f) = d.start("mailroom-webhooks", &hooks_env);
    let now = chrono::Utc::now().timestamp();
    let jwt = google.sign(
        &json!({"aud": audience, "azp": "1137", "email": mock_google::PUSH_EMAIL, "sub": "1137",
                "email_verified": true, "iat": now, "exp": now + 600, "iss": "https://accounts.google.com"}),
        false,
    );
    let body =
        String::from_utf8(google.push_body(SUPPORT, google.history_id(), DataEncoding::UrlNoPad)).unwrap();
    let headers = json!({"content-type": "application/json", "authorization": format!("Bearer {jwt}")});
    let out = invoke_blocking(hooks, &http_event("POST", "/webhooks/gmail", "", headers, Some(&body)));
    assert_eq!(out["statusCode"], 204, "WebhooksFunction: {out}");
    let syncs = drain_queue(stack, &stack.sync_url).await;
    assert_eq!(syncs.len(), 1, "one sync request: {syncs:?}");
    assert_eq!(syncs[0]["reason"], "push", "{syncs:?}");
    let out = invoke_blocking(sync, &sqs_batch(&syncs));
    assert_eq!(out["batchItemFailures"], json!([]), "MailboxSyncFunction: {out}");

    // 2. Chat: a visitor on the shop's page writes through the widget's socket.
    let mgmt = MockApiGateway::start().await;
    let mut chat_env = d.env("ChatFunction");
    assert_eq!(
        d.value(&chat_env, "MAILROOM_CHAT_ENDPOINT"),
        "https://ws1.execute-api.us-east-1.amazonaws.com/chat"
    );
    chat_env.retain(|(k, _)| k != "MAILROOM_CHAT_ENDPOINT");
    chat_env.push(("MAILROOM_CHAT_ENDPOINT".into(), mgmt.endpoint()));
    let (chat, _w, _f) = d.start("mailroom-chat", &chat_env);
    let out = invoke_blocking(chat, &ws_event("$connect", "c1", None));
    assert_eq!(out["statusCode"], 200, "ChatFunction: {out}");
    for frame in [
        json!({"type": "hello"}),
        json!({"type": "start", "name": "Ada Visitor", "email": "ada@visitor.example"}),
        json!({"type": "message", "text": "Is the blue one in stock?", "page": "https://shop.example/cart"}),
    ] {
        invoke_blocking(chat, &ws_event("$default", "c1", Some(frame)));
    }
    let frames = wait_frames(&mgmt, "c1", 3).await;
    assert_eq!(frames[2]["type"], "ack", "{frames:?}");
    let chat_id = frames[2]["message_id"].as_str().unwrap().to_string();

    // 3. An importer invokes the ingest function directly.
    let import_id = mailroom_tests::unique("deployed") + "@customer.example";
    let (ingest, _w, _f) = d.start("mailroom-ingest", &d.env("IngestFunction"));
    let mail = customer_mail(&import_id, "Joe Bloggs <joe@customer.example>", SUPPORT, "Where is my order?");
    let raw = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, mail.as_bytes());
    let out = invoke_blocking(ingest, &json!({"raw_base64": raw}));
    assert_eq!(out["outcome"], "stored", "{out}");

    // 4. Match, route and ticket: each gets the records the one before queued, as Lambda's
    // SQS poller hands them over.
    let mut batch = drain_queue(stack, &stack.queue_url).await;
    assert_eq!(batch.len(), 3, "Gmail, chat and import each queued one message: {batch:?}");
    for (function, binary, next) in [
        ("MatchFunction", "mailroom-match", Some(&stack.route_url)),
        ("RouteFunction", "mailroom-route", Some(&stack.ticket_url)),
        ("TicketFunction", "mailroom-ticket", None),
    ] {
        assert!(!batch.is_empty(), "{function}: nothing was queued for it");
        let (port, _w, _f) = d.start(binary, &d.env(function));
        let out = invoke_blocking(port, &sqs_batch(&batch));
        assert_eq!(out["batchItemFailures"], json!([]), "{function}: {out}");
        batch = match next {
            Some(q) => drain_queue(stack, q).await,
            None => Vec::new(),
        };
    }
    let message = |id: String| {
        let table = ports.table.clone();
        async move { table.get(&Key::new(format!("msg#{id}"), "msg")).await.unwrap().expect("the message item") }
    };
    for id in [&gmail_id, &import_id] {
        let msg = message(id.clone()).await;
        assert_eq!(msg["inbox"], SUPPORT, "{msg:?}");
    }
    let line = message(chat_id).await;
    assert_eq!(
        (line["channel"].as_str(), line["inbox"].as_str()),
        (Some("chat"), Some("sales@acme-corp.example"))
    );
    let tickets =
        ports.table.query_all(Query::new(mailroom_app::keys::TICKETS_INDEX_PK).index("gsi1")).await.unwrap();
    assert!(!tickets.is_empty(), "the ticket stage made no ticket");

    // 5. Events (scheduled): the feed goes to the bus the template names.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (events, _w, _f) = d.start("mailroom-events", &d.env("EventsFunction"));
    let out = invoke_blocking(events, &serde_json::from_str(SCHEDULED).unwrap());
    assert!(out.get("errorMessage").is_none(), "EventsFunction: {out}");
    let kinds = bus_kinds(&d).await;
    for kind in ["message_logged", "conversation_opened"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} on the bus: {kinds:?}");
    }

    // 6. A reply: the api function queues it, the send function sends it through Gmail.
    let conversation = message(import_id.clone()).await["conversation"].as_str().unwrap().to_string();
    reply(&d, &conversation).await;

    // 7. The track function: a pixel signed with the stack's key (the thread-key secret
    // the template names) is served; one altered is refused.
    let (track, _w, _f) = d.start("mailroom-track", &d.env("TrackFunction"));
    let base = "https://api1.execute-api.us-east-1.amazonaws.com";
    let html = mailroom_app::outbound::track::add_trackers_at(
        &ports.signer,
        base,
        &import_id,
        &["joe@customer.example".into()],
        "<body><p>Thanks</p></body>",
        chrono::Utc::now() - chrono::Duration::hours(1),
    );
    let at = html.find(&format!("{base}/t/o/")).expect("a pixel") + base.len();
    let pixel = &html[at..at + html[at..].find('"').unwrap()];
    let out =
        invoke_blocking(track, &http_event("GET", pixel, "", json!({"user-agent": "Mozilla/5.0"}), None));
    assert_eq!(out["statusCode"], 200, "TrackFunction: {out}");
    let altered = format!("{}{}", &pixel[..pixel.len() - 1], if pixel.ends_with('0') { "1" } else { "0" });
    let out = invoke_blocking(track, &http_event("GET", &altered, "", json!({}), None));
    assert_eq!(out["statusCode"], 403, "TrackFunction: {out}");

    // 8. The scheduled functions, once each.
    let (sched, _w, _f) = d.start("mailroom-scheduler", &d.google_env("SchedulerFunction"));
    let out = invoke_blocking(sched, &serde_json::from_str(SCHEDULED).unwrap());
    assert_eq!((out["connected"].as_u64(), out["renewals_failed"].as_u64()), (Some(1), Some(0)), "{out}");
    imap_poll(&d).await;
    let (sweep, _w, _f) = d.start("mailroom-sweep", &d.env("SweepFunction"));
    let out = invoke_blocking(sweep, &serde_json::from_str(SCHEDULED).unwrap());
    assert!(out.get("errorMessage").is_none(), "SweepFunction: {out}");

    // Every function the Makefile builds (and so the template deploys) ran here.
    let built: BTreeSet<String> =
        mailroom_tests::makefile_functions().into_iter().map(|(_, bin)| bin).collect();
    assert!(built.len() >= 14, "{built:?}");
    assert_eq!(*d.ran.lock().unwrap(), built, "functions not exercised as deployed");
}

/// The frames the management API pushed to `connection`, once there are `n`.
async fn wait_frames(mgmt: &MockApiGateway, connection: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let f = mgmt.frames(connection);
        if f.len() >= n {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} frames to {connection} never came: {:?}", mgmt.frames(connection));
}

/// The detail-types of what the bus delivered to its queue so far.
async fn bus_kinds(d: &Deployed) -> Vec<String> {
    let sqs = aws_sdk_sqs::Client::new(&mailroom_tests::moto_conf().await);
    let mut kinds = Vec::new();
    for _ in 0..5 {
        let r =
            sqs.receive_message().queue_url(&d.bus_queue).max_number_of_messages(10).send().await.unwrap();
        if r.messages().is_empty() && !kinds.is_empty() {
            break;
        }
        for m in r.messages() {
            let e: Value = serde_json::from_str(m.body().unwrap_or("{}")).unwrap_or_default();
            kinds.push(e["detail-type"].as_str().unwrap_or_default().to_string());
        }
    }
    kinds
}

/// An agent's reply on `conversation`: through the api function (a token checked against
/// the JWKS of the issuer the template names) to the send queue, then the send function
/// sends it through Gmail and queues its Sent copy for ingest.
async fn reply(d: &Deployed, conversation: &str) {
    let (stack, google) = (&d.stack, &d.google);
    let mut api_env = d.env("ApiFunction");
    // The one addition: Cognito's JWKS is on the internet, the mock's on loopback.
    api_env.push(("MAILROOM_OIDC_JWKS_URL".into(), google.jwks_url()));
    let issuer = d.value(&api_env, "MAILROOM_OIDC_ISSUER");
    assert_eq!(issuer, format!("https://cognito-idp.us-east-1.amazonaws.com/{POOL}"));
    let (api, _w, _f) = d.start("mailroom-api", &api_env);
    let now = chrono::Utc::now().timestamp();
    let token = google.sign(
        &json!({"iss": issuer, "aud": "api-client", "sub": "maria", "email": "maria.keller@acme-corp.example",
                "email_verified": true, "iat": now, "exp": now + 600}),
        false,
    );
    let body = json!({"text": "We refunded the second charge.", "request_id": "deployed-1"}).to_string();
    let headers = json!({"authorization": format!("Bearer {token}"), "content-type": "application/json"});
    let path = format!("/conversations/{conversation}/replies");
    let out = invoke_blocking(api, &http_event("POST", &path, "", headers, Some(&body)));
    assert_eq!(out["statusCode"], 202, "ApiFunction: {out}");
    let queued = drain_queue(stack, &stack.send_url).await;
    assert_eq!(queued.len(), 1, "{queued:?}");
    let (send, _w, _f) = d.start("mailroom-send", &d.google_env("SendFunction"));
    let out = invoke_blocking(send, &sqs_batch(&queued));
    assert_eq!(out["batchItemFailures"], json!([]), "SendFunction: {out}");
    let sent = google.sent();
    assert_eq!(sent.len(), 1, "Gmail messages.send was called once");
    assert!(String::from_utf8_lossy(&sent[0]).contains("We refunded the second charge."));
    // The sent MIME goes back in as the inbox's Sent copy.
    assert_eq!(drain_queue(stack, &stack.queue_url).await.len(), 1, "no Sent copy queued for ingest");
}

/// The IMAP poll function against a private dovecot: an inbox connected with its password
/// sealed under the stack's key, one message fetched into S3 and the ingest queue.
async fn imap_poll(d: &Deployed) {
    use mailroom_app::mailbox::imap::{self, PollOptions};
    let ports = d.stack.ports();
    let dv = mailroom_tests::dovecot::Dovecot::start();
    let mail = customer_mail("imap-deployed-1@customer.example", "jane@customer.example", BILLING, "By IMAP");
    dv.save("INBOX", mail.as_bytes());
    let inbox = mailroom_core::EmailAddress::parse(BILLING).unwrap();
    imap::connect(&ports, &inbox, dv.imap_settings(), &dv.password, &PollOptions::default())
        .await
        .expect("connect");
    let (poll, _w, _f) = d.start("mailroom-imap-poll", &d.env("ImapPollFunction"));
    let out = invoke_blocking(poll, &serde_json::from_str(SCHEDULED).unwrap());
    let r = &out["inboxes"][0];
    assert_eq!(
        (r["outcome"].as_str(), r["fetched"].as_u64()),
        (Some("polled"), Some(1)),
        "ImapPollFunction: {out}"
    );
    assert_eq!(drain_queue(&d.stack, &d.stack.queue_url).await.len(), 1, "no pointer on the ingest queue");
}
