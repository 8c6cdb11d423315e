//! The web inbox end to end: the real `mailroom serve` with sales@ connected to the Gmail
//! mock, an SMTP sink for notifications, a trap server that counts any request a hostile
//! message manages to make, and headless Chromium walking the golden path
//! (tests/browser/inbox.mjs, axe-core on every page). What the browser cannot see is
//! checked here: the reply Gmail was asked to send (threaded, with the signatures), the
//! mention's notification email, and that the trap heard nothing.

use mailroom_tests::mock_google::MockGoogle;
use mailroom_tests::repo_root;
use mailroom_tests::serve::{ACME_ADMIN, Serve, connect_mailbox};
use mailroom_tests::smtp_sink::SmtpSink;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const SALES: &str = "sales@acme-corp.example";
const AGENT: &str = "james.oconnor@acme-corp.example";
const TEAMMATE: &str = "elena.petrova@acme-corp.example";
const OUTSIDER: &str = "tom.becker@acme-corp.example";
const QUOTE_ID: &str = "<quote-40-seats@globex.example>";

fn mail(id: &str, from: &str, subject: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nTo: Acme Sales <{SALES}>\r\nSubject: {subject}\r\nMessage-ID: {id}\r\nDate: {}\r\n\
         MIME-Version: 1.0\r\nContent-Type: {content_type}; charset=utf-8\r\n\r\n{body}\r\n",
        chrono::Utc::now().to_rfc2822()
    )
    .into_bytes()
}

/// Everything a message might try in a browser, aimed at the trap.
fn hostile(trap: &str) -> Vec<u8> {
    let html = format!(
        "<html><head><meta http-equiv=\"refresh\" content=\"0;url={trap}/refresh\">\
         <style>body {{ background: url({trap}/css-bg) }}</style>\
         <link rel=\"stylesheet\" href=\"{trap}/sheet.css\"></head>\
         <body onload=\"alert('onload')\"><p>Pay the overdue hostile invoice now.</p>\
         <script>alert('script')</script><img src=\"x\" onerror=\"alert('onerror')\">\
         <img src=\"{trap}/pixel.gif\" width=\"1\" height=\"1\">\
         <a href=\"javascript:alert('link')\">click</a>\
         <a href=\"data:text/html,<script>alert('data')</script>\">data link</a>\
         <form action=\"{trap}/steal\" method=\"post\"><input name=\"password\"><button>Log in</button></form>\
         <iframe src=\"{trap}/frame\"></iframe><object data=\"{trap}/object\"></object>\
         <svg><script>alert('svg')</script></svg></body></html>"
    );
    mail(
        "<hostile-1@evil.example>",
        "\"<script>alert('name')</script>\" <billing@evil.example>",
        "Overdue hostile invoice <img src=x onerror=alert('subject')>",
        "text/html",
        &html,
    )
}

/// A message of about 6 MB of nested markup.
fn huge() -> Vec<u8> {
    let mut html = String::from("<html><body><p>An enormous newsletter.</p>");
    for i in 0..60_000 {
        html.push_str(&format!("<div class=\"c{i}\"><span>row {i}</span><b>bold</b></div>\r\n"));
    }
    html.push_str("</body></html>");
    mail("<huge-1@bulk.example>", "Bulk Sender <news@bulk.example>", "Enormous catalogue", "text/html", &html)
}

/// The acme workspace with nobody assigned automatically in sales (the rules route there
/// without assigning, the team has no fallback assignment): the agent finds the quote
/// among the unassigned.
fn workspace_without_sales_assignment(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(repo_root().join("examples/acme-corp.toml")).unwrap();
    let rule = "actions = { team = \"sales\", assign = \"round_robin\" }";
    let team = "members = [\"james.oconnor@acme-corp.example\", \"elena.petrova@acme-corp.example\"]\n\
                # Conversations routed here without an assignment of their own (inbox fallback).\n\
                assign = \"round_robin\"";
    assert!(text.contains(rule) && text.contains(team), "examples/acme-corp.toml changed: update this test");
    let text = text.replace(rule, "actions = { team = \"sales\" }").replace(
        team,
        "members = [\"james.oconnor@acme-corp.example\", \"elena.petrova@acme-corp.example\"]",
    );
    let path = dir.join("acme-unassigned.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A loopback HTTP server that only counts what reaches it.
async fn trap() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            "caught"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits)
}

fn header<'a>(raw: &'a str, name: &str) -> Option<&'a str> {
    raw.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

