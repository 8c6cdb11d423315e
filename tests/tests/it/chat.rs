//! Live chat over the raw WebSockets of the real `mailroom serve` (docs/chat.md): the
//! widget's origin allow-list, rate limits per client address (a flood from 127.0.0.2
//! leaves a visitor on 127.0.0.3 alone), permissions on the agents' socket (a user outside
//! the inbox hears nothing of it), typing both ways, an agent's reply live while the
//! visitor is connected and by email through Gmail once they left, and the visitor's
//! emailed answer threading into the same conversation on their contact with channel chat.

use futures::{SinkExt, StreamExt};
use mailroom_tests::mock_google::MockGoogle;
use mailroom_tests::repo_root;
use mailroom_tests::serve::{ACME_ADMIN, Serve, connect_mailbox};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

pub const SALES: &str = "sales@acme-corp.example";
pub const MEMBER: &str = "james.oconnor@acme-corp.example";
pub const OUTSIDER: &str = "tom.becker@acme-corp.example";
const TEAMMATE: &str = "elena.petrova@acme-corp.example";
pub const SITE: &str = "http://127.0.0.1:9";

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// The acme workspace with a chat widget on sales@ that allows `origin`.
pub fn workspace_with_widget(dir: &std::path::Path, origin: &str) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(repo_root().join("examples/acme-corp.toml")).unwrap();
    text.push_str(&format!(
        "\n[[chat_widgets]]\nid = \"site\"\ninbox = \"{SALES}\"\ngreeting = \"Hi, this is Acme sales.\"\n\
         colour = \"#1f4fd1\"\nallowed_origins = [\"{origin}\"]\n\n\
         # A widget whose hours never open: always away.\n\
         [[calendars]]\nid = \"never-open\"\ntime_zone = \"UTC\"\n\n\
         [[chat_widgets]]\nid = \"closed\"\ninbox = \"{SALES}\"\nbusiness_hours = \"never-open\"\n\
         allowed_origins = [\"{origin}\"]\n"
    ));
    let path = dir.join("acme-chat.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// A WebSocket from the loopback address `source` (127.0.0.x), with these headers.
async fn open(url: &str, source: &str, headers: &[(&str, &str)]) -> Result<Ws, tungstenite::Error> {
    let mut req = url.into_client_request()?;
    for (k, v) in headers {
        req.headers_mut()
            .insert(tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let port = url::Url::parse(url).unwrap().port().unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let stream = sock.connect(format!("127.0.0.1:{port}").parse().unwrap()).await.unwrap();
    Ok(tokio_tungstenite::client_async(req, stream).await?.0)
}

fn ws_url(serve: &Serve, path: &str) -> String {
    format!("{}{path}", serve.base.replacen("http://", "ws://", 1))
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next frame matching `pred` within `max`, skipping others.
async fn until(ws: &mut Ws, max: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
    let end = Instant::now() + max;
    loop {
        let left = end.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if pred(&v) {
                    return Some(v);
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(_) | Err(_) => return None,
        }
    }
}

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |v| v["type"] == kind
}

/// A visitor with a session: connected from `source`, identified as `email`.
async fn visitor(serve: &Serve, source: &str, email: &str) -> (Ws, Value) {
    let mut ws = open(&ws_url(serve, "/chat/v1/ws?widget=site"), source, &[("origin", SITE)]).await.unwrap();
    send(&mut ws, json!({"type": "hello"})).await;
    let hi = until(&mut ws, Duration::from_secs(5), is("need_identity")).await.expect("need_identity");
    assert_eq!(hi["greeting"], "Hi, this is Acme sales.");
    send(&mut ws, json!({"type": "start", "name": "Vera Visitor", "email": email})).await;
    let ready = until(&mut ws, Duration::from_secs(5), is("ready")).await.expect("ready");
    (ws, ready)
}

/// The session cookie of `user`, through a one-time sign-in link.
pub async fn session_cookie(serve: &Serve, user: &str) -> String {
    let link = String::from_utf8(mailroom_tests::mailroom_ok(
        serve.data(),
        &["login-link", user, "--url", &serve.base],
    ))
    .unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http.get(link.trim()).send().await.unwrap();
    let c = r.headers().get("set-cookie").expect("the sign-in link sets a cookie").to_str().unwrap();
    c.split(';').next().unwrap().to_string()
}

async fn agent(serve: &Serve, user: &str) -> Ws {
    let cookie = session_cookie(serve, user).await;
    let mut ws =
        open(&ws_url(serve, "/app/live"), "127.0.0.1", &[("origin", &serve.base), ("cookie", &cookie)])
            .await
            .unwrap();
    until(&mut ws, Duration::from_secs(5), is("hello")).await.expect("hello");
    ws
}

fn status_of(e: tungstenite::Error) -> u16 {
    match e {
        tungstenite::Error::Http(r) => r.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

async fn conversation_of(serve: &Serve, message_id: &str) -> Value {
    let t = Instant::now();
    loop {
        let all = mailroom_tests::mailroom_json(serve.data(), &["conversations", "--json"]);
        let found = all
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["message_ids"].as_array().into_iter().flatten().any(|m| m == message_id));
        if let Some(c) = found {
            return c.clone();
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "no conversation holds {message_id}:\n{all:#}\n{}",
            serve.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_sockets_keep_their_rules_and_a_reply_goes_live_or_by_email() {
    let google = MockGoogle::start(SALES).await;
    let data = tempfile::tempdir().unwrap();
    let ws_file = workspace_with_widget(data.path(), SITE);
    mailroom_tests::mailroom_ok(data.path(), &["apply", ws_file.to_str().unwrap()]);
    let env = google.serve_env();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let serve = Serve::start(data, &env_refs);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    connect_mailbox(&http, &serve.base, serve.data(), ACME_ADMIN, "gmail", SALES, || serve.log_tail()).await;

    // The widget script is served to any site, as JavaScript.
    let js = http.get(serve.url("/chat/v1/widget.js")).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(js.text().await.unwrap().contains("attachShadow"));

    // Refused before the upgrade: a site the widget does not allow, no origin, no widget.
    let url = ws_url(&serve, "/chat/v1/ws?widget=site");
    let bad = open(&url, "127.0.0.1", &[("origin", "http://evil.example")]).await.unwrap_err();
    assert_eq!(status_of(bad), 403);
    assert_eq!(status_of(open(&url, "127.0.0.1", &[]).await.unwrap_err()), 403);
    let unknown = open(&ws_url(&serve, "/chat/v1/ws?widget=nope"), "127.0.0.1", &[("origin", SITE)]).await;
    assert_eq!(status_of(unknown.unwrap_err()), 404);

    // Agents: a member of sales@ and a user outside it, both on every inbox they see.
    let mut member = agent(&serve, MEMBER).await;
    let mut outsider = agent(&serve, OUTSIDER).await;
    send(&mut member, json!({"type": "subscribe", "inbox": "all"})).await;
    until(&mut member, Duration::from_secs(5), is("subscribed")).await.expect("member subscribed");
    send(&mut outsider, json!({"type": "subscribe", "inbox": SALES})).await;
    let refused = until(&mut outsider, Duration::from_secs(5), is("error")).await.expect("outsider refused");
    assert_eq!(refused["code"], "forbidden");
    send(&mut outsider, json!({"type": "subscribe", "inbox": "all"})).await;
    until(&mut outsider, Duration::from_secs(5), is("subscribed")).await.expect("outsider subscribed");
    // The agents' socket takes only our own pages.
    let cookie = session_cookie(&serve, MEMBER).await;
    let cross =
        open(&ws_url(&serve, "/app/live"), "127.0.0.1", &[("origin", SITE), ("cookie", &cookie)]).await;
    assert_eq!(status_of(cross.unwrap_err()), 403);
    let anon = open(&ws_url(&serve, "/app/live"), "127.0.0.1", &[("origin", &serve.base)]).await;
    assert_eq!(status_of(anon.unwrap_err()), 401);

    // Outside the widget's business hours the team is away, though a member is online.
    let mut closed =
        open(&ws_url(&serve, "/chat/v1/ws?widget=closed"), "127.0.0.1", &[("origin", SITE)]).await.unwrap();
    send(&mut closed, json!({"type": "hello"})).await;
    let away = until(&mut closed, Duration::from_secs(5), is("need_identity")).await.expect("need_identity");
    assert_eq!(away["agents_online"], false, "{away}");
    drop(closed);

    // A visitor writes; the member hears of it within two seconds, the outsider never.
    let (mut vera, ready) = visitor(&serve, "127.0.0.3", "vera@visitor.example").await;
    assert_eq!(ready["agents_online"], true, "a member of sales@ is connected");
    let token = ready["token"].as_str().unwrap().to_string();
    let sent_at = Instant::now();
    send(
        &mut vera,
        json!({"type": "message", "text": "Do you ship to Norway?", "page": "http://127.0.0.1:9/pricing"}),
    )
    .await;
    let ack = until(&mut vera, Duration::from_secs(5), is("ack")).await.expect("ack");
    let first_id = ack["message_id"].as_str().unwrap().to_string();
    let ev =
        until(&mut member, Duration::from_secs(2), |v| v["type"] == "event" && v["kind"] == "message_logged")
            .await
            .unwrap_or_else(|| panic!("the member heard nothing within 2 s\n{}", serve.log_tail()));
    println!("visitor -> agent event: {:?}", sent_at.elapsed());
    assert_eq!(ev["inbox"], SALES);
    let conv = ev["conversation"].as_str().unwrap().to_string();

    // A teammate has the conversation open; the member opening it too is announced to them.
    let mut teammate = agent(&serve, TEAMMATE).await;
    send(&mut teammate, json!({"type": "subscribe", "inbox": "all", "conversation": conv})).await;
    until(&mut teammate, Duration::from_secs(5), is("subscribed")).await.expect("teammate subscribed");
    // Typing, both ways.
    send(&mut member, json!({"type": "subscribe", "inbox": "all", "conversation": conv})).await;
    until(&mut member, Duration::from_secs(5), is("subscribed"))
        .await
        .expect("subscribed to the conversation");
    let seen = until(&mut teammate, Duration::from_secs(2), is("presence")).await.expect("presence");
    assert_eq!(seen["name"], "James O'Connor", "{seen}");
    send(&mut vera, json!({"type": "typing"})).await;
    let typing = until(&mut member, Duration::from_secs(2), is("typing"))
        .await
        .expect("visitor typing reaches the agent");
    assert_eq!(typing["visitor"], true);
    assert_eq!(typing["conversation"], conv.as_str());
    send(&mut member, json!({"type": "typing", "conversation": conv})).await;
    let typing = until(&mut vera, Duration::from_secs(2), is("typing"))
        .await
        .expect("agent typing reaches the visitor");
    assert_eq!(typing["name"], "James O'Connor");
    // The outsider may not even say they type there.
    send(&mut outsider, json!({"type": "subscribe", "inbox": "all", "conversation": conv})).await;
    let refused = until(&mut outsider, Duration::from_secs(5), is("error")).await.expect("outsider refused");
    assert_eq!(refused["code"], "forbidden");

    // A message over the cap is refused and not stored.
    send(&mut vera, json!({"type": "message", "text": "x".repeat(4001)})).await;
    assert_eq!(until(&mut vera, Duration::from_secs(5), is("error")).await.unwrap()["code"], "too_long");

    // A flood from 127.0.0.2: the first messages pass, the rest are refused, and a visitor
    // on 127.0.0.3 is not slowed down meanwhile.
    let (mut flood, _) = visitor(&serve, "127.0.0.2", "flood@spam.example").await;
    for i in 0..40 {
        send(&mut flood, json!({"type": "message", "text": format!("spam {i}")})).await;
    }
    let (mut acked, mut limited, mut flood_first) = (0, 0, None);
    while acked + limited < 40 {
        let v = until(&mut flood, Duration::from_secs(10), |v| v["type"] == "ack" || v["type"] == "error")
            .await
            .expect("an answer to each flood message");
        if v["type"] == "ack" {
            acked += 1;
            flood_first.get_or_insert(v["message_id"].as_str().unwrap().to_string());
        } else {
            assert_eq!(v["code"], "rate_limited");
            limited += 1;
        }
    }
    // The session's burst is ten; one more may pass if the run took over three seconds.
    assert!((10..=11).contains(&acked) && acked + limited == 40, "{acked} passed, {limited} refused");
    let t = Instant::now();
    loop {
        let c = conversation_of(&serve, flood_first.as_deref().unwrap()).await;
        let n = c["message_ids"].as_array().unwrap().len();
        assert!(n <= acked, "{n} flood messages stored, only {acked} passed");
        if n == acked {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{n} of {acked} flood messages stored");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    send(&mut vera, json!({"type": "message", "text": "And to Sweden?"})).await;
    until(&mut vera, Duration::from_secs(5), is("ack")).await.expect("the other visitor is not throttled");

    // The agent's reply while the visitor is connected: live, not by email.
    let api_token = mailroom_tests::dev_token(serve.data(), MEMBER);
    let reply = |text: &str, rid: &str| {
        http.post(serve.url(&format!("/conversations/{conv}/replies")))
            .bearer_auth(&api_token)
            .json(&json!({"request_id": rid, "text": text}))
            .send()
    };
    let t = Instant::now();
    assert_eq!(reply("Yes, we ship to Norway and Sweden.", "chat-live-1").await.unwrap().status(), 202);
    let live = until(&mut vera, Duration::from_secs(2), is("message"))
        .await
        .unwrap_or_else(|| panic!("the reply did not reach the visitor within 2 s\n{}", serve.log_tail()));
    println!("agent reply -> visitor: {:?}", t.elapsed());
    assert_eq!(live["from"], "agent");
    assert!(live["text"].as_str().unwrap().starts_with("Yes, we ship to Norway and Sweden."), "{live}");
    assert!(google.sent().is_empty(), "a live reply is not emailed");

    // The outsider heard nothing of sales@ all along.
    assert!(
        until(&mut outsider, Duration::from_millis(1500), is("event")).await.is_none(),
        "an agent outside sales@ got an event of it"
    );

    // The visitor reloads: the same token gives the history back.
    drop(vera);
    let mut again = open(&url, "127.0.0.3", &[("origin", SITE)]).await.unwrap();
    send(&mut again, json!({"type": "resume", "token": token})).await;
    let back = until(&mut again, Duration::from_secs(5), is("ready")).await.expect("resumed");
    let texts: Vec<&str> =
        back["history"].as_array().unwrap().iter().filter_map(|l| l["text"].as_str()).collect();
    assert!(texts.len() >= 3 && texts[0] == "Do you ship to Norway?", "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("Yes, we ship")), "{texts:?}");
    // A token changed by one character, or meant for another widget, resumes nothing.
    let forged = format!("{}0", &token[..token.len() - 1]);
    send(&mut again, json!({"type": "resume", "token": forged})).await;
    until(&mut again, Duration::from_secs(5), is("need_identity")).await.expect("a forged token is refused");
    drop(again);

    // Gone: the next reply goes by email, through Gmail, threaded on the chat.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        reply("We will send the shipping table by email.", "chat-away-1").await.unwrap().status(),
        202
    );
    let t = Instant::now();
    let mail = loop {
        if let Some(m) = google.sent().into_iter().next() {
            break m;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no email reply\n{}", serve.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let parsed = mailroom_core::understand(&mail).unwrap().message;
    assert_eq!(parsed.to.first().map(|a| a.email.as_str()), Some("vera@visitor.example"));
    assert!(parsed.in_reply_to.iter().any(|r| r.contains("chat.")), "{:?}", parsed.in_reply_to);
    // The visitor answers by email: it threads into the chat's conversation.
    let answer = format!(
        "From: Vera Visitor <vera@visitor.example>\r\nTo: {SALES}\r\nSubject: Re: {}\r\nMessage-ID: <vera-answer@visitor.example>\r\n\
         In-Reply-To: <{}>\r\nReferences: <{}>\r\nDate: {}\r\n\r\nThanks, received.\r\n",
        parsed.subject,
        parsed.message_id,
        parsed.message_id,
        chrono::Utc::now().to_rfc2822()
    );
    let r = http
        .post(serve.url(&format!("/ingest?inbox={SALES}")))
        .bearer_auth(mailroom_tests::INGEST_TOKEN)
        .header("content-type", "message/rfc822")
        .body(answer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let c = conversation_of(&serve, "vera-answer@visitor.example").await;
    assert_eq!(c["id"], conv.as_str(), "the emailed answer is in the chat's conversation: {c:#}");
    let c1 = conversation_of(&serve, &first_id).await;
    assert_eq!(c1["id"], conv.as_str());
    assert_eq!(c["contact_email"], "vera@visitor.example", "{c:#}");
    let channels: Vec<&str> =
        c["messages"].as_array().unwrap().iter().filter_map(|m| m["channel"].as_str()).collect();
    assert_eq!(
        channels.iter().filter(|c| **c == "chat").count(),
        3,
        "two visitor lines and the live reply: {channels:?}"
    );
    assert!(channels.contains(&"email"), "the emailed reply and answer: {channels:?}");

    // Whoever holds the chat's token reads the chat, never the mail of the address they
    // typed: the emailed reply and the emailed answer stay out of the history.
    let mut back = open(&url, "127.0.0.3", &[("origin", SITE)]).await.unwrap();
    send(&mut back, json!({"type": "resume", "token": token})).await;
    let resumed = until(&mut back, Duration::from_secs(5), is("ready")).await.expect("resumed again");
    let texts: Vec<&str> =
        resumed["history"].as_array().unwrap().iter().filter_map(|l| l["text"].as_str()).collect();
    assert!(texts.iter().any(|t| t.starts_with("Yes, we ship")), "{texts:?}");
    assert!(
        !texts.iter().any(|t| t.contains("shipping table") || t.contains("Thanks, received")),
        "{texts:?}"
    );
    drop(back);

    // The report counts chat as a channel, its first answer in seconds, and the flood's
    // unanswered chat as missed.
    let report = mailroom_tests::mailroom_json(serve.data(), &["report", "--json"]);
    assert_eq!(report["volume"]["by_channel"]["chat"], 2, "{:#}", report["volume"]);
    let frt = &report["first_response_by_channel"]["chat"];
    assert_eq!(frt["count"], 1, "{frt:#}");
    assert!(frt["mean_s"].as_f64().unwrap() < 60.0, "a live answer is seconds away: {frt:#}");
    assert_eq!(report["missed_chats"], 1, "the flood's chat was never answered");
}

/// A shop's page on its own loopback origin, embedding the widget from `mailroom serve`.
async fn shop_site(listener: tokio::net::TcpListener, mailroom: String) {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Acme shop</title></head>\
         <body><main><h1>Acme shop</h1><p>Pricing for teams.</p></main>\
         <script src=\"{mailroom}/chat/v1/widget.js\" data-widget=\"site\" async></script></body></html>"
    );
    let app = axum::Router::new().fallback(move || {
        let page = page.clone();
        async move { axum::response::Html(page) }
    });
    axum::serve(listener, app).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_and_an_agent_chat_live_in_two_browsers() {
    let browser = repo_root().join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").exists()
            && browser.join("node_modules/axe-core").exists(),
        "playwright-core or axe-core is missing: run `npm ci` in tests/browser (scripts/test.sh does)"
    );
    let site = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", site.local_addr().unwrap());
    let data = tempfile::tempdir().unwrap();
    let ws_file = workspace_with_widget(data.path(), &origin);
    mailroom_tests::mailroom_ok(data.path(), &["apply", ws_file.to_str().unwrap()]);
    let serve = Serve::start(data, &[]);
    tokio::spawn(shop_site(site, serve.base.clone()));

    let link = String::from_utf8(mailroom_tests::mailroom_ok(
        serve.data(),
        &["login-link", MEMBER, "--url", &serve.base],
    ))
    .unwrap();
    let admin_link = String::from_utf8(mailroom_tests::mailroom_ok(
        serve.data(),
        &["login-link", "maria.keller@acme-corp.example", "--url", &serve.base],
    ))
    .unwrap();
    let shots = std::env::var("MAILROOM_SCREENSHOTS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| serve.data().join("screenshots"));
    let cfg = json!({
        "base": serve.base,
        "site": format!("{origin}/pricing"),
        "siteOrigin": origin,
        "adminLink": admin_link.trim(),
        "greeting": "Hello from Acme sales: ask us anything.",
        "agentLink": link.trim(),
        "visitorName": "Olga Shopper",
        "visitorEmail": "olga@shopper.example",
        "firstLine": "Is the Team plan billed monthly?",
        "replyText": "Yes, monthly or yearly, as you prefer.",
        "shots": shots,
    });
    let cfg_path = serve.data().join("chat-test.json");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let out = tokio::process::Command::new("node")
        .current_dir(&browser)
        .arg("chat.mjs")
        .arg(&cfg_path)
        .output()
        .await
        .expect("node is missing: install Node.js 20 or later");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("chat.mjs: {stdout}");
    assert!(
        out.status.success(),
        "the two-browser chat failed:\n{}\n{stdout}\nserve's log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        serve.log_tail()
    );
    // The conversation is on the visitor's contact, every line of it on channel chat.
    let all = mailroom_tests::mailroom_json(serve.data(), &["conversations", "--json"]);
    let c = all
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["contact_email"] == "olga@shopper.example")
        .unwrap_or_else(|| panic!("no conversation on the visitor's contact: {all:#}"));
    assert_eq!(c["inbox"], SALES);
    let channels: Vec<&str> =
        c["messages"].as_array().unwrap().iter().filter_map(|m| m["channel"].as_str()).collect();
    assert!(channels.len() >= 2 && channels.iter().all(|c| *c == "chat"), "{channels:?}");
    let contacts = mailroom_tests::mailroom_json(serve.data(), &["contacts", "--json"]);
    assert!(contacts.to_string().contains("olga@shopper.example"), "the visitor is a contact: {contacts}");
}
