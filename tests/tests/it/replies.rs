//! Replies end to end, in-process, for each kind of inbox: Gmail (the mock Google's
//! messages.send), Microsoft 365 (the mock Graph's sendMail) and IMAP (a private dovecot)
//! with SMTP (aiosmtpd). Each test syncs an inbound message from the mailbox, queues a
//! reply, runs the send worker, checks what the provider received (headers, threading,
//! signatures, our signed Message-ID), syncs the provider's Sent copy back, and checks
//! that the conversation has the reply once, outbound and attributed to the agent; then a
//! repeated request id, a redelivered queue message and a provider refusal.

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::{Query as AxQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use mailroom_app::mailbox::connection::{self, Connection, Provider, State as ConnState};
use mailroom_app::mailbox::imap::{self, ImapSettings, PollOptions, SmtpSecurity, SmtpSettings};
use mailroom_app::mailbox::sync::SyncRequest;
use mailroom_app::outbound::attach::{self, ReplyAttachment};
use mailroom_app::outbound::reply::{self, OutboxView, ReplyRequest, SendError, SendPointer};
use mailroom_app::outbound::send::SendHandler;
use mailroom_app::runtime::config::ProvidersConfig;
use mailroom_app::runtime::consumer::Worker;
use mailroom_app::{Ports, Stages, keys, mailbox::gmail, mailbox::graph, mailbox::oauth};
use mailroom_core::workspace::Workspace;
use mailroom_core::{EmailAddress, ParsedMessage};
use mailroom_tests::dovecot::Dovecot;
use mailroom_tests::mock_google::{self, MockGoogle};
use mailroom_tests::mock_graph::{self, MockGraph};
use mailroom_tests::smtp::SmtpSink;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const CUSTOMER: &str = "carla@customer.test";
const BOSS: &str = "boss@customer.test";
const AGENT: &str = "maria.keller@acme.test";
const AGENT_SIG: &str = "Maria Keller\nCustomer Support";
const INBOX_SIG: &str = "Acme Support | help.acme.test";

fn workspace(inbox: &str) -> Workspace {
    let text = format!(
        r#"
name = "Replies"
[[users]]
email = "{AGENT}"
name = "Maria Keller"
signature = "Maria Keller\nCustomer Support"
[[users]]
email = "tom.becker@acme.test"
name = "Tom Becker"
[[inboxes]]
address = "{inbox}"
signature = "{INBOX_SIG}"
members = {{ users = ["{AGENT}"] }}
"#
    );
    mailroom_core::workspace::parse_toml(&text).expect("test workspace")
}

/// The customer's message: a reply to an earlier one of theirs (so References has a
/// chain to extend), with a Reply-To that differs from From.
fn inbound(inbox: &str, id: &str) -> Vec<u8> {
    format!(
        "From: Carla Customer <carla.personal@customer.test>\r\nReply-To: Carla <{CUSTOMER}>\r\nTo: {inbox}\r\n\
         Subject: Broken invoice\r\nDate: {}\r\nMessage-ID: <{id}>\r\nIn-Reply-To: <earlier-{id}>\r\n\
         References: <earlier-{id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello, invoice 42 is wrong.\r\n",
        Utc::now().to_rfc2822()
    )
    .into_bytes()
}

/// A connected mailbox of one provider, as a test drives it.
#[async_trait]
trait Mailbox: Send + Sync {
    fn ports(&self) -> &Ports;
    fn inbox(&self) -> &str;
    fn providers(&self) -> Arc<ProvidersConfig>;
    /// Puts a message into the mailbox's inbox.
    async fn deliver(&self, raw: &[u8]);
    /// Syncs the mailbox (inbox and Sent) and runs the pipeline.
    async fn sync(&self);
    /// Every message the provider was asked to send and accepted.
    fn sent(&self) -> Vec<Vec<u8>>;
    /// Makes the next send fail for good (a 400, or refused credentials).
    async fn refuse_next_send(&self) -> &'static str;
    /// Provider-specific checks of the accepted reply.
    async fn check_sent(&self, _reply: &OutboxView, _inbound_id: &str) {}
}

async fn drain_stages(ports: &Ports) {
    let r = Stages::new(ports).retry_base(Duration::from_millis(10)).drain().await.unwrap();
    assert_eq!(r.failed, 0, "a pipeline stage failed");
}

fn send_worker(m: &dyn Mailbox) -> Worker {
    let mut w = Worker::new(
        m.ports().send_queue.clone(),
        Arc::new(SendHandler::new(m.ports().clone(), m.providers())),
    );
    w.retry_base = Duration::from_millis(10);
    w
}

fn parse(raw: &[u8]) -> ParsedMessage {
    mailroom_core::understand(raw).expect("the sent MIME parses").message
}

fn header<'a>(raw: &'a str, name: &str) -> Vec<&'a str> {
    let head = raw.split("\r\n\r\n").next().unwrap();
    head.lines()
        .filter_map(|l| {
            l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim())
        })
        .collect()
}

