//! Issue 17's regression tests that need the product around them (`mailroom serve`, the
//! mock providers, dovecot): one per hole found in the review, each named after its item
//! (docs/security.md lists them with their fix). The holes that live in one function are
//! tested beside it: item 1's token check (`track.rs`), item 9 and 17 (`reports.rs`),
//! item 13's address ranges (`providers/net.rs`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mailroom_tests::mock_google::MockGoogle;
use mailroom_tests::serve::Serve;
use mailroom_tests::{INGEST_TOKEN, mailroom_ok, unique};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const ISSUER: &str = "https://idp.security.test";
const AUDIENCE: &str = "mailroom-security-test";
const SUPPORT: &str = "support@acme.test";

const WORKSPACE: &str = r#"
name = "Security test"

[[users]]
email = "ann@acme.test"
name = "Ann Admin"
role = "admin"

[[users]]
email = "bob@acme.test"
name = "Bob Agent"

[[inboxes]]
address = "support@acme.test"
members = { users = ["bob@acme.test"] }
tracking = true

[[inboxes]]
address = "billing@acme.test"
members = { users = ["ann@acme.test"] }

[[forms]]
id = "contact"
inbox = "support@acme.test"
name = "Contact us"
"#;
const BILLING: &str = "billing@acme.test";

struct World {
    serve: Serve,
    google: MockGoogle,
    http: reqwest::Client,
}

async fn world() -> World {
    let data = tempfile::tempdir().unwrap();
    let ws = data.path().join("workspace.toml");
    std::fs::write(&ws, WORKSPACE).unwrap();
    mailroom_ok(data.path(), &["apply", ws.to_str().unwrap()]);
    let google = MockGoogle::start("nobody@acme.test").await;
    let serve = Serve::start(
        data,
        &[
            ("MAILROOM_OIDC_ISSUER", ISSUER),
            ("MAILROOM_OIDC_AUDIENCE", AUDIENCE),
            ("MAILROOM_OIDC_JWKS_URL", &google.jwks_url()),
        ],
    );
    World { serve, google, http: reqwest::Client::new() }
}

impl World {
    fn dev_token(&self, email: &str) -> String {
        mailroom_tests::dev_token(self.serve.data(), email)
    }

