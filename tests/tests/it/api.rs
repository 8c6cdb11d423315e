//! The HTTP API through the real `mailroom serve`: authentication, the permission matrix
//! over every endpoint of its own OpenAPI document, and what never leaks to a
//! non-member.
//!
//! Identities: an admin, an agent who is a member of support@ (through a team), an agent
//! who is only a member of billing@, no token, an expired token, a token from another
//! issuer, a token signed by another key. The mock Google server is the OIDC issuer
//! (its JWKS), besides serve's own development tokens.

use mailroom_tests::mock_google::MockGoogle;
use mailroom_tests::serve::Serve;
use mailroom_tests::{mailroom_ok, unique};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;

const ISSUER: &str = "https://idp.mailroom.test";
const AUDIENCE: &str = "mailroom-api-test";
const ADMIN: &str = "ann@acme.test";
const MEMBER: &str = "bob@acme.test";
const OUTSIDER: &str = "carl@acme.test";

const WORKSPACE: &str = r#"
name = "API test"

[[users]]
email = "ann@acme.test"
name = "Ann Admin"
role = "admin"

[[users]]
email = "bob@acme.test"
name = "Bob Member"
signature = "Bob\nSupport"

[[users]]
email = "carl@acme.test"
name = "Carl Outsider"

[[teams]]
id = "support"
members = ["bob@acme.test", "ann@acme.test"]

[[pipelines]]
id = "support"
stages = [{ id = "new" }, { id = "waiting" }, { id = "done", closed = true }]

[[inboxes]]
address = "support@acme.test"
members = { teams = ["support"] }
tickets = { enabled = true, pipeline = "support" }
signature = "Acme Support"
fallback_team = "support"

[[inboxes]]
address = "billing@acme.test"
members = { users = ["carl@acme.test"] }

[[rules]]
name = "support mail"
inboxes = ["support@acme.test"]
actions = { team = "support", assign = "round_robin" }

# The private dovecot of a_member_connects_their_own_mailbox... is on loopback.
[security]
allow_private_mail_hosts = true
"#;

fn eml(to: &str, from: &str, subject: &str, id: &str, attachment: bool) -> String {
    let body = if attachment {
        format!(
            "Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello from {from}<script>alert(1)</script></p>\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfsj6IK\r\n--b1--\r\n"
        )
    } else {
        format!("Content-Type: text/plain; charset=utf-8\r\n\r\nHello from {from}, about {subject}.\r\n")
    };
    format!(
        "Delivered-To: {to}\r\nFrom: Customer <{from}>\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Tue, 24 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\n{body}"
    )
}

struct World {
    serve: Serve,
    google: MockGoogle,
    http: reqwest::Client,
    tokens: BTreeMap<&'static str, Option<String>>,
    support_conv: String,
    billing_conv: String,
    attachment: String,
}

async fn world() -> World {
    let data = tempfile::tempdir().unwrap();
    let ws = data.path().join("workspace.toml");
    std::fs::write(&ws, WORKSPACE).unwrap();
    mailroom_ok(data.path(), &["apply", ws.to_str().unwrap()]);
    let mail = data.path().join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let tag = unique("api");
    std::fs::write(
        mail.join("1.eml"),
        eml(
            "support@acme.test",
            "dana@customer.test",
            "Printer on fire",
            &format!("s1-{tag}@customer.test"),
            true,
        ),
    )
    .unwrap();
    std::fs::write(
        mail.join("2.eml"),
        eml(
            "billing@acme.test",
            "erin@payer.test",
            "Invoice 42 wrong",
            &format!("b1-{tag}@payer.test"),
            false,
        ),
    )
    .unwrap();
    mailroom_ok(data.path(), &["import", mail.to_str().unwrap()]);

    let google = MockGoogle::start("nobody@acme.test").await;
    let serve = Serve::start(
        data,
        &[
            ("MAILROOM_OIDC_ISSUER", ISSUER),
            ("MAILROOM_OIDC_AUDIENCE", AUDIENCE),
            ("MAILROOM_OIDC_JWKS_URL", &google.jwks_url()),
        ],
    );
    let now = chrono::Utc::now().timestamp();
    let oidc = |email: &str, iss: &str, exp: i64, other_key: bool| {
        google.sign(
            &json!({"iss": iss, "aud": AUDIENCE, "sub": email, "email": email, "email_verified": true, "iat": now, "exp": exp}),
            other_key,
        )
    };
    let dev = |email: &str| mailroom_tests::dev_token(serve.data(), email);
    let mut tokens = BTreeMap::new();
    tokens.insert("admin", Some(oidc(ADMIN, ISSUER, now + 600, false)));
    tokens.insert("member", Some(dev(MEMBER)));
    tokens.insert("outsider", Some(oidc(OUTSIDER, ISSUER, now + 600, false)));
    tokens.insert("none", None);
    tokens.insert("expired", Some(oidc(ADMIN, ISSUER, now - 3600, false)));
    tokens.insert("other-issuer", Some(oidc(ADMIN, "https://evil.test", now + 600, false)));
    tokens.insert("other-key", Some(oidc(ADMIN, ISSUER, now + 600, true)));

    let http = reqwest::Client::new();
    let mut w = World {
        serve,
        google,
        http,
        tokens,
        support_conv: String::new(),
        billing_conv: String::new(),
        attachment: String::new(),
    };
    let (st, list) = w.call("admin", Method::GET, "/conversations", None).await;
    assert_eq!(st, StatusCode::OK, "{list}\n{}", w.serve.log_tail());
    for c in list["items"].as_array().unwrap() {
        match c["inbox"].as_str().unwrap() {
            "support@acme.test" => w.support_conv = c["id"].as_str().unwrap().to_string(),
            "billing@acme.test" => w.billing_conv = c["id"].as_str().unwrap().to_string(),
            other => panic!("unexpected inbox {other}"),
        }
    }
    assert!(!w.support_conv.is_empty() && !w.billing_conv.is_empty(), "{list}");
    let (_, d) = w.call("admin", Method::GET, &format!("/conversations/{}", w.support_conv), None).await;
    // Each message says where it was logged (or why not).
    let log = &d["messages"][0]["log"];
    let from = d["messages"][0]["from"].as_str().unwrap().to_lowercase();
    assert_eq!((log["logged"].clone(), log["contacts"].clone()), (json!(true), json!([from])), "{log}");
    assert_eq!(log["mode"], "create_contacts", "{log}");
    w.attachment =
        d["messages"][0]["attachments"][0]["sha256"].as_str().expect("the PDF attachment").to_string();
    w
}