/// The whole scenario, the same for every provider.
async fn scenario(m: &dyn Mailbox) {
    let ports = m.ports();
    let ws = workspace(m.inbox());
    mailroom_app::workspace::apply(ports, &ws).await.unwrap();
    let inbound_id = format!("in-{:08x}@customer.test", rand::random::<u32>());
    m.deliver(&inbound(m.inbox(), &inbound_id)).await;
    m.sync().await;
    let convs = mailroom_app::views::conversations::list(ports).await.unwrap();
    assert_eq!(convs.len(), 1, "one conversation from the inbound message: {convs:?}");
    let conv = convs[0].id.clone();

    let req = ReplyRequest {
        request_id: "reply-1".into(),
        author: AGENT.into(),
        text: "Thanks Carla, we are fixing invoice 42.".into(),
        html: None,
        cc: vec![BOSS.into()],
        to: None,
        attachments: vec![],
    };
    let queued = reply::queue_reply(ports, &ws, &conv, req.clone(), None).await.unwrap();
    assert_eq!(queued.status, "queued");
    // The same request again is the same reply; another body under its id is refused.
    let again = reply::queue_reply(ports, &ws, &conv, req.clone(), None).await.unwrap();
    assert_eq!((again.message_id.as_str(), again.status.as_str()), (queued.message_id.as_str(), "queued"));
    let other = ReplyRequest { text: "something else".into(), ..req.clone() };
    assert!(matches!(
        reply::queue_reply(ports, &ws, &conv, other, None).await,
        Err(SendError::Conflict { .. })
    ));
    assert!(matches!(
        reply::queue_reply(ports, &ws, "c-no-such-conversation", req.clone(), None).await,
        Err(SendError::ConversationNotFound(_))
    ));

    let worker = send_worker(m);
    let r = worker.drain().await.unwrap();
    assert_eq!(r.failed, 0, "the send worker failed");
    assert_eq!(m.sent().len(), 1, "two queue_reply calls with one request id sent once");
    // A redelivered queue message sends nothing either.
    let ptr =
        serde_json::to_string(&SendPointer { conversation: conv.clone(), request_id: "reply-1".into() })
            .unwrap();
    ports.send_queue.send(&ptr).await.unwrap();
    worker.drain().await.unwrap();
    assert_eq!(m.sent().len(), 1, "a redelivered send pointer sent again");
    let again = reply::queue_reply(ports, &ws, &conv, req.clone(), None).await.unwrap();
    assert_eq!(again.status, "sent");
    worker.drain().await.unwrap();
    assert_eq!(m.sent().len(), 1, "the same request id after the send sent again");

    // What the provider got.
    let raw = m.sent().remove(0);
    let text = String::from_utf8_lossy(&raw).to_string();
    let p = parse(&raw);
    let from = p.from.clone().expect("From");
    assert_eq!(from.email, m.inbox(), "From is the inbox");
    assert_eq!(from.name.as_deref(), Some("Maria Keller via Support"));
    assert_eq!(p.to.iter().map(|a| a.email.as_str()).collect::<Vec<_>>(), [CUSTOMER], "To is the Reply-To");
    assert_eq!(p.cc.iter().map(|a| a.email.as_str()).collect::<Vec<_>>(), [BOSS]);
    assert_eq!(p.subject, "Re: Broken invoice");
    assert_eq!(p.in_reply_to, std::slice::from_ref(&inbound_id));
    assert_eq!(p.references, [format!("earlier-{inbound_id}"), inbound_id.clone()]);
    assert_eq!(header(&text, "In-Reply-To"), [format!("<{inbound_id}>")]);
    assert_eq!(p.message_id, queued.message_id);
    let signed = ports.signer.verify_message_id(&p.message_id).expect("our signed Message-ID");
    assert_eq!(signed.conversation, conv);
    assert!(p.message_id.ends_with("@acme.test"), "{}", p.message_id);
    for sig in [AGENT_SIG, INBOX_SIG] {
        let first = sig.lines().next().unwrap();
        assert!(p.text.contains(sig), "text lacks signature {sig:?}: {}", p.text);
        assert!(p.html.as_deref().unwrap_or_default().contains(first), "HTML lacks signature {first:?}");
    }
    assert!(p.text.starts_with("Thanks Carla"), "{}", p.text);
    let agent_at = p.text.find("Maria Keller").unwrap();
    assert!(agent_at < p.text.find("Acme Support").unwrap(), "the user's signature comes first");
    assert_eq!(header(&text, "X-Mailroom-Loop"), [m.inbox()]);
    m.check_sent(&again, &inbound_id).await;

    // Our own Sent copy went through the pipeline: two messages, the reply outbound and
    // the agent's.
    drain_stages(ports).await;
    let check_conversation = || async {
        let convs = mailroom_app::views::conversations::list(ports).await.unwrap();
        assert_eq!(convs.len(), 1, "still one conversation: {convs:?}");
        let msgs = &convs[0].messages;
        assert_eq!(msgs.len(), 2, "inbound and reply: {msgs:?}");
        let reply: Vec<_> = msgs.iter().filter(|x| x.message_id == queued.message_id).collect();
        assert_eq!(reply.len(), 1);
        assert_eq!(reply[0].direction, "outbound");
        let item =
            ports.table.get(&keys::message(&queued.message_id)).await.unwrap().expect("reply recorded");
        assert_eq!(item["author"], json!(AGENT));
        let owner = ports.table.get(&mailroom_app::keys::conv_owner(&convs[0].id)).await.unwrap().unwrap();
        assert_eq!(
            owner["msgs"][&queued.message_id]["a"],
            json!(AGENT),
            "reports attribute the reply to the agent"
        );
        item
    };
    let before = check_conversation().await;
    // The provider's Sent copy syncs back: the same message, not a second one.
    m.sync().await;
    let after = check_conversation().await;
    let copies = |i: &mailroom_store::Item| i["copies"].as_array().map(Vec::len).unwrap_or(0);
    assert!(copies(&after) >= copies(&before), "copies: {before:?} -> {after:?}");

    // Two uploaded attachments, one with a non-ASCII name: the provider gets them byte
    // for byte, with their names and types, as mail-parser reads them back.
    let pdf: Vec<u8> = (0..40_000u32).map(|i| (i.wrapping_mul(7919) % 256) as u8).collect();
    let sheet: Vec<u8> = b"PK\x03\x04 not really a sheet \xff\x00\r\n.\r\n".repeat(300);
    let xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    let name2 = "Angebot für Müller – Q3 (final).xlsx";
    let up1 =
        attach::upload(ports, AGENT, "report.pdf", "application/pdf", pdf.clone().into()).await.unwrap();
    let up2 = attach::upload(ports, AGENT, name2, xlsx, sheet.clone().into()).await.unwrap();
    let files = vec![
        ReplyAttachment { upload: Some(up1.id.clone()), sha256: None },
        ReplyAttachment { upload: Some(up2.id.clone()), sha256: None },
    ];
    let r3 = ReplyRequest {
        request_id: "reply-3".into(),
        text: "The files you asked for.".into(),
        attachments: files.clone(),
        ..req.clone()
    };
    reply::queue_reply(ports, &ws, &conv, r3, None).await.unwrap();
    assert_eq!(worker.drain().await.unwrap().failed, 0);
    let sent = m.sent();
    assert_eq!(sent.len(), 2, "the reply with attachments was sent");
    let p = parse(sent.last().unwrap());
    let got: Vec<(Option<&str>, &str, &str)> = p
        .attachments
        .iter()
        .map(|a| (a.name.as_deref(), a.content_type.as_str(), a.sha256.as_str()))
        .collect();
    let sha = |b: &[u8]| mailroom_core::sha256(b).to_string();
    assert_eq!(
        got,
        [
            (Some("report.pdf"), "application/pdf", sha(&pdf).as_str()),
            (Some(name2), xlsx, sha(&sheet).as_str())
        ]
    );
    assert!(p.text.starts_with("The files you asked for."), "{}", p.text);
    // An upload is its uploader's only; an unknown one is refused.
    let r4 = ReplyRequest {
        request_id: "reply-4".into(),
        author: "tom.becker@acme.test".into(),
        attachments: files[..1].to_vec(),
        ..req.clone()
    };
    let err = reply::queue_reply(ports, &ws, &conv, r4, None).await.unwrap_err();
    assert!(matches!(&err, SendError::Invalid(m) if m.contains("no upload")), "{err}");

    // A refusal: the entry fails with the provider's error, visible on the conversation.
    let why = m.refuse_next_send().await;
    let r2 = ReplyRequest { request_id: "reply-2".into(), text: "A second answer.".into(), ..req.clone() };
    reply::queue_reply(ports, &ws, &conv, r2, None).await.unwrap();
    let r = worker.drain().await.unwrap();
    assert_eq!(r.failed, 0, "a terminal failure is handled, not retried");
    assert_eq!(m.sent().len(), 2, "the refused reply was not sent");
    let outbox = reply::outbox(ports, &conv).await.unwrap();
    assert_eq!(outbox.len(), 3, "{outbox:?}");
    let entry = |id: &str| outbox.iter().find(|o| o.request_id == id).unwrap();
    assert_eq!(entry("reply-1").status, "sent");
    assert!(entry("reply-1").sent_at.is_some());
    assert_eq!(entry("reply-3").status, "sent");
    assert_eq!(entry("reply-2").status, "failed");
    let err = entry("reply-2").last_error.clone().unwrap_or_default();
    assert!(err.contains(why), "error {err:?} should contain {why:?}");
    let events = mailroom_app::feed::conversation_events(ports, &conv).await.unwrap();
    let failed: Vec<_> = events.iter().filter(|e| e["type"] == "send_failed").collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    assert_eq!(failed[0]["data"]["request_id"], "reply-2");
    assert!(failed[0]["data"]["error"].as_str().unwrap().contains(why));
    assert_eq!(ports.send_queue.approximate_len().await.unwrap(), 0);
}