    fn oidc_token(&self, sub: &str, email: &str, verified: Option<bool>) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims =
            json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub, "email": email, "iat": now, "exp": now + 600});
        if let Some(v) = verified {
            claims["email_verified"] = json!(v);
        }
        self.google.sign(&claims, false)
    }

    async fn get(&self, token: &str, path: &str) -> (StatusCode, Value) {
        let r = self.http.get(self.serve.url(path)).bearer_auth(token).send().await.unwrap();
        let st = r.status();
        let text = r.text().await.unwrap();
        (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn ingest(&self, raw: &str, token: Option<&str>) -> StatusCode {
        self.ingest_to(SUPPORT, raw, token).await
    }

    async fn ingest_to(&self, inbox: &str, raw: &str, token: Option<&str>) -> StatusCode {
        let mut r = self.http.post(self.serve.url(&format!("/ingest?inbox={inbox}"))).body(raw.to_string());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send().await.unwrap().status()
    }

    /// Waits until the conversation holding `message_id` is listed, and returns its detail.
    async fn conversation_of(&self, token: &str, subject: &str) -> Value {
        let t = Instant::now();
        loop {
            let (st, list) = self.get(token, "/conversations").await;
            assert_eq!(st, StatusCode::OK, "{list}");
            if let Some(c) = list["items"].as_array().unwrap().iter().find(|c| c["subject"] == subject) {
                // Listed once threaded; its messages show once the pipeline is through.
                return self.with_messages(token, c["id"].as_str().unwrap(), 1).await;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no conversation {subject:?}:\n{}",
                self.serve.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn post(&self, token: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = self.http.post(self.serve.url(path)).bearer_auth(token).json(body).send().await.unwrap();
        let st = r.status();
        let text = r.text().await.unwrap();
        (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Waits until conversation `id` holds `n` messages; returns its detail.
    async fn with_messages(&self, token: &str, id: &str, n: usize) -> Value {
        let t = Instant::now();
        loop {
            let (st, d) = self.get(token, &format!("/conversations/{id}")).await;
            assert_eq!(st, StatusCode::OK, "{d}");
            if d["messages"].as_array().unwrap().len() >= n {
                return d;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "{id} never had {n} messages: {d}\n{}",
                self.serve.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn mail(to: &str, from: &str, subject: &str, id: &str, date: &str, parent: Option<&str>) -> String {
    let parent = parent.map(|p| format!("In-Reply-To: <{p}>\r\nReferences: <{p}>\r\n")).unwrap_or_default();
    format!(
        "Delivered-To: {to}\r\nFrom: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}>\r\n{parent}Content-Type: text/plain\r\n\r\nAbout {subject}.\r\n"
    )
}

fn rfc2822(d: chrono::DateTime<chrono::Utc>) -> String {
    d.to_rfc2822()
}

/// Item 2: a reply with a forged old Date, delivered to another inbox, leaves the
/// conversation where it was received first (on 4490ca9 the older Date moved the
/// conversation into billing@, out of the sight of support@'s agents).
#[tokio::test]
async fn item_02_a_forged_old_date_does_not_move_a_conversation_to_another_inbox() {
    let w = world().await;
    let (admin, bob) = (w.dev_token("ann@acme.test"), w.dev_token("bob@acme.test"));
    let m1 = format!("{}@customer.test", unique("own1"));
    let now = chrono::Utc::now();
    let first = mail(SUPPORT, "dana@customer.test", "Broken login", &m1, &rfc2822(now), None);
    assert_eq!(w.ingest(&first, Some(INGEST_TOKEN)).await, StatusCode::ACCEPTED);
    let d = w.conversation_of(&bob, "Broken login").await;
    let id = d["id"].as_str().unwrap().to_string();
    let m2 = format!("{}@customer.test", unique("own2"));
    let forged = mail(
        BILLING,
        "dana@customer.test",
        "Re: Broken login",
        &m2,
        "Mon, 1 Jan 2019 09:00:00 +0000",
        Some(&m1),
    );
    assert_eq!(w.ingest_to(BILLING, &forged, Some(INGEST_TOKEN)).await, StatusCode::ACCEPTED);
    let d = w.with_messages(&admin, &id, 2).await;
    assert_eq!(d["inbox"], SUPPORT, "{d}");
    let (st, seen) = w.get(&bob, &format!("/conversations/{id}")).await;
    assert_eq!(st, StatusCode::OK, "support@'s agent lost the conversation: {seen}");
}

/// Item 3: a third party who joins the thread (References to it, a Date in the future)
/// does not take the agent's reply: the default recipients come by receipt, and a
/// newcomer is named as such and gets a reply only when the agent names them (on
/// 4490ca9 the reply went to whoever wrote the newest Date).
#[tokio::test]
async fn item_03_a_third_party_joining_the_thread_does_not_take_the_reply() {
    let w = world().await;
    let admin = w.dev_token("ann@acme.test");
    let now = chrono::Utc::now();
    let m1 = format!("{}@customer.test", unique("hij1"));
    let first = mail(SUPPORT, "Dana <dana@customer.test>", "Refund please", &m1, &rfc2822(now), None);
    assert_eq!(w.ingest(&first, Some(INGEST_TOKEN)).await, StatusCode::ACCEPTED);
    let id = w.conversation_of(&admin, "Refund please").await["id"].as_str().unwrap().to_string();
    let m2 = format!("{}@evil.test", unique("hij2"));
    let joiner = mail(
        SUPPORT,
        "Mallory <mallory@evil.test>",
        "Re: Refund please",
        &m2,
        &rfc2822(now + chrono::Duration::hours(30)),
        Some(&m1),
    );
    assert_eq!(w.ingest(&joiner, Some(INGEST_TOKEN)).await, StatusCode::ACCEPTED);
    let d = w.with_messages(&admin, &id, 2).await;
    assert_eq!(d["reply_recipients"]["to"], json!(["mallory@evil.test"]), "{d}");
    assert_eq!(d["reply_recipients"]["new"], json!(["mallory@evil.test"]), "{d}");
    let reply = |rid: &str, to: Option<Vec<&str>>| {
        let mut b = json!({"text": "We are on it.", "request_id": rid});
        if let Some(to) = to {
            b["to"] = json!(to);
        }
        b
    };
    let (st, body) = w.post(&admin, &format!("/conversations/{id}/replies"), &reply("r1", None)).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "a reply went to the newcomer unconfirmed: {body}");
    assert!(body["detail"].as_str().unwrap().contains("mallory@evil.test"), "{body}");
    let (st, body) = w
        .post(&admin, &format!("/conversations/{id}/replies"), &reply("r2", Some(vec!["dana@customer.test"])))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["to"], json!(["dana@customer.test"]), "{body}");
    // The customer writes again: the default is hers, nothing new.
    let m3 = format!("{}@customer.test", unique("hij3"));
    let again = mail(
        SUPPORT,
        "Dana <dana@customer.test>",
        "Re: Refund please",
        &m3,
        &rfc2822(now - chrono::Duration::days(1)),
        Some(&m1),
    );
    assert_eq!(w.ingest(&again, Some(INGEST_TOKEN)).await, StatusCode::ACCEPTED);
    let d = w.with_messages(&admin, &id, 3).await;
    assert_eq!(d["reply_recipients"]["to"], json!(["dana@customer.test"]), "{d}");
    assert_eq!(d["reply_recipients"]["new"], json!([]), "{d}");
}

/// A `/t/c/` link whose token says "go to javascript:alert(1)", with no valid signature.
fn forged_click_link(base: &str, message_id: &str) -> String {
    let payload = json!({"m": message_id, "r": [], "t": 0, "h": "javascript:alert(1)"});
    let p = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    format!("{base}/t/c/{p}.{}", "0".repeat(64))
}

/// Items 1 and 19 end to end: a customer's mail that writes our inbox's own address in
/// From (with an `Authentication-Results` header of its own claiming DMARC pass) and
/// carries a crafted tracking link comes back from `GET /conversations/{id}` as a
/// customer's message flagged as spoofed, and with no `javascript:` URL anywhere. On the
/// main of 4490ca9 it came back as our own reply, with `href="javascript:alert(1)"`.
#[tokio::test]
async fn item_01_19_spoofed_from_with_a_forged_tracking_link_is_a_customer_message_without_script() {
    let w = world().await;
    let admin = w.dev_token("ann@acme.test");
    let mid = format!("{}@evil.test", unique("spoof"));
    let link = forged_click_link(&w.serve.base, &mid);
    let raw = format!(
        "Authentication-Results: mx.evil.test; dmarc=pass header.from=acme.test\r\nDelivered-To: {SUPPORT}\r\nFrom: Acme Support <{SUPPORT}>\r\nTo: {SUPPORT}\r\nSubject: Your invoice\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{mid}>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Pay <a href=\"{link}\">here</a> <a href=\"javascript:alert(2)\">now</a></p>\r\n"
    );
    assert_eq!(w.ingest(&raw, Some(INGEST_TOKEN)).await, StatusCode::ACCEPTED);
    let d = w.conversation_of(&admin, "Your invoice").await;
    let text = d.to_string();
    assert!(!text.to_ascii_lowercase().contains("javascript"), "a script URL came back: {text}");
    let m = &d["messages"][0];
    assert_eq!(m["direction"], "inbound", "{m}");
    assert_eq!(m["spoofed"], true, "{m}");
    assert!(m["html"].as_str().unwrap().contains("here"), "{m}");
    // Not an agent's reply in the reports either: nobody answered.
    assert!(d["events"].as_array().unwrap().iter().all(|e| e["type"] != "first_response"), "{d}");
}

/// Item 5: `POST /ingest` takes mail only with the ingest token or an admin's API token
/// (on 4490ca9 anyone who could reach the port, or any web page, could post mail).
#[tokio::test]
async fn item_05_ingest_needs_a_token() {
    let w = world().await;
    let raw = format!(
        "Delivered-To: {SUPPORT}\r\nFrom: x@customer.test\r\nSubject: hi\r\nMessage-ID: <{}@customer.test>\r\n\r\nhello\r\n",
        unique("ing")
    );
    assert_eq!(w.ingest(&raw, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(w.ingest(&raw, Some("not-the-token-at-all-xxxx")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(w.ingest(&raw, Some(&w.dev_token("bob@acme.test"))).await, StatusCode::FORBIDDEN);
    assert_eq!(w.ingest(&raw, Some(&w.dev_token("ann@acme.test"))).await, StatusCode::ACCEPTED);
    assert_eq!(w.ingest(&raw, Some(INGEST_TOKEN)).await, StatusCode::ACCEPTED);
}

/// Item 4: an OIDC user is the subject bound on first sign-in to a verified email; an
/// unverified email binds nothing, a changed email claim changes nobody, and a second
/// account claiming a bound address is refused (on 4490ca9 the email claim alone decided,
/// verified or not, so setting an admin's address made one an admin).
#[tokio::test]
async fn item_04_oidc_users_are_their_subject_and_need_a_verified_email() {
    let w = world().await;
    let me = "/me";
    // Unverified (or not said): refused, and nothing is bound.
    for v in [None, Some(false)] {
        let (st, body) = w.get(&w.oidc_token("sub-bob", "bob@acme.test", v), me).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    }
    // Verified: bob, bound to sub-bob.
    let (st, body) = w.get(&w.oidc_token("sub-bob", "bob@acme.test", Some(true)), me).await;
    assert_eq!((st, body["email"].as_str()), (StatusCode::OK, Some("bob@acme.test")), "{body}");
    // Bob sets the admin's address on his account: still bob.
    let (st, body) = w.get(&w.oidc_token("sub-bob", "ann@acme.test", Some(true)), me).await;
    assert_eq!(
        (st, body["email"].as_str(), body["role"].as_str()),
        (StatusCode::OK, Some("bob@acme.test"), Some("agent")),
        "{body}"
    );
    // Ann's real account binds Ann.
    let (st, body) = w.get(&w.oidc_token("sub-ann", "ann@acme.test", Some(true)), me).await;
    assert_eq!((st, body["role"].as_str()), (StatusCode::OK, Some("admin")), "{body}");
    // Another account claiming bob's address is refused.
    let (st, body) = w.get(&w.oidc_token("sub-mallory", "bob@acme.test", Some(true)), me).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
}

/// Item 10: a form submission is a customer's message even when the address typed into it
/// is in the company's own domain (on 4490ca9 it counted as an agent's reply, and as the
/// first response to nothing).
#[tokio::test]
async fn item_10_a_form_with_our_own_domain_is_a_customer_message() {
    let w = world().await;
    let admin = w.dev_token("ann@acme.test");
    // The form's secret, made through the API as an admin does on AWS (an agent may not).
    let (st, b) = w.post(&w.dev_token("bob@acme.test"), "/admin/forms/contact/secret", &json!({})).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{b}");
    let (st, b) = w.post(&admin, "/admin/forms/no-such-form/secret", &json!({})).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{b}");
    let (st, made) = w.post(&admin, "/admin/forms/contact/secret", &json!({})).await;
    assert_eq!(st, StatusCode::OK, "{made}");
    assert!(made["submit_url"].as_str().unwrap().ends_with("/forms/contact/submissions"), "{made}");
    let secret = made["secret"].as_str().unwrap().to_string();
    let r = w
        .http
        .post(w.serve.url("/forms/contact/submissions"))
        .header("x-mailroom-form-secret", &secret)
        .json(&json!({"email": "colleague@acme.test", "name": "A Colleague", "subject": "Form from inside", "message": "Please call me."}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let d = w.conversation_of(&admin, "Form from inside").await;
    assert_eq!(d["messages"][0]["direction"], "inbound", "{d}");
    assert_eq!(d["messages"][0]["spoofed"], false, "{d}");
    let (_, report) = w.get(&admin, "/reports/summary").await;
    assert_eq!(report["messages"]["out"], 0, "{report}");
}

/// Item 13: the API refuses an IMAP (or SMTP) server on a loopback, link-local or private
/// address unless the workspace allows it (on 4490ca9 it tried any host, so an admin
/// could make the API probe the network it runs in, the cloud metadata address included).
#[tokio::test]
async fn item_13_the_api_refuses_private_mail_hosts() {
    let w = world().await;
    let admin = w.dev_token("ann@acme.test");
    for host in ["127.0.0.1", "169.254.169.254", "10.0.0.7", "localhost"] {
        let body = json!({"host": host, "port": 993, "security": "tls", "user": "x", "password": "y"});
        let (st, b) = w.post(&admin, &format!("/admin/inboxes/{SUPPORT}/imap"), &body).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{host}: {b}");
        assert!(b["detail"].as_str().unwrap().contains("private"), "{host}: {b}");
    }
}

/// Item 14: the data directory and what is in it are the owner's only.
#[tokio::test]
async fn item_14_the_data_directory_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let w = world().await;
    let admin = w.dev_token("ann@acme.test");
    let raw = format!(
        "Delivered-To: {SUPPORT}\r\nFrom: x@customer.test\r\nSubject: perms\r\nMessage-ID: <{}@customer.test>\r\n\r\nhello\r\n",
        unique("perm")
    );
    assert_eq!(w.ingest(&raw, Some(INGEST_TOKEN)).await, StatusCode::ACCEPTED);
    w.conversation_of(&admin, "perms").await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let data = w.serve.data();
    assert_eq!(mode(data), 0o700, "{}", data.display());
    let mut files = 0;
    let mut todo = vec![data.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == "serve.log" || n == "workspace.toml") {
                continue; // written by this test, not by Mailroom
            }
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                todo.push(p);
            } else {
                assert_eq!(mode(&p) & 0o077, 0, "{} is {:o}", p.display(), mode(&p));
                files += 1;
            }
        }
    }
    assert!(files >= 3, "only {files} files looked at");
}

/// Follows an authorize URL to the provider (the mocks consent at once) and returns the
/// code and state it sends the browser back with.
async fn consent(url: &str) -> (String, String) {
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(url).send().await.unwrap();
    assert!(r.status().is_redirection(), "authorize answered {}", r.status());
    let back = url::Url::parse(r.headers()["location"].to_str().unwrap()).unwrap();
    let q: std::collections::HashMap<String, String> = back.query_pairs().into_owned().collect();
    (q["code"].clone(), q["state"].clone())
}

/// Item 6: connecting support@ with the consent of another mailbox is refused with the
/// reason, and stores nothing; with the inbox's own account it connects (on 4490ca9 the
/// other mailbox's mail was synced into support@).
#[tokio::test]
async fn item_06_oauth_consent_from_another_mailbox_is_refused() {
    use mailroom_app::mailbox::connection::{self, Provider};
    use mailroom_app::mailbox::oauth::{self, OAuthError};
    use mailroom_core::EmailAddress;
    let dir = tempfile::tempdir().unwrap();
    let ports = mailroom_app::Ports::embedded(dir.path()).unwrap();
    let inbox = EmailAddress::parse(SUPPORT).unwrap();
    let google = MockGoogle::start("someone.else@gmail.example").await;
    let graph = mailroom_tests::mock_graph::MockGraph::start().await;
    let mut cfg = mailroom_app::runtime::config::ProvidersConfig::from_env("http://127.0.0.1:9").unwrap();
    let g = &mut cfg.google;
    g.oauth.client_id = mailroom_tests::mock_google::CLIENT_ID.into();
    g.oauth.client_secret = Some(mailroom_tests::mock_google::CLIENT_SECRET.into());
    g.oauth.auth_url = google.auth_url();
    g.oauth.token_url = google.token_url();
    g.api_base = google.url.clone();
    let m = &mut cfg.microsoft;
    m.oauth.client_id = mailroom_tests::mock_graph::CLIENT_ID.into();
    m.oauth.client_secret = Some(mailroom_tests::mock_graph::CLIENT_SECRET.into());
    m.oauth.auth_url = graph.authorize_url();
    m.oauth.token_url = graph.token_url();
    m.api_base = graph.base.clone();

    // Gmail: the profile is someone else's.
    let (code, state) = consent(&oauth::start(&ports, &cfg, Provider::Gmail, &inbox).await.unwrap()).await;
    let err = oauth::callback(&ports, &cfg, &code, &state).await.unwrap_err();
    assert!(
        matches!(&err, OAuthError::WrongAccount { account, .. } if account == "someone.else@gmail.example"),
        "{err}"
    );
    assert!(err.to_string().contains(SUPPORT), "{err}");
    assert!(connection::get(&ports, &inbox).await.unwrap().is_none(), "a connection was stored");

    // Microsoft 365: another user signs in, then the inbox's own.
    let other = graph.add_user("someone.else@acme.test");
    graph.authorize_as(&other);
    let (code, state) = consent(&oauth::start(&ports, &cfg, Provider::Graph, &inbox).await.unwrap()).await;
    let err = oauth::callback(&ports, &cfg, &code, &state).await.unwrap_err();
    assert!(
        matches!(&err, OAuthError::WrongAccount { account, .. } if account == "someone.else@acme.test"),
        "{err}"
    );
    assert!(connection::get(&ports, &inbox).await.unwrap().is_none(), "a connection was stored");
    let own = graph.add_user(SUPPORT);
    graph.authorize_as(&own);
    let (code, state) = consent(&oauth::start(&ports, &cfg, Provider::Graph, &inbox).await.unwrap()).await;
    let conn = oauth::callback(&ports, &cfg, &code, &state).await.unwrap();
    assert_eq!(conn.inbox, SUPPORT);
}

/// Item 7: a message over the size cap does not block the mailbox: it is stored as a
/// placeholder with its headers, saying so, and the poll goes on to the next message (on
/// 4490ca9 it was fetched whole whatever its size, and a fetch that failed was retried on
/// every poll).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_07_a_message_over_the_size_cap_becomes_a_placeholder_and_the_poll_goes_on() {
    use mailroom_tests::dovecot::Dovecot;
    let dv = Dovecot::start();
    let data = tempfile::tempdir().unwrap();
    let big_id = format!("{}@customer.test", unique("big"));
    let mut big = format!(
        "From: Dana <dana@customer.test>\r\nTo: {SUPPORT}\r\nSubject: Huge scan\r\nDate: {}\r\nMessage-ID: <{big_id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n",
        chrono::Utc::now().to_rfc2822()
    );
    big.push_str(&"0123456789abcdef".repeat(80_000)); // 1.28 MB
    dv.save("INBOX", big.as_bytes());
    let small_id = format!("{}@customer.test", unique("small"));
    dv.save(
        "INBOX",
        format!("From: dana@customer.test\r\nTo: {SUPPORT}\r\nSubject: Small one\r\nDate: {}\r\nMessage-ID: <{small_id}>\r\n\r\nhi\r\n", chrono::Utc::now().to_rfc2822()).as_bytes(),
    );
    let out = std::process::Command::new(mailroom_tests::bin("mailroom"))
        .arg("--data")
        .arg(data.path())
        .args(["inbox", "connect-imap", SUPPORT, "--host", "127.0.0.1", "--port", &dv.port_tls.to_string()])
        .args([
            "--security",
            "tls",
            "--user",
            &dv.user,
            "--password-env",
            "MAILROOM_TEST_IMAP_PASSWORD",
            "--allow-private-host",
        ])
        .arg("--ca-file")
        .arg(dv.ca_file())
        .env("MAILROOM_TEST_IMAP_PASSWORD", &dv.password)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = std::process::Command::new(mailroom_tests::bin("mailroom"))
        .arg("--data")
        .arg(data.path())
        .args(["poll", "--once", "--json"])
        .env("MAILROOM_MAX_MESSAGE_MB", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let convs = mailroom_tests::mailroom_json(data.path(), &["conversations", "--json"]);
    let ids: Vec<String> = convs
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["message_ids"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()))
        .collect();
    assert!(ids.contains(&big_id) && ids.contains(&small_id), "{convs}");
    let huge = convs.as_array().unwrap().iter().find(|c| c["subject"] == "Huge scan").expect("the big one");
    assert_eq!(huge["messages"][0]["from"], "dana@customer.test", "{huge}");
    // What was stored is the placeholder: small, and it says why.
    let ports = mailroom_app::Ports::embedded(data.path()).unwrap();
    let msg = ports.table.get(&mailroom_app::keys::message(&big_id)).await.unwrap().unwrap();
    let raw = ports.blobs.get(msg["raw_key"].as_str().unwrap()).await.unwrap().unwrap();
    assert!(raw.len() < 10_000, "{} bytes stored", raw.len());
    let text = mailroom_core::understand(&raw).unwrap().message.text;
    assert!(text.contains("over the limit of 1.0 MB") && text.contains("UID"), "{text}");
}

const LOADED: &str = r#"
[[users]]
email = "ann@acme.test"
name = "Ann Admin"
role = "admin"

[[users]]
email = "bob@acme.test"
name = "Bob"

[[users]]
email = "cat@acme.test"
name = "Cat"

[[teams]]
id = "support"
members = ["bob@acme.test", "cat@acme.test"]
assign = "least_loaded"

[[inboxes]]
address = "support@acme.test"
members = { teams = ["support"] }
fallback_team = "support"
"#;

/// Item 18: least-loaded assignment counts each agent's open assigned conversations, and
/// the count follows closes, reopens and reassignments (on 4490ca9 it only ever went up
/// on routing, so an agent who closed everything still looked busiest).
#[tokio::test]
async fn item_18_least_loaded_counts_open_assigned_conversations() {
    let data = tempfile::tempdir().unwrap();
    let ws = data.path().join("workspace.toml");
    std::fs::write(&ws, LOADED).unwrap();
    mailroom_ok(data.path(), &["apply", ws.to_str().unwrap()]);
    let mail = data.path().join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    for i in 0..4 {
        let raw = mail_to(SUPPORT, &format!("c{i}@customer.test"), &format!("Question {i}"));
        std::fs::write(mail.join(format!("{i}.eml")), raw).unwrap();
    }
    mailroom_ok(data.path(), &["import", mail.to_str().unwrap()]);
    let serve = Serve::start(data, &[]);
    let w =
        World { serve, google: MockGoogle::start("nobody@acme.test").await, http: reqwest::Client::new() };
    let admin = w.dev_token("ann@acme.test");
    let (_, list) = w.get(&admin, "/conversations?limit=100").await;
    let convs: Vec<(String, String)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_string(), c["assignee"].as_str().unwrap().to_string()))
        .collect();
    let of = |who: &str| convs.iter().filter(|c| c.1 == who).map(|c| c.0.clone()).collect::<Vec<_>>();
    assert_eq!((of("bob@acme.test").len(), of("cat@acme.test").len()), (2, 2), "{list}");
    // Bob closes both of his, then Cat hands one to Bob and it is reopened elsewhere: the
    // counters say what is open and assigned.
    for id in of("bob@acme.test") {
        let (st, b) = w.post(&admin, &format!("/conversations/{id}/close"), &json!({})).await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }
    let moved = of("cat@acme.test")[0].clone();
    let (st, b) = w
        .post(&admin, &format!("/conversations/{moved}/assignment"), &json!({"assignee": "bob@acme.test"}))
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let reopened = of("bob@acme.test")[0].clone();
    let (st, b) = w.post(&admin, &format!("/conversations/{reopened}/reopen"), &json!({})).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let ports = mailroom_app::Ports::embedded(w.serve.data()).unwrap();
    let (_, list) = w.get(&admin, "/conversations?limit=100&status=open").await;
    for who in ["bob@acme.test", "cat@acme.test"] {
        let open = list["items"].as_array().unwrap().iter().filter(|c| c["assignee"] == who).count() as i64;
        assert_eq!(mailroom_app::load::load_of(&ports, who).await.unwrap(), open, "{who}: {list}");
    }
}

fn mail_to(to: &str, from: &str, subject: &str) -> String {
    format!(
        "Delivered-To: {to}\r\nFrom: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{}@customer.test>\r\n\r\nHello.\r\n",
        unique("ll")
    )
}

/// Item 11: remote images are left out of a message's HTML until the reader asks for them
/// (`images=show`), so opening a mail does not tell its sender (on 4490ca9 they were
/// served as written, tracking pixels included).
#[tokio::test]
async fn item_11_remote_images_wait_until_the_reader_asks() {
    let w = world().await;
    let admin = w.dev_token("ann@acme.test");
    let raw = format!(
        "Delivered-To: {SUPPORT}\r\nFrom: News <news@sender.test>\r\nTo: {SUPPORT}\r\nSubject: Newsletter with pixel\r\nMessage-ID: <{}@sender.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<p>Hi<img src=\"https://tracker.sender.test/open.gif?u=42\" alt=\"\"><img src=\"cid:logo\"></p>\r\n",
        unique("img")
    );
    assert_eq!(w.ingest(&raw, Some(INGEST_TOKEN)).await, StatusCode::ACCEPTED);
    let d = w.conversation_of(&admin, "Newsletter with pixel").await;
    let m = &d["messages"][0];
    assert!(!m["html"].as_str().unwrap().contains("tracker.sender.test"), "{m}");
    assert_eq!(m["blocked_images"], 1, "{m}");
    let (_, shown) =
        w.get(&admin, &format!("/conversations/{}?images=show", d["id"].as_str().unwrap())).await;
    let m = &shown["messages"][0];
    assert!(m["html"].as_str().unwrap().contains("https://tracker.sender.test/open.gif"), "{m}");
    assert_eq!(m["blocked_images"], 0, "{m}");
    let (st, _) = w.get(&admin, &format!("/conversations/{}?images=maybe", d["id"].as_str().unwrap())).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

/// Item 16: a page of the conversation list reads the index and nothing per row (on
/// 4490ca9 it read each listed conversation's report state too, an item that holds every
/// message's facts: 25 extra reads for a page of 25).
#[tokio::test]
async fn item_16_the_conversation_list_reads_the_index_only() {
    use mailroom_app::api::{ApiState, auth};
    let data = tempfile::tempdir().unwrap();
    let ws = data.path().join("workspace.toml");
    std::fs::write(&ws, WORKSPACE).unwrap();
    mailroom_ok(data.path(), &["apply", ws.to_str().unwrap()]);
    let mail = data.path().join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    for i in 0..40 {
        std::fs::write(
            mail.join(format!("{i}.eml")),
            mail_to(SUPPORT, &format!("c{i}@customer.test"), &format!("Row {i}")),
        )
        .unwrap();
    }
    mailroom_ok(data.path(), &["import", mail.to_str().unwrap()]);
    let ports = mailroom_app::Ports::embedded(data.path()).unwrap();
    let token = auth::LocalIssuer::new(&ports.signer)
        .issue("ann@acme.test", chrono::Utc::now(), Duration::from_secs(600))
        .unwrap();
    let st = ApiState {
        auth: auth::Authenticator::new(Some(auth::LocalIssuer::new(&ports.signer)), None).unwrap(),
        providers: mailroom_app::runtime::config::ProvidersConfig::from_env("http://127.0.0.1:9").unwrap(),
        public_url: "http://127.0.0.1:9".into(),
        ports,
    };
    let app = mailroom_app::api::router(std::sync::Arc::new(st));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    let list = |cursor: Option<String>| {
        let mut url = format!("{base}/conversations?limit=25");
        if let Some(c) = cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        http.get(url).bearer_auth(&token).send()
    };
    mailroom_store::meter::reset();
    let page: Value = list(None).await.unwrap().json().await.unwrap();
    let counts = mailroom_store::meter::snapshot();
    let table = &counts["embedded-table"];
    assert_eq!(page["items"].as_array().unwrap().len(), 25, "{page}");
    assert!(page["items"][0]["waiting_since"].is_string(), "the list lost what it shows: {page}");
    let gets = table.get("GetItem").map_or(0, |c| c.requests);
    // The workspace, and nothing per listed conversation.
    assert!(gets <= 2, "{gets} item reads for one page: {counts:?}");
    // One query per shard of the index (docs/scale.md, change 2), none per conversation.
    let shards = mailroom_app::keys::conversations_index_pks().len() as u64;
    assert_eq!(table.get("Query").map_or(0, |c| c.requests), shards, "{counts:?}");
}