impl World {
    async fn call(&self, who: &str, method: Method, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let mut rq = self.http.request(method, self.serve.url(path));
        if let Some(Some(t)) = self.tokens.get(who) {
            rq = rq.bearer_auth(t);
        }
        if let Some(b) = body {
            rq = rq.json(b);
        }
        let resp = rq.send().await.unwrap();
        let st = resp.status();
        let text = resp.text().await.unwrap();
        (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// The concrete path and body for one operation of the document, on the identity's
/// targets: admin writes go to scratch objects so the matrix can run them all.
fn concrete(w: &World, method: &str, template: &str, conv: &str) -> (String, Option<Value>) {
    let path = template
        .replace(
            "{id}",
            if template.starts_with("/admin/teams") || template.starts_with("/admin/pipelines") {
                "scratch"
            } else if template.starts_with("/deals") {
                "no-such-deal"
            } else {
                conv
            },
        )
        .replace("{address}", if method == "get" { "support@acme.test" } else { "scratch@acme.test" })
        .replace(
            "{email}",
            if template.starts_with("/admin") { "temp@acme.test" } else { "dana@customer.test" },
        )
        .replace("{domain}", "customer.test")
        .replace("{run}", "no-such-run")
        .replace("{sha256}", &w.attachment);
    let body = match (method, template) {
        ("put", "/admin/workspace") => Some(json!({"__current__": true})),
        ("put", "/admin/inboxes/{address}") => {
            Some(json!({"address": "x", "members": {"users": ["bob@acme.test"]}}))
        }
        ("put", "/admin/inboxes/{address}/members") => Some(json!({"users": ["bob@acme.test"], "teams": []})),
        ("put", "/admin/inboxes/{address}/signature") => Some(json!({"signature": "Scratch team"})),
        ("put", "/admin/inboxes/{address}/tickets") => Some(json!({"enabled": true, "pipeline": "support"})),
        ("post", "/admin/inboxes/{address}/connect") => Some(json!({"provider": "gmail"})),
        // Nothing listens on port 1: the login check fails, and nothing is stored.
        ("post", "/admin/inboxes/{address}/imap") => {
            Some(json!({"host": "127.0.0.1", "port": 1, "security": "none", "user": "x", "password": "y"}))
        }
        ("put", "/admin/users/{email}") => Some(json!({"email": "x", "name": "Temp"})),
        ("put", "/admin/teams/{id}") => Some(json!({"id": "x", "members": []})),
        ("put", "/admin/pipelines/{id}") => Some(json!({"id": "x", "stages": [{"id": "one"}]})),
        ("put", "/admin/rules") => Some(
            json!([{"name": "support mail", "inboxes": ["support@acme.test"], "actions": {"team": "support", "assign": "round_robin"}}]),
        ),
        ("put", "/admin/sla") => Some(json!({"sla_policies": [], "calendars": []})),
        ("post", "/admin/replay") => Some(json!({"since": "2024-01-01", "dry_run": true})),
        ("post", "/me/inbox/connect") => Some(json!({"provider": "gmail"})),
        ("post", "/me/inbox/imap") => {
            Some(json!({"host": "127.0.0.1", "port": 1, "security": "none", "user": "x", "password": "y"}))
        }
        // Uploaded as a file (its bytes are the JSON).
        ("post", "/uploads") => Some(json!({"file": "contents"})),
        ("post", "/conversations/{id}/assignment") => Some(json!({"assignee": "bob@acme.test"})),
        ("post", "/conversations/{id}/snooze") => Some(json!({"until": null})),
        ("post", "/conversations/{id}/ticket/stage") => Some(json!({"stage": "waiting"})),
        ("post", "/conversations/{id}/ticket") => Some(json!({})),
        ("patch", "/me/settings") => Some(json!({"available": true})),
        ("post", "/conversations/{id}/comments") => Some(json!({"body": "looking into it @bob@acme.test"})),
        ("post", "/conversations/{id}/replies") => {
            Some(json!({"text": "We are on it.", "request_id": "matrix-1"}))
        }
        ("get" | "delete", _)
        | ("post", "/conversations/{id}/close" | "/conversations/{id}/reopen")
        | ("post", "/admin/inboxes/{address}/verify" | "/admin/forms/{id}/secret") => None,
        (m, t) => panic!("the permission matrix has no request body for {m} {t}: add one"),
    };
    (path, body)
}

/// What each identity must get from an operation.
fn expected(who: &str, method: &str, template: &str) -> &'static [u16] {
    let admin_only = template.starts_with("/admin");
    let conv_scoped = template.starts_with("/conversations/{id}");
    match who {
        "none" | "expired" | "other-issuer" | "other-key" => &[401],
        "admin" if template == "/deals/{id}" => &[404],
        "admin" if template == "/admin/inboxes/{address}/connect" => &[409], // no OAuth client configured
        "admin" if template == "/admin/inboxes/{address}/imap" => &[422],    // no IMAP server there
        // A run starts (and fails at its first step: the scratch inbox is not connected).
        "admin" if template == "/admin/inboxes/{address}/verify" => &[202],
        "admin" if template == "/admin/inboxes/{address}/verify/{run}" => &[404],
        "admin" if template == "/admin/forms/{id}/secret" => &[404], // this workspace has no form
        "admin" if method == "delete" => &[204],
        // Anyone's own mailbox: no OAuth client configured; nothing listens on port 1.
        _ if template == "/me/inbox/connect" => &[409],
        _ if template == "/me/inbox/imap" => &[422],
        _ if template == "/conversations/{id}/replies" && who != "outsider" => &[202],
        // Ticket automation already made the support conversation's ticket.
        _ if template == "/conversations/{id}/ticket" && who != "outsider" => &[409],
        "admin" => &[200, 201],
        _ if admin_only => &[403],
        "outsider" if conv_scoped => &[404],
        _ if template == "/deals/{id}" => &[404],
        _ => &[200, 201],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_matrix_over_every_endpoint() {
    let w = world().await;
    let (st, doc) = w.call("none", Method::GET, "/openapi.json", None).await;
    assert_eq!(st, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    let mut ops: Vec<(String, String)> = Vec::new();
    for (p, item) in paths {
        for m in ["get", "put", "patch", "post", "delete"] {
            if item.get(m).is_some() {
                ops.push((m.to_string(), p.clone()));
            }
        }
    }
    // Writes before deletes, so each delete has its scratch object.
    let rank = |m: &str| ["get", "put", "patch", "post", "delete"].iter().position(|x| *x == m).unwrap();
    ops.sort_by_key(|(m, p)| (rank(m), p.clone()));
    assert!(ops.len() >= 40, "only {} operations in /openapi.json", ops.len());
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for (m, template) in &ops {
        if template == "/attachments/{token}" {
            continue; // a capability URL: tested below
        }
        // Identities in an order that leaves the member's conversation actions last
        // (the outsider's must fail on a conversation in the state the member sees).
        for who in ["none", "expired", "other-issuer", "other-key", "outsider", "member", "admin"] {
            let (path, mut body) = concrete(&w, m, template, &w.support_conv);
            // One reply per identity: the same request id by another author is a conflict.
            if let Some(b) =
                body.as_mut().and_then(|b| b.as_object_mut()).filter(|b| b.contains_key("request_id"))
            {
                b.insert("request_id".into(), json!(format!("matrix-{who}")));
            }
            if body.as_ref().is_some_and(|b| b.get("__current__").is_some()) {
                body =
                    Some(w.call("admin", Method::GET, "/admin/workspace", None).await.1["workspace"].clone());
            }
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
            let (st, resp) = w.call(who, method, &path, body.as_ref()).await;
            let want = expected(who, m, template);
            table.push(format!("{:<7} {:<45} {:<13} {}", m, template, who, st.as_u16()));
            if !want.contains(&st.as_u16()) {
                failures.push(format!("{m} {path} as {who}: {st} (want {want:?}): {resp}"));
            }
            if st.as_u16() >= 400 {
                assert!(
                    resp.get("status").is_some() && resp.get("detail").is_some(),
                    "{m} {path} as {who}: not a problem document: {resp}"
                );
            }
        }
    }
    // What no route serves answers problem+json too: an unknown path (404) and a method
    // a path does not take (405).
    for (method, path, want) in [
        (Method::GET, "/no/such/route", 404),
        (Method::DELETE, "/openapi.json", 405),
        (Method::PATCH, "/reports/summary", 405),
    ] {
        let resp = w.http.request(method.clone(), w.serve.url(path)).send().await.unwrap();
        let st = resp.status().as_u16();
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if st != want || ct != "application/problem+json" || body["status"] != want {
            failures.push(format!("{method} {path}: {st} {ct} {body} (want {want} problem+json)"));
        }
    }
    println!("{}", table.join("\n"));
    println!("{} operations x 7 identities = {} requests", ops.len() - 1, table.len());
    assert!(
        failures.is_empty(),
        "{} unexpected answers:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        w.serve.log_tail()
    );
    drop(w.google);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_members_never_see_an_inbox() {
    let w = world().await;
    // The outsider's lists: only billing@, never support@, whatever the filter.
    for path in [
        "/conversations".to_string(),
        "/conversations?inbox=support@acme.test".into(),
        "/conversations?q=printer".into(),
        "/conversations?status=open&limit=100".into(),
        "/conversations?unassigned=false".into(),
        "/conversations?assignee=bob@acme.test".into(),
    ] {
        let (st, page) = w.call("outsider", Method::GET, &path, None).await;
        assert_eq!(st, StatusCode::OK, "{path}: {page}");
        let text = page.to_string();
        assert!(
            !text.contains("support@acme.test") && !text.contains(&w.support_conv),
            "{path} leaks: {page}"
        );
    }
    let (_, mine) = w.call("outsider", Method::GET, "/conversations", None).await;
    assert_eq!(mine["items"].as_array().unwrap().len(), 1);
    assert_eq!(mine["items"][0]["id"], w.billing_conv.as_str());
    let (_, inboxes) = w.call("outsider", Method::GET, "/inboxes", None).await;
    assert_eq!(
        inboxes,
        json!([{"address": "billing@acme.test", "type": "shared", "provider": "none", "owner": null, "signature": null, "connection": null}])
    );
    let (_, me) = w.call("outsider", Method::GET, "/me", None).await;
    assert_eq!(me["inboxes"], json!(["billing@acme.test"]));
    // The support conversation and its attachment are 404, like something that does not exist.
    let (st, body) =
        w.call("outsider", Method::GET, &format!("/conversations/{}", w.support_conv), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st2, body2) = w.call("outsider", Method::GET, "/conversations/c0000000000000000000", None).await;
    assert_eq!(st2, StatusCode::NOT_FOUND);
    assert_eq!(body["title"], body2["title"]);
    // The contact's timeline hides the support message; tickets and the report too.
    let (_, dana) = w.call("outsider", Method::GET, "/contacts/dana@customer.test", None).await;
    assert_eq!(dana["timeline"], json!([]), "{dana}");
    let (_, dana_member) = w.call("member", Method::GET, "/contacts/dana@customer.test", None).await;
    assert_eq!(dana_member["timeline"].as_array().unwrap().len(), 1, "{dana_member}");
    let (_, tickets) = w.call("outsider", Method::GET, "/tickets", None).await;
    assert_eq!(tickets["items"], json!([]), "{tickets}");
    let (_, tickets) = w.call("member", Method::GET, "/tickets", None).await;
    assert_eq!(tickets["items"].as_array().unwrap().len(), 1, "{tickets}");
    let (_, report) = w.call("outsider", Method::GET, "/reports/summary", None).await;
    assert!(!report.to_string().contains("support@acme.test"), "the report leaks support@: {report}");

    // The member sees it, with sanitised HTML and a working signed attachment link.
    let (st, d) = w.call("member", Method::GET, &format!("/conversations/{}", w.support_conv), None).await;
    assert_eq!(st, StatusCode::OK, "{d}");
    let html = d["messages"][0]["html"].as_str().unwrap();
    assert!(html.contains("Hello from") && !html.contains("<script"), "{html}");
    assert_eq!(d["ticket"]["pipeline"], "support");
    let (st, link) = w
        .call(
            "member",
            Method::GET,
            &format!("/conversations/{}/attachments/{}", w.support_conv, w.attachment),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{link}");
    let url = link["url"].as_str().unwrap();
    let resp = w.http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-disposition"], "attachment; filename=\"invoice.pdf\"");
    assert!(resp.bytes().await.unwrap().starts_with(b"%PDF"));
    // A tampered link is refused.
    let mut tampered = url.to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'a' { 'b' } else { 'a' });
    assert_eq!(w.http.get(&tampered).send().await.unwrap().status(), StatusCode::FORBIDDEN);
    // The outsider cannot even get a link for it.
    let (st, _) = w
        .call(
            "outsider",
            Method::GET,
            &format!("/conversations/{}/attachments/{}", w.support_conv, w.attachment),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // Assigning the support conversation to the outsider is refused: not a member.
    let (st, body) = w
        .call(
            "member",
            Method::POST,
            &format!("/conversations/{}/assignment", w.support_conv),
            Some(&json!({"assignee": OUTSIDER})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_actions_and_admin_edits() {
    let w = world().await;
    let conv = w.support_conv.clone();
    let path = |s: &str| format!("/conversations/{conv}{s}");
    // Move the ticket to a closed stage: the conversation closes; back out: it reopens.
    let (st, t) =
        w.call("member", Method::POST, &path("/ticket/stage"), Some(&json!({"stage": "done"}))).await;
    assert_eq!(st, StatusCode::OK, "{t}");
    assert_eq!(t["status"], "closed");
    let (_, d) = w.call("member", Method::GET, &path(""), None).await;
    assert_eq!(d["status"], "closed");
    let (st, body) =
        w.call("member", Method::POST, &path("/ticket/stage"), Some(&json!({"stage": "nope"}))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, t) =
        w.call("member", Method::POST, &path("/ticket/stage"), Some(&json!({"stage": "waiting"}))).await;
    assert_eq!(t["status"], "open");
    // Assign, unassign; filters follow.
    let (st, s) =
        w.call("member", Method::POST, &path("/assignment"), Some(&json!({"assignee": null}))).await;
    assert_eq!(st, StatusCode::OK, "{s}");
    let (_, un) = w.call("member", Method::GET, "/conversations?unassigned=true", None).await;
    assert_eq!(un["items"].as_array().unwrap().len(), 1, "{un}");
    let (st, _) = w
        .call("member", Method::POST, &path("/assignment"), Some(&json!({"assignee": "me@nowhere.test"})))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, s) =
        w.call("member", Method::POST, &path("/assignment"), Some(&json!({"assignee": MEMBER}))).await;
    assert_eq!(s["assignee"], MEMBER);
    let (_, mine) = w.call("member", Method::GET, "/conversations?assignee=me", None).await;
    assert_eq!(mine["items"][0]["id"], conv.as_str());
    // A comment with a mention; it shows in the detail, never as a message.
    let (st, c) = w
        .call(
            "member",
            Method::POST,
            &path("/comments"),
            Some(&json!({"body": "@bob@acme.test check the PDF"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    assert_eq!(c["mentions"], json!([MEMBER]));
    let (_, d) = w.call("member", Method::GET, &path(""), None).await;
    assert_eq!(d["comments"].as_array().unwrap().len(), 1);
    assert_eq!(d["messages"].as_array().unwrap().len(), 1);
    let kinds: Vec<&str> =
        d["events"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"conversation_closed") && kinds.contains(&"conversation_reopened"), "{kinds:?}");
    // Close and reopen directly.
    let (_, s) = w.call("member", Method::POST, &path("/close"), None).await;
    assert_eq!(s["status"], "closed");
    let (_, closed) = w.call("member", Method::GET, "/conversations?status=closed", None).await;
    assert_eq!(closed["items"].as_array().unwrap().len(), 1);
    let (_, s) = w.call("member", Method::POST, &path("/reopen"), None).await;
    assert_eq!(s["status"], "open");

    // Admin: an invalid change is refused with its errors and changes nothing.
    let (_, before) = w.call("admin", Method::GET, "/admin/workspace", None).await;
    let (st, body) = w
        .call(
            "admin",
            Method::PUT,
            "/admin/teams/ghosts",
            Some(&json!({"id": "ghosts", "members": ["nobody@acme.test"]})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["errors"][0].as_str().unwrap().contains("nobody@acme.test"), "{body}");
    let (_, after) = w.call("admin", Method::GET, "/admin/workspace", None).await;
    assert_eq!(before, after);
    // A stale If-Match is a conflict.
    let version = before["version"].as_u64().unwrap();
    let stale = w
        .http
        .put(w.serve.url("/admin/workspace"))
        .bearer_auth(w.tokens["admin"].as_ref().unwrap())
        .header("If-Match", (version - 1).to_string())
        .json(&before["workspace"])
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::CONFLICT);
    // Membership edits take effect at once: the outsider joins support@ and sees it.
    let (st, _) = w
        .call(
            "admin",
            Method::PUT,
            "/admin/inboxes/support@acme.test/members",
            Some(&json!({"users": [OUTSIDER], "teams": ["support"]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = w.call("outsider", Method::GET, &path(""), None).await;
    assert_eq!(st, StatusCode::OK);
    // Archiving billing@ hides it from its member; a deactivated user's token stops working.
    let (st, _) = w.call("admin", Method::DELETE, "/admin/inboxes/billing@acme.test", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (_, inboxes) = w.call("outsider", Method::GET, "/inboxes", None).await;
    assert_eq!(inboxes.as_array().unwrap().len(), 1, "{inboxes}");
    let (st, body) = w.call("admin", Method::DELETE, &format!("/admin/users/{MEMBER}"), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    let (st, body) = w.call("member", Method::GET, "/me", None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    let (st, _) = w.call("admin", Method::DELETE, &format!("/admin/users/{ADMIN}"), None).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_by_hand_for_conversations_automation_left_without_one() {
    let w = world().await;
    // billing@ has no ticket automation: its conversation has no ticket. Carl is its member.
    let path = |p: &str| format!("/conversations/{}{p}", w.billing_conv);
    let (st, d) = w.call("outsider", Method::GET, &path(""), None).await;
    assert_eq!((st, &d["ticket"]), (StatusCode::OK, &Value::Null), "{d}");

    for (body, why) in [
        (json!({"stage": "nope"}), "no such stage"),
        (json!({"pipeline": "sales"}), "no such pipeline"),
        (json!({"owner": "x"}), "unknown field"),
    ] {
        let (st, p) = w.call("outsider", Method::POST, &path("/ticket"), Some(&body)).await;
        assert!(st == StatusCode::UNPROCESSABLE_ENTITY || st == StatusCode::BAD_REQUEST, "{why}: {st} {p}");
        assert!(p["detail"].is_string(), "{why}: {p}");
    }
    let (_, d) = w.call("outsider", Method::GET, &path(""), None).await;
    assert_eq!(d["ticket"], Value::Null, "a refused request created a ticket: {d}");
    // Bob cannot see billing@: 404, as if it did not exist.
    let (st, _) = w.call("member", Method::POST, &path("/ticket"), Some(&json!({}))).await;
    assert_eq!(st, StatusCode::NOT_FOUND);

    // Defaults: the only pipeline, its first stage.
    let (st, t) = w.call("outsider", Method::POST, &path("/ticket"), Some(&json!({}))).await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    assert_eq!(
        (t["pipeline"].as_str(), t["stage"].as_str(), t["status"].as_str()),
        (Some("support"), Some("new"), Some("open")),
        "{t}"
    );
    let (st, p) =
        w.call("outsider", Method::POST, &path("/ticket"), Some(&json!({"stage": "waiting"}))).await;
    assert_eq!(st, StatusCode::CONFLICT, "one ticket per conversation: {p}");

    let (_, d) = w.call("outsider", Method::GET, &path(""), None).await;
    assert_eq!(d["ticket"]["id"], t["id"], "{d}");
    let events = d["events"].as_array().expect("events");
    let created: Vec<_> = events.iter().filter(|e| e["type"] == "ticket_created").collect();
    assert_eq!(created.len(), 1, "{events:?}");
    let (_, list) = w.call("outsider", Method::GET, "/tickets", None).await;
    assert!(list.to_string().contains(t["id"].as_str().unwrap()), "{list}");
    let (_, list) = w.call("member", Method::GET, "/tickets", None).await;
    assert!(!list.to_string().contains(t["id"].as_str().unwrap()), "bob sees billing's ticket: {list}");

    // It behaves like an automatic one: a closed stage closes the conversation.
    let (st, _) =
        w.call("outsider", Method::POST, &path("/ticket/stage"), Some(&json!({"stage": "done"}))).await;
    assert_eq!(st, StatusCode::OK);
    let (_, d) = w.call("outsider", Method::GET, &path(""), None).await;
    assert_eq!(
        (d["status"].as_str(), d["ticket"]["status"].as_str()),
        (Some("closed"), Some("closed")),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_changes_their_own_settings_and_nothing_else() {
    let w = world().await;
    let (st, mine) = w.call("member", Method::GET, "/me/settings", None).await;
    assert_eq!(st, StatusCode::OK, "{mine}");
    assert_eq!(mine["signature"], "Bob\nSupport");
    assert_eq!(
        (mine["available"].as_bool(), mine["notifications"]["mention"].as_str()),
        (Some(true), Some("email"))
    );

    let change = json!({"available": false, "signature": null, "notifications": {"mention": "none"}});
    let (st, after) = w.call("member", Method::PATCH, "/me/settings", Some(&change)).await;
    assert_eq!(st, StatusCode::OK, "{after}");
    let (_, mine) = w.call("member", Method::GET, "/me/settings", None).await;
    assert_eq!(mine, after);
    assert_eq!((mine["available"].as_bool(), &mine["signature"]), (Some(false), &Value::Null), "{mine}");
    assert_eq!(mine["notifications"]["mention"], "none");
    assert_eq!(mine["notifications"]["assigned"], "email", "a kind left out keeps its value");
    assert_eq!(mine["name"], "Bob Member", "a field left out keeps its value");

    // The workspace model the admin reads is what changed, for Bob only.
    let (_, ws) = w.call("admin", Method::GET, "/admin/workspace", None).await;
    let users = ws["workspace"]["users"].as_array().expect("users");
    let bob = users.iter().find(|u| u["email"] == MEMBER).expect("bob");
    assert_eq!(
        (bob["available"].as_bool(), bob["notifications"]["mention"].as_str()),
        (Some(false), Some("none")),
        "{bob}"
    );
    assert!(bob.get("signature").is_none_or(Value::is_null), "{bob}");
    assert_eq!(bob["role"], "agent");
    let carl = users.iter().find(|u| u["email"] == OUTSIDER).expect("carl");
    assert_eq!(carl["available"], true, "{carl}");

    // Nothing but those fields: no role, no teams; an empty name is refused.
    for (body, why) in [
        (json!({"role": "admin"}), "role"),
        (json!({"teams": ["support"]}), "teams"),
        (json!({"name": " "}), "empty name"),
    ] {
        let (st, p) = w.call("member", Method::PATCH, "/me/settings", Some(&body)).await;
        assert!(st == StatusCode::UNPROCESSABLE_ENTITY || st == StatusCode::BAD_REQUEST, "{why}: {st} {p}");
    }
    let (st, _) = w.call("member", Method::GET, "/admin/workspace", None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "bob is still an agent");
    // An admin changing their own settings keeps the admin role.
    let (st, p) = w.call("admin", Method::PATCH, "/me/settings", Some(&json!({"available": false}))).await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let (st, _) = w.call("admin", Method::GET, "/admin/workspace", None).await;
    assert_eq!(st, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_only_for_the_configured_origins() {
    let data = tempfile::tempdir().unwrap();
    let ws = data.path().join("workspace.toml");
    std::fs::write(&ws, WORKSPACE).unwrap();
    mailroom_ok(data.path(), &["apply", ws.to_str().unwrap()]);
    let serve =
        Serve::start(data, &[("MAILROOM_CORS_ORIGINS", "https://app.acme.test, http://localhost:5173")]);
    let token = mailroom_tests::dev_token(serve.data(), MEMBER);
    let http = reqwest::Client::new();
    let preflight = |origin: &str| {
        http.request(Method::OPTIONS, serve.url("/conversations"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "PATCH")
            .header("Access-Control-Request-Headers", "authorization, content-type, idempotency-key")
            .send()
    };
    let r = preflight("https://app.acme.test").await.unwrap();
    assert!(r.status().is_success(), "{}\n{}", r.status(), serve.log_tail());
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.acme.test");
    let methods = h["access-control-allow-methods"].to_str().unwrap().to_string();
    assert!(methods.contains("PATCH") && methods.contains("DELETE"), "{methods}");
    let headers = h["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(headers.contains("authorization") && headers.contains("idempotency-key"), "{headers}");

    // Another origin gets no permission; the server still answers same-origin callers.
    let r = preflight("https://evil.test").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none(), "{:?}", r.headers());
    let r = http
        .get(serve.url("/me"))
        .header("Origin", "http://localhost:5173")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["access-control-allow-origin"], "http://localhost:5173");
    let r = http
        .get(serve.url("/me"))
        .header("Origin", "https://evil.test")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "CORS is the browser's check, not an authorisation");
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // A malformed setting stops serve with a clear message instead of running without CORS.
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(mailroom_tests::bin("mailroom"))
        .args(["--data", data.path().to_str().unwrap(), "serve", "--port", "0"])
        .env("MAILROOM_CORS_ORIGINS", "https://app.acme.test/path")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MAILROOM_CORS_ORIGINS") && err.contains("is not an origin"), "{err}");
}

/// Issue 17, item 20: docs/api.md lists every operation the API serves, as `METHOD /path`,
/// and names none it does not serve (on 4490ca9 the replies endpoint was missing).
#[test]
fn api_docs_list_every_operation() {
    let data = tempfile::tempdir().unwrap();
    let doc: Value = serde_json::from_slice(&mailroom_ok(data.path(), &["openapi"])).unwrap();
    let text = std::fs::read_to_string(mailroom_tests::repo_root().join("docs/api.md")).unwrap();
    let mut served = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            served.insert(format!("{} {path}", method.to_uppercase()));
        }
    }
    let missing: Vec<&String> = served.iter().filter(|op| !text.contains(op.as_str())).collect();
    assert!(missing.is_empty(), "docs/api.md does not list {missing:?}");
    let re = regex_lite(&text);
    let unknown: Vec<String> =
        re.into_iter().filter(|op| !served.contains(op) && op != "GET /openapi.json").collect();
    assert!(unknown.is_empty(), "docs/api.md names operations the API does not serve: {unknown:?}");
}

/// Issue 24, item 7: every request and response body of /openapi.json has a type (a
/// schema with properties, a reference, a map or a list of those), not a bare `object`.
#[test]
fn openapi_has_no_untyped_body() {
    let data = tempfile::tempdir().unwrap();
    let doc: Value = serde_json::from_slice(&mailroom_ok(data.path(), &["openapi"])).unwrap();
    fn untyped(s: &Value) -> bool {
        if s.get("$ref").is_some() || s.get("allOf").is_some() || s.get("oneOf").is_some() {
            return false;
        }
        match s.get("type").and_then(Value::as_str) {
            Some("array") => s.get("items").is_none_or(untyped),
            Some("object") | None => s.get("properties").is_none() && s.get("additionalProperties").is_none(),
            Some(_) => false,
        }
    }
    let (mut bodies, mut bare) = (0, Vec::new());
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let mut contents = vec![("request".to_string(), &op["requestBody"]["content"])];
            for (code, r) in op["responses"].as_object().into_iter().flatten() {
                contents.push((code.clone(), &r["content"]));
            }
            for (what, content) in contents {
                for (ct, c) in content.as_object().into_iter().flatten() {
                    bodies += 1;
                    if untyped(&c["schema"]) {
                        bare.push(format!("{} {path} {what} {ct}", method.to_uppercase()));
                    }
                }
            }
        }
    }
    println!("{bodies} bodies in /openapi.json, {} untyped", bare.len());
    assert!(bodies > 100, "only {bodies} bodies: is the document complete?");
    assert!(bare.is_empty(), "{} untyped bodies:\n{}", bare.len(), bare.join("\n"));
}

/// Every `METHOD /path` written in backticks in a text.
fn regex_lite(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for span in text.split('`').skip(1).step_by(2) {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if let Some(path) = span.strip_prefix(method).and_then(|r| r.strip_prefix(' '))
                && path.starts_with('/')
                && !path.contains(' ')
            {
                out.push(format!("{method} {path}"));
            }
        }
    }
    out
}

/// A reply through the API with a file uploaded by `POST /uploads` (a non-ASCII name)
/// and an attachment of the conversation's own message, forwarded by its sha256: the
/// outbox entry lists both by sha256 (replies::* read the MIME back from each provider).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_carries_an_upload_and_a_forwarded_attachment() {
    let w = world().await;
    let csv = "Artikel;Preis\nÜbersetzung;12,50\n".as_bytes().to_vec();
    let resp = w
        .http
        .post(w.serve.url("/uploads?filename=Preis%C3%BCbersicht%202024.csv"))
        .bearer_auth(w.tokens["member"].clone().unwrap())
        .header("content-type", "text/csv; charset=utf-8")
        .body(csv.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let up: Value = resp.json().await.unwrap();
    assert_eq!(
        (up["name"].as_str(), up["content_type"].as_str()),
        (Some("Preisübersicht 2024.csv"), Some("text/csv"))
    );
    // Over the limit: refused before anything is stored.
    let big = w
        .http
        .post(w.serve.url("/uploads?filename=big.bin"))
        .bearer_auth(w.tokens["member"].clone().unwrap())
        .body(vec![0u8; mailroom_app::outbound::attach::MAX_FILE + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let body = json!({
        "text": "Both files attached.",
        "request_id": "attach-1",
        "attachments": [{"upload": up["id"]}, {"sha256": w.attachment}],
    });
    let (st, out) = w
        .call("member", Method::POST, &format!("/conversations/{}/replies", w.support_conv), Some(&body))
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{out}");
    let files = out["attachments"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{out}");
    assert_eq!(files[0]["sha256"], json!(mailroom_core::sha256(&csv).to_string()));
    assert_eq!(files[1]["sha256"], json!(w.attachment));
    // Someone else's upload, or a file that is not in the conversation: 422.
    for (who, att) in [("admin", json!({"upload": up["id"]})), ("member", json!({"sha256": "00".repeat(32)}))]
    {
        let body = json!({"text": "x", "request_id": format!("attach-{who}"), "attachments": [att]});
        let (st, out) = w
            .call(who, Method::POST, &format!("/conversations/{}/replies", w.support_conv), Some(&body))
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{who}: {out}");
    }
}

/// Issue 21: a member connects the mailbox of their own address over IMAP, without an
/// admin; its mail is theirs (the admin sees the inbox and its health, not its
/// conversations); a refused login adds no inbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_connects_their_own_mailbox_and_only_they_read_it() {
    let w = world().await;
    let dv = mailroom_tests::dovecot::Dovecot::start();
    let tag = unique("mine");
    dv.save(
        "INBOX",
        eml(MEMBER, "zoe@client.test", "Lunch next week", &format!("m1-{tag}@client.test"), false).as_bytes(),
    );
    let body = |password: &str| json!({"host": "127.0.0.1", "port": dv.port_tls, "security": "tls", "user": dv.user, "password": password, "ca_pem": dv.ca_pem()});
    // Someone else's mailbox login refused: nothing is added.
    let (st, out) = w.call("outsider", Method::POST, "/me/inbox/imap", Some(&body("wrong"))).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{out}");
    let (st, out) = w.call("member", Method::POST, "/me/inbox/imap", Some(&body(&dv.password))).await;
    assert_eq!(st, StatusCode::OK, "{out}\n{}", w.serve.log_tail());
    let (_, inboxes) = w.call("admin", Method::GET, "/admin/inboxes", None).await;
    let listed: Vec<&str> =
        inboxes.as_array().unwrap().iter().filter_map(|i| i["address"].as_str()).collect();
    assert!(listed.contains(&MEMBER) && !listed.contains(&OUTSIDER), "{listed:?}");
    let mine = inboxes.as_array().unwrap().iter().find(|i| i["address"] == MEMBER).unwrap();
    assert_eq!((mine["type"].as_str(), mine["owner"].as_str()), (Some("individual"), Some(MEMBER)), "{mine}");

    // One poll brings the message in.
    mailroom_ok(w.serve.data(), &["poll", "--once"]);
    let convs = |who: &'static str| {
        let w = &w;
        async move {
            let (st, list) = w.call(who, Method::GET, &format!("/conversations?inbox={MEMBER}"), None).await;
            assert_eq!(st, StatusCode::OK, "{list}");
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["subject"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(convs("member").await, ["Lunch next week"]);
    assert!(convs("admin").await.is_empty(), "an admin reads no one's own mailbox");
    let (_, seen) = w.call("admin", Method::GET, "/inboxes", None).await;
    assert!(
        seen.as_array().unwrap().iter().any(|i| i["address"] == MEMBER),
        "but sees that it exists: {seen}"
    );
}