// ---------------------------------------------------------------------------- Gmail

struct GmailBox {
    _dir: tempfile::TempDir,
    ports: Ports,
    mock: MockGoogle,
    providers: Arc<ProvidersConfig>,
    inbox: EmailAddress,
    inbound_gmail_id: std::sync::Mutex<Option<String>>,
}

impl GmailBox {
    async fn new(inbox: &str) -> GmailBox {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::embedded(dir.path()).unwrap();
        let mock = MockGoogle::start(inbox).await;
        let mut providers = ProvidersConfig::from_env("http://127.0.0.1:9").unwrap();
        let g = &mut providers.google;
        g.oauth.client_id = mock_google::CLIENT_ID.into();
        g.oauth.client_secret = Some(mock_google::CLIENT_SECRET.into());
        g.oauth.auth_url = mock.auth_url();
        g.oauth.token_url = mock.token_url();
        g.api_base = mock.url.clone();
        g.topic = mock_google::TOPIC.into();
        let inbox = EmailAddress::parse(inbox).unwrap();
        let c = Connection {
            inbox: inbox.key(),
            provider: Provider::Gmail,
            settings: json!({"backfill_days": 14}),
            state: ConnState::Connected,
            connected_at: Utc::now(),
            last_success: None,
            last_error: None,
            last_error_at: None,
            lag_seconds: None,
            consecutive_failures: 0,
        };
        connection::save(&ports, &c).await.unwrap();
        let (_access, refresh) = mock.grant();
        // An expired access token: the first send refreshes it.
        let t = oauth::TokenSet {
            access_token: "expired".into(),
            refresh_token: Some(refresh),
            expires_at: Utc::now() - chrono::Duration::minutes(5),
        };
        oauth::store_tokens(&ports, &inbox, &t).await.unwrap();
        GmailBox {
            _dir: dir,
            ports,
            mock,
            providers: Arc::new(providers),
            inbox,
            inbound_gmail_id: std::sync::Mutex::new(None),
        }
    }
}