async fn wait_for<T>(what: &str, serve: &Serve, max: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t.elapsed() < max, "{what}: not after {max:?}; serve's log:\n{}", serve.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn login_link(serve: &Serve, user: &str) -> String {
    let out = mailroom_tests::mailroom_ok(serve.data(), &["login-link", user, "--url", &serve.base]);
    String::from_utf8(out).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_works_a_conversation_in_the_browser_and_hostile_mail_stays_inert() {
    let browser = repo_root().join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists()
            && browser.join("node_modules/axe-core").exists(),
        "playwright-core or axe-core is missing: run `npm ci` in tests/browser (scripts/test.sh does)"
    );
    let (trap_url, trap_hits) = trap().await;
    let google = MockGoogle::start(SALES).await;
    google.add_message(
        &mail(
            QUOTE_ID,
            "Carla Jones <carla.jones@globex.example>",
            "Quote for 40 seats",
            "text/plain",
            "Hello, could you send a quote for 40 seats of the Team plan?\r\nCarla",
        ),
        &["INBOX"],
    );
    google.add_message(
        &mail(
            "<renewal-1@initech.example>",
            "Bill Lumbergh <bill@initech.example>",
            "Renewal date",
            "text/plain",
            "When is our renewal due?",
        ),
        &["INBOX"],
    );
    google.add_message(&hostile(&trap_url), &["INBOX"]);
    google.add_message(&huge(), &["INBOX"]);
    let smtp = SmtpSink::start();

    let data = tempfile::tempdir().unwrap();
    let ws = workspace_without_sales_assignment(data.path());
    mailroom_tests::mailroom_ok(data.path(), &["apply", ws.to_str().unwrap()]);
    let mut env = google.serve_env();
    env.extend([
        ("MAILROOM_BACKFILL_DAYS".to_string(), "14".to_string()),
        ("MAILROOM_EVENTS_RELAY_SECONDS".to_string(), "1".to_string()),
        ("MAILROOM_NOTIFY_SMTP_URL".to_string(), format!("smtp://127.0.0.1:{}", smtp.port())),
        ("MAILROOM_NOTIFY_FROM".to_string(), "mailroom@acme-corp.example".to_string()),
    ]);
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let serve = Serve::start(data, &env_refs);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    connect_mailbox(&http, &serve.base, serve.data(), ACME_ADMIN, "gmail", SALES, || serve.log_tail()).await;
    wait_for("the four messages listed", &serve, Duration::from_secs(60), || {
        let v = mailroom_tests::mailroom_json(serve.data(), &["conversations", "--json"]);
        (v.as_array().map_or(0, Vec::len) >= 4).then_some(())
    })
    .await;

    let shots = std::env::var("MAILROOM_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| serve.data().join("screenshots"));
    let reply_text = "Hi Carla, the quote for 40 seats is attached to your account page.";
    let customer_reply_text = "Thanks, we accept the quote.";
    let customer_reply = format!(
        "From: Carla Jones <carla.jones@globex.example>\r\nTo: {SALES}\r\nSubject: Re: Quote for 40 seats\r\n\
         Message-ID: <quote-accept@globex.example>\r\nIn-Reply-To: {QUOTE_ID}\r\nReferences: {QUOTE_ID}\r\n\
         Date: __DATE__\r\n\r\n{customer_reply_text}\r\n"
    );
    let cfg = serde_json::json!({
        "base": serve.base,
        "agentLink": login_link(&serve, AGENT),
        "agentLinkAgain": login_link(&serve, AGENT),
        "hugeWord": "enormous",
        "outsiderLink": login_link(&serve, OUTSIDER),
        "quoteWord": "seats",
        "quoteSubject": "Quote for 40 seats",
        "hostileWord": "hostile",
        "replyText": reply_text,
        "signature": "Account Executive | Acme Corp",
        "teammate": TEAMMATE,
        "stage": "proposal",
        "ingestToken": mailroom_tests::INGEST_TOKEN,
        "inbox": SALES,
        "customerReply": customer_reply,
        "customerReplyText": customer_reply_text,
        "shots": shots,
    });
    // Every line of a message's handling names it (docs/runbook.md): the route stage's
    // line for the quote carries its Message-ID.
    wait_for("the route stage's line names the message", &serve, Duration::from_secs(20), || {
        let log = std::fs::read_to_string(serve.data().join("serve.log")).unwrap_or_default();
        log.lines()
            // (Field names may be set off with ANSI codes: the parts are matched apart.)
            .any(|l| {
                l.contains("conversation routed")
                    && l.contains("correlation_id")
                    && l.contains("quote-40-seats@globex.example")
            })
            .then_some(())
    })
    .await;
    let cfg_path = serve.data().join("inbox-test.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let out = tokio::process::Command::new("node")
        .current_dir(&browser)
        .arg("inbox.mjs")
        .arg(&cfg_path)
        .output()
        .await
        .expect("node is missing: install Node.js 20 or later");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("inbox.mjs: {stdout}");
    if !out.status.success() {
        for c in mailroom_tests::mailroom_json(serve.data(), &["conversations", "--json"])
            .as_array()
            .into_iter()
            .flatten()
        {
            println!("conversation {} {} {} {}", c["subject"], c["status"], c["assignee"], c["team"]);
        }
    }
    assert!(
        out.status.success(),
        "the browser walk failed:\n{}\n{stdout}\nserve's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        serve.log_tail()
    );
    println!("screenshots: {}", shots.display());

    // The reply went out through Gmail, threaded under the customer's message, with the
    // agent's and the inbox's signatures.
    let sent = wait_for("the reply sent through Gmail", &serve, Duration::from_secs(30), || {
        google.sent().into_iter().next()
    })
    .await;
    let raw = String::from_utf8_lossy(&sent).to_string();
    assert_eq!(header(&raw, "In-Reply-To"), Some(QUOTE_ID), "{raw}");
    assert!(header(&raw, "References").is_some_and(|r| r.contains(QUOTE_ID)), "{raw}");
    assert!(header(&raw, "To").is_some_and(|t| t.contains("carla.jones@globex.example")), "{raw}");
    let body = mailroom_core::understand(&sent).unwrap().message.text;
    assert!(body.contains("the quote for 40 seats"), "{body}");
    assert!(body.contains("Account Executive | Acme Corp") && body.contains("Acme Sales"), "{body}");
    assert_eq!(google.sent().len(), 1, "one reply, sent once");

    // The mention reached the teammate by email.
    let mails = smtp.wait_for(1, Duration::from_secs(20));
    let mention = mails
        .iter()
        .map(|m| String::from_utf8_lossy(m).to_string())
        .find(|m| header(m, "X-Mailroom-Notification") == Some("mention"))
        .unwrap_or_else(|| panic!("no mention notification among {} mails", mails.len()));
    assert!(header(&mention, "To").is_some_and(|t| t.contains(TEAMMATE)), "{mention}");

    // Nothing in the hostile message made a request.
    assert_eq!(trap_hits.load(Ordering::SeqCst), 0, "the hostile message reached the trap");
}

/// Browser sign-in through the OIDC provider (the Cognito hosted UI in AWS), over plain
/// HTTP: start, the provider's redirect back with a code, the callback exchanging it with
/// the PKCE verifier and checking the ID token, a session; a callback replayed or with a
/// forged state signs nobody in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_sign_in_through_the_oidc_provider() {
    use mailroom_tests::mock_google::{CLIENT_ID, CLIENT_SECRET};
    let idp = MockGoogle::start(AGENT).await;
    let data = tempfile::tempdir().unwrap();
    mailroom_tests::mailroom_ok(
        data.path(),
        &["apply", repo_root().join("examples/acme-corp.toml").to_str().unwrap()],
    );
    let (auth, token, jwks) = (idp.auth_url(), idp.token_url(), idp.jwks_url());
    let serve = Serve::start(
        data,
        &[
            ("MAILROOM_OIDC_ISSUER", &idp.url),
            ("MAILROOM_OIDC_AUDIENCE", CLIENT_ID),
            ("MAILROOM_OIDC_JWKS_URL", &jwks),
            ("MAILROOM_WEB_OIDC_AUTHORIZE_URL", &auth),
            ("MAILROOM_WEB_OIDC_TOKEN_URL", &token),
            ("MAILROOM_WEB_OIDC_CLIENT_SECRET", CLIENT_SECRET),
        ],
    );
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let location = |r: &reqwest::Response| r.headers()["location"].to_str().unwrap().to_string();

    let page = http.get(serve.url("/app/signin?next=/app/c/x")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("/app/auth/start?next="), "the sign-in page offers the provider: {page}");
    let r = http.get(serve.url("/app/auth/start?next=%2Fapp%2F%3Fstatus%3Dclosed")).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", serve.log_tail());
    let to_idp = location(&r);
    assert!(to_idp.starts_with(&auth) && to_idp.contains("code_challenge_method=S256"), "{to_idp}");
    assert!(
        to_idp.contains(&format!("redirect_uri={}", urlencode(&serve.url("/app/auth/callback")))),
        "{to_idp}"
    );
    let back = location(&http.get(&to_idp).send().await.unwrap());
    assert!(back.starts_with(&serve.url("/app/auth/callback?")), "{back}");

    let r = http.get(&back).send().await.unwrap();
    assert!(r.status().is_redirection(), "callback: {}\n{}", r.status(), serve.log_tail());
    assert_eq!(location(&r), "/app/?status=closed", "back where the user was going");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    assert!(cookie.starts_with("mr_session="), "{cookie}");
    let inbox = http.get(serve.url("/app/")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(inbox.status().as_u16(), 200);
    assert!(inbox.text().await.unwrap().contains("James O"), "signed in as the token's user");

    // The same callback again (the state is single use), and a forged state.
    let again = http.get(&back).send().await.unwrap();
    assert_eq!(location(&again), "/app/signin?message=provider", "a replayed callback signs nobody in");
    assert!(again.headers().get("set-cookie").is_none());
    let forged = back.replace("state=", "state=0");
    let r = http.get(&forged).send().await.unwrap();
    assert_eq!(location(&r), "/app/signin?message=provider");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