#[async_trait]
impl Mailbox for GmailBox {
    fn ports(&self) -> &Ports {
        &self.ports
    }
    fn inbox(&self) -> &str {
        self.inbox.as_str()
    }
    fn providers(&self) -> Arc<ProvidersConfig> {
        self.providers.clone()
    }
    async fn deliver(&self, raw: &[u8]) {
        let id = self.mock.add_message(raw, &["INBOX", "UNREAD"]);
        *self.inbound_gmail_id.lock().unwrap() = Some(id);
    }
    async fn sync(&self) {
        let cfg = &self.providers.google;
        let first = connection::get_cursor(&self.ports, &self.inbox, gmail::CURSOR).await.unwrap().is_none();
        let r = if first {
            gmail::on_connect(&self.ports, cfg, &self.inbox).await
        } else {
            let req = SyncRequest {
                inbox: self.inbox.key(),
                provider: Provider::Gmail,
                reason: "push".into(),
                hint: json!({}),
            };
            gmail::sync(&self.ports, cfg, &self.inbox, &req).await
        };
        r.expect("gmail sync");
        drain_stages(&self.ports).await;
    }
    fn sent(&self) -> Vec<Vec<u8>> {
        self.mock.sent()
    }
    async fn refuse_next_send(&self) -> &'static str {
        self.mock.fail_next_send(400, "invalidArgument", "Invalid To header");
        "Invalid To header"
    }
    async fn check_sent(&self, reply: &OutboxView, _inbound_id: &str) {
        // Filed in the customer's Gmail thread.
        let inbound = self.inbound_gmail_id.lock().unwrap().clone().unwrap();
        let sent_id = reply.provider_id.clone().expect("Gmail's message id recorded");
        assert_eq!(
            self.mock.thread_of(&sent_id),
            self.mock.thread_of(&inbound),
            "sent in the inbound's thread"
        );
        let sends = self.mock.requests().iter().filter(|r| r.path.ends_with("/messages/send")).count();
        assert_eq!(sends, 1, "one messages.send call");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gmail_reply_is_sent_once_threaded_and_synced_back_as_the_same_message() {
    let m = GmailBox::new("support@acme.test").await;
    scenario(&m).await;
}

// ---------------------------------------------------------------------------- Graph

async fn notification_route(
    State(p): State<Ports>,
    AxQuery(q): AxQuery<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let r = graph::handle_notification(&p, q.get("validationToken").map(String::as_str), &body).await;
    (StatusCode::from_u16(r.status).unwrap(), [(header::CONTENT_TYPE, r.content_type)], r.body)
        .into_response()
}

async fn lifecycle_route(
    State(p): State<Ports>,
    AxQuery(q): AxQuery<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let r = graph::handle_lifecycle(&p, q.get("validationToken").map(String::as_str), &body).await;
    (StatusCode::from_u16(r.status).unwrap(), [(header::CONTENT_TYPE, r.content_type)], r.body)
        .into_response()
}

struct GraphBox {
    _dir: tempfile::TempDir,
    ports: Ports,
    mock: MockGraph,
    user: String,
    providers: Arc<ProvidersConfig>,
    inbox: EmailAddress,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for GraphBox {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl GraphBox {
    async fn new(inbox: &str) -> GraphBox {
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
        let mut providers = ProvidersConfig::from_env(&webhooks).unwrap();
        let ms = &mut providers.microsoft;
        ms.oauth.client_id = mock_graph::CLIENT_ID.into();
        ms.oauth.client_secret = Some(mock_graph::CLIENT_SECRET.into());
        ms.oauth.auth_url = mock.authorize_url();
        ms.oauth.token_url = mock.token_url();
        ms.api_base = mock.base.clone();
        ms.notification_url = format!("{webhooks}/webhooks/graph");
        ms.lifecycle_url = format!("{webhooks}/webhooks/graph-lifecycle");
        let user = mock.add_user(inbox);
        let inbox = EmailAddress::parse(inbox).unwrap();
        let c = Connection {
            inbox: inbox.key(),
            provider: Provider::Graph,
            settings: json!({"user_id": user}),
            state: ConnState::Connected,
            connected_at: Utc::now(),
            last_success: None,
            last_error: None,
            last_error_at: None,
            lag_seconds: None,
            consecutive_failures: 0,
        };
        connection::save(&ports, &c).await.unwrap();
        let rt = mock.grant(&user);
        let t = oauth::TokenSet {
            access_token: "expired".into(),
            refresh_token: Some(rt),
            expires_at: Utc::now() - chrono::Duration::minutes(5),
        };
        oauth::store_tokens(&ports, &inbox, &t).await.unwrap();
        GraphBox { _dir: dir, ports, mock, user, providers: Arc::new(providers), inbox, server }
    }
}

#[async_trait]
impl Mailbox for GraphBox {
    fn ports(&self) -> &Ports {
        &self.ports
    }
    fn inbox(&self) -> &str {
        self.inbox.as_str()
    }
    fn providers(&self) -> Arc<ProvidersConfig> {
        self.providers.clone()
    }
    async fn deliver(&self, raw: &[u8]) {
        self.mock.deliver(&self.user, "inbox", Bytes::from(raw.to_vec()), Utc::now());
    }
    async fn sync(&self) {
        let cfg = &self.providers.microsoft;
        let first = connection::get_cursor(&self.ports, &self.inbox, "inbox").await.unwrap().is_none();
        if first {
            graph::on_connect(&self.ports, cfg, &self.inbox).await.expect("graph connect");
        } else {
            for folder in ["inbox", "sentitems"] {
                let req = SyncRequest {
                    inbox: self.inbox.key(),
                    provider: Provider::Graph,
                    reason: "notification".into(),
                    hint: json!({"folder": folder}),
                };
                graph::sync(&self.ports, cfg, &self.inbox, &req).await.expect("graph sync");
            }
        }
        drain_stages(&self.ports).await;
    }
    fn sent(&self) -> Vec<Vec<u8>> {
        self.mock.sent(&self.user).into_iter().map(|b| b.to_vec()).collect()
    }
    async fn refuse_next_send(&self) -> &'static str {
        self.mock.fail_next_send(400, "ErrorInvalidRecipients", "At least one recipient is not valid.");
        "ErrorInvalidRecipients"
    }
    async fn check_sent(&self, reply: &OutboxView, _inbound_id: &str) {
        // Filed in Sent Items with our Message-ID, other bytes than we posted.
        let sent = self.mock.folder(&self.user, "sentitems");
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].internet_message_id, format!("<{}>", reply.message_id));
        assert_ne!(sent[0].mime.to_vec(), self.sent()[0], "Exchange's copy differs from the posted MIME");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_reply_is_sent_once_and_the_sentitems_copy_is_the_same_message() {
    let m = GraphBox::new("support@acme.test").await;
    scenario(&m).await;
    // The sentitems copy became a second raw copy of the reply, not a second message.
    let outbox =
        reply::outbox(&m.ports, &mailroom_app::views::conversations::list(&m.ports).await.unwrap()[0].id)
            .await
            .unwrap();
    let item = m.ports.table.get(&keys::message(&outbox[0].message_id)).await.unwrap().unwrap();
    assert_eq!(item["copies"].as_array().unwrap().len(), 2, "our copy and Exchange's: {item:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_send_mail_rejects_bad_base64() {
    let m = GraphBox::new("support@acme.test").await;
    let token = oauth::access_token(&m.ports, &m.providers.microsoft.oauth, &m.inbox).await.unwrap();
    let r = reqwest::Client::new()
        .post(format!("{}/v1.0/users/{}/sendMail", m.mock.base, m.user))
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body("not base64 at all!")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "ErrorMimeContentInvalidBase64String");
    assert!(m.mock.sent(&m.user).is_empty());
}

// ---------------------------------------------------------------------------- IMAP + SMTP

struct ImapBox {
    _dir: tempfile::TempDir,
    ports: Ports,
    dv: Dovecot,
    smtp: SmtpSink,
    inbox: EmailAddress,
    providers: Arc<ProvidersConfig>,
}

impl ImapBox {
    async fn new(inbox: &str) -> ImapBox {
        let dv = Dovecot::start();
        let smtp = SmtpSink::start_with_auth(&dv.user, &dv.password);
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::embedded(dir.path()).unwrap();
        let inbox = EmailAddress::parse(inbox).unwrap();
        let settings = ImapSettings {
            smtp: Some(SmtpSettings {
                host: "127.0.0.1".into(),
                port: smtp.port(),
                security: SmtpSecurity::None,
                user: None,
                append_sent: true,
            }),
            ..dv.imap_settings()
        };
        imap::connect(&ports, &inbox, settings, &dv.password, &PollOptions::default())
            .await
            .expect("connect");
        let providers = Arc::new(ProvidersConfig::from_env("http://127.0.0.1:9").unwrap());
        ImapBox { _dir: dir, ports, dv, smtp, inbox, providers }
    }
}

#[async_trait]
impl Mailbox for ImapBox {
    fn ports(&self) -> &Ports {
        &self.ports
    }
    fn inbox(&self) -> &str {
        self.inbox.as_str()
    }
    fn providers(&self) -> Arc<ProvidersConfig> {
        self.providers.clone()
    }
    async fn deliver(&self, raw: &[u8]) {
        self.dv.save("INBOX", raw);
    }
    async fn sync(&self) {
        let r = imap::poll_all(&self.ports, &PollOptions::default()).await.unwrap();
        assert_eq!(r.failed(), 0, "poll: {r:?}");
        drain_stages(&self.ports).await;
    }
    fn sent(&self) -> Vec<Vec<u8>> {
        self.smtp.messages()
    }
    async fn refuse_next_send(&self) -> &'static str {
        // The mailbox password changed: the SMTP server refuses the login for good.
        connection::put_secret(&self.ports, &self.inbox, imap::SECRET, b"not-the-password").await.unwrap();
        "535"
    }
    async fn check_sent(&self, _reply: &OutboxView, _inbound_id: &str) {
        let env = self.smtp.envelopes();
        assert_eq!(env.len(), 1);
        assert_eq!(env[0].0, self.inbox.as_str(), "envelope sender");
        let mut rcpt = env[0].1.clone();
        rcpt.sort();
        assert_eq!(rcpt, [BOSS, CUSTOMER], "envelope recipients: To and Cc");
        // Filed in the Sent folder, as a mail client would.
        let sent = self.dv.maildir_files("Sent");
        assert_eq!(sent.len(), 1, "one APPENDed copy in Sent");
        let stored = std::fs::read(sent.iter().next().unwrap()).unwrap();
        assert_eq!(parse(&stored).message_id, _reply.message_id);
        let flags = self.dv.flags("Sent");
        assert!(flags.iter().all(|(_, f)| f.contains("\\Seen")), "{flags:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imap_reply_goes_out_over_smtp_and_the_sent_folder_copy_is_the_same_message() {
    let m = ImapBox::new("support@acme.test").await;
    scenario(&m).await;
}
