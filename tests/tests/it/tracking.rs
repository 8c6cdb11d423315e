//! Open and click tracking through the real `mailroom serve` binary (docs/tracking.md):
//! HTML tracked with `add_trackers` and the workspace key of serve's data directory, then
//! fetched over loopback the way mail clients, proxies and scanners fetch it. What serve
//! stored is read beside it (SQLite in WAL mode) through `track::activity` and the
//! contact timeline items.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{Duration as ChronoDuration, Utc};
use mailroom_app::Ports;
use mailroom_app::outbound::track::{self, TrackActivity};
use mailroom_store::table::{Key, Query};
use mailroom_tests::{bin, repo_root, wait_for_port};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const INBOX: &str = "sales@acme-corp.example";
const CUSTOMER: &str = "ann.lee@customer.example";
const CHROME: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
const READER_IP: &str = "203.0.113.9";

/// `mailroom serve` on its own data directory (the acme workspace applied); killed on drop.
struct Serve {
    child: Child,
    data: tempfile::TempDir,
    base: String,
    log: PathBuf,
    ports: Ports,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    fn start() -> Serve {
        let data = tempfile::tempdir().unwrap();
        let out = Command::new(bin("mailroom"))
            .arg("--data")
            .arg(data.path())
            .arg("apply")
            .arg(repo_root().join("examples/acme-corp.toml"))
            .output()
            .unwrap();
        assert!(out.status.success(), "mailroom apply: {}", String::from_utf8_lossy(&out.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = data.path().join("serve.log");
        let child = Command::new(bin("mailroom"))
            .arg("--data")
            .arg(data.path())
            .args(["serve", "--port", &port.to_string()])
            .env("RUST_LOG", "info")
            .env("MAILROOM_INGEST_TOKEN", mailroom_tests::INGEST_TOKEN)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        wait_for_port(port, Duration::from_secs(20));
        // The same data directory, so the same signing key as serve's.
        let ports = Ports::embedded(data.path()).unwrap();
        Serve { child, data, base: format!("http://127.0.0.1:{port}"), log, ports }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// HTML tracked for `message_id`, sent `ago` before now.
    fn track(&self, message_id: &str, html: &str, ago: ChronoDuration) -> String {
        let _ = &self.data;
        track::add_trackers_at(
            &self.ports.signer,
            &self.base,
            message_id,
            &[CUSTOMER.to_string()],
            html,
            Utc::now() - ago,
        )
    }

    /// Polls the stored activity until `done` holds (serve commits within ~10 ms).
    async fn activity_until(
        &self,
        message_id: &str,
        what: &str,
        done: impl Fn(&TrackActivity) -> bool,
    ) -> TrackActivity {
        let t = Instant::now();
        loop {
            let a = track::activity(&self.ports, message_id).await.unwrap();
            if done(&a) {
                return a;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "{what}: not after 10 s; activity {a:#?}\nserve's log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The customer's timeline entries written by tracking, oldest first.
    async fn tracking_timeline(&self) -> Vec<serde_json::Map<String, Value>> {
        let items = self.ports.table.query_all(Query::new(format!("timeline#{CUSTOMER}"))).await.unwrap();
        items
            .into_iter()
            .filter(|i| matches!(i.get("type").and_then(Value::as_str), Some("email_open" | "email_click")))
            .collect()
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The URLs of `attr="..."` attributes in `html` that start with `prefix`.
fn urls(html: &str, prefix: &str) -> Vec<String> {
    html.match_indices(prefix)
        .map(|(i, _)| {
            let rest = &html[i..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

async fn get(url: &str, ua: Option<&str>, ip: &str) -> reqwest::Response {
    let mut r = http().get(url).header("x-forwarded-for", ip);
    if let Some(ua) = ua {
        r = r.header("user-agent", ua);
    }
    r.send().await.unwrap()
}

fn header(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_string())
}

/// Records a message we sent to the customer through serve's pipeline, so that the
/// timeline entries can name its conversation and subject.
async fn send_copy(serve: &Serve, message_id: &str, subject: &str) -> String {
    let raw = format!(
        "From: Sales <{INBOX}>\r\nTo: Ann Lee <{CUSTOMER}>\r\nSubject: {subject}\r\nDate: {}\r\nMessage-ID: <{message_id}>\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Our offer</p>\r\n",
        Utc::now().to_rfc2822()
    );
    let r = http()
        .post(format!("{}/ingest?inbox={INBOX}&folder=sent", serve.base))
        .bearer_auth(mailroom_tests::INGEST_TOKEN)
        .body(raw)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "ingest: {} {}", r.status(), r.text().await.unwrap());
    let key = Key::new(format!("msg#{message_id}"), "msg");
    let t = Instant::now();
    loop {
        if let Some(m) = serve.ports.table.get(&key).await.unwrap()
            && let Some(c) = m.get("conversation").and_then(Value::as_str)
        {
            return c.to_string();
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the sent copy was not recorded:\n{}",
            serve.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const OFFER: &str = r#"<html><body><p>Hello Ann,</p><p>See <a href="https://acme.example/pricing?plan=pro&amp;ref=mail">our pricing</a> and <a href="https://acme.example/docs">the docs</a>.</p></body></html>"#;

#[tokio::test]
async fn pixel_counts_an_open_and_the_click_goes_exactly_where_it_was_signed_for() {
    let serve = Serve::start();
    let mid = "offer-1@acme-corp.example";
    let conversation = send_copy(&serve, mid, "Your offer").await;
    let html = serve.track(mid, OFFER, ChronoDuration::hours(1));
    let pixels = urls(&html, &format!("{}/t/o/", serve.base));
    let clicks = urls(&html, &format!("{}/t/c/", serve.base));
    assert_eq!((pixels.len(), clicks.len()), (1, 2), "{html}");
    assert_eq!(track::strip_trackers(&serve.ports.signer, &serve.base, mid, &html), OFFER);

    let r = get(&pixels[0], Some(CHROME), READER_IP).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(header(&r, "content-type").as_deref(), Some("image/gif"));
    assert_eq!(header(&r, "cache-control").as_deref(), Some("no-store, private"));
    let gif = r.bytes().await.unwrap();
    assert_eq!(gif.len(), 43);
    assert!(gif.starts_with(b"GIF89a"));

    let r = get(&clicks[0], Some(CHROME), READER_IP).await;
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(header(&r, "location").as_deref(), Some("https://acme.example/pricing?plan=pro&ref=mail"));

    let a = serve.activity_until(mid, "one open and one click", |a| a.opens == 1 && a.clicks == 1).await;
    assert_eq!((a.machine_opens, a.machine_clicks), (0, 0), "{a:#?}");
    assert!(a.first_open_at.is_some() && a.last_open_at == a.first_open_at && a.last_click_at.is_some());
    let kinds: Vec<&str> = a.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["click", "open"], "newest first");
    assert_eq!(a.events[0].url.as_deref(), Some("https://acme.example/pricing?plan=pro&ref=mail"));
    assert!(
        a.events.iter().all(|e| e.ip_prefix.as_deref() == Some("203.0.113.0/24") && e.user_agent == CHROME)
    );

    // The contact's timeline shows both, on the message's conversation.
    let tl = serve.tracking_timeline().await;
    let types: Vec<&str> = tl.iter().map(|i| i["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["email_open", "email_click"], "{tl:#?}");
    for i in &tl {
        assert_eq!(i["message_id"], mid);
        assert_eq!(i["conversation"], conversation.as_str());
        assert_eq!(i["subject"], "Your offer");
    }
    assert_eq!(tl[1]["url"], "https://acme.example/pricing?plan=pro&ref=mail");
}

#[tokio::test]
async fn tampered_unsigned_and_open_redirect_tokens_are_refused() {
    let serve = Serve::start();
    let mid = "offer-2@acme-corp.example";
    let html = serve.track(mid, OFFER, ChronoDuration::hours(1));
    let click_prefix = format!("{}/t/c/", serve.base);
    let pixel_prefix = format!("{}/t/o/", serve.base);
    let click = urls(&html, &click_prefix).remove(0);
    let pixel = urls(&html, &pixel_prefix).remove(0);
    let token = click.strip_prefix(&click_prefix).unwrap();
    let (payload, sig) = token.rsplit_once('.').unwrap();
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let reencode = |c: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).unwrap());
    claims["h"] = "https://evil.example/phish".into();
    let other_url = reencode(&claims);
    claims["h"] = "https://acme.example/pricing?plan=pro&amp;ref=mail".into();
    claims["m"] = "someone-else@acme-corp.example".into();
    let other_message = reencode(&claims);
    let flipped: String = {
        let mut s = sig.to_string();
        let c = if s.ends_with('0') { "1" } else { "0" };
        s.replace_range(s.len() - 1.., c);
        s
    };
    let pixel_token = pixel.strip_prefix(&pixel_prefix).unwrap();

    let refused = [
        format!("{click_prefix}{other_url}.{sig}"),
        format!("{click_prefix}{other_message}.{sig}"),
        format!("{click_prefix}{payload}.{flipped}"),
        format!("{click_prefix}{payload}"),
        format!("{click_prefix}{payload}."),
        format!("{click_prefix}not-a-token"),
        format!("{click_prefix}{}", "A".repeat(9000)),
        // Open redirect attempts: a valid token with another URL appended.
        format!("{click}https://evil.example/"),
        format!("{click}%2F%2Fevil.example"),
        format!("{click}/https://evil.example/"),
        format!("{}/t/c/", serve.base),
        // A pixel token is not a click token, and the reverse.
        format!("{click_prefix}{pixel_token}"),
        format!("{pixel_prefix}{token}"),
        format!("{pixel_prefix}{pixel_token}x"),
    ];
    for url in &refused {
        let r = get(url, Some(CHROME), READER_IP).await;
        let loc = header(&r, "location");
        assert_eq!(r.status().as_u16(), 403, "{url}");
        assert_eq!(loc, None, "{url} redirected");
        assert_eq!(header(&r, "content-type").as_deref(), Some("application/problem+json"), "{url}");
    }
    let a = track::activity(&serve.ports, mid).await.unwrap();
    assert_eq!(
        (a.opens, a.clicks, a.machine_opens, a.machine_clicks, a.events.len()),
        (0, 0, 0, 0, 0),
        "{a:#?}"
    );
    let a = track::activity(&serve.ports, "someone-else@acme-corp.example").await.unwrap();
    assert!(a.events.is_empty());

    // A query string is ignored: the redirect still goes to the signed URL only.
    let r = get(&format!("{click}?url=https://evil.example/"), Some(CHROME), READER_IP).await;
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(header(&r, "location").as_deref(), Some("https://acme.example/pricing?plan=pro&ref=mail"));
    serve.activity_until(mid, "the one valid click", |a| a.clicks == 1).await;
}

#[tokio::test]
async fn scanner_bursts_heads_and_agents_are_machine_clicks() {
    let serve = Serve::start();
    let links = r#"<body><a href="https://a.example/1">1</a> <a href="https://a.example/2">2</a> <a href="https://a.example/3">3</a> <a href="https://a.example/4">4</a></body>"#;

    // Every link of a message fetched within a second, with a browser's user agent: a
    // scanner detonating the links. The first click looked human until the second came.
    let burst = "burst@acme-corp.example";
    let html = serve.track(burst, links, ChronoDuration::hours(1));
    let clicks = urls(&html, &format!("{}/t/c/", serve.base));
    assert_eq!(clicks.len(), 4);
    let started = Instant::now();
    for (n, c) in clicks.iter().enumerate() {
        let r = get(c, Some(CHROME), "198.51.100.7").await;
        assert_eq!(r.status().as_u16(), 302);
        assert_eq!(header(&r, "location"), Some(format!("https://a.example/{}", n + 1)));
    }
    assert!(started.elapsed() < Duration::from_secs(1), "the burst took {:?}", started.elapsed());
    let a = serve.activity_until(burst, "four machine clicks", |a| a.machine_clicks == 4).await;
    assert_eq!(a.clicks, 0, "{a:#?}");
    assert!(
        a.events.iter().all(|e| e.kind == "machine_click" && e.reason.as_deref() == Some("burst")),
        "{a:#?}"
    );

    // A security gateway's user agent, and HEAD requests: one link each, still redirected.
    let scanned = "scanned@acme-corp.example";
    let html = serve.track(scanned, links, ChronoDuration::hours(1));
    let clicks = urls(&html, &format!("{}/t/c/", serve.base));
    let r = get(&clicks[0], Some("Mimecast-URL-Protect/1.0"), "198.51.100.8").await;
    assert_eq!(r.status().as_u16(), 302);
    let r = http().head(&clicks[1]).header("user-agent", CHROME).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(header(&r, "location").as_deref(), Some("https://a.example/2"));
    let a = serve.activity_until(scanned, "two machine clicks", |a| a.machine_clicks == 2).await;
    assert_eq!(a.clicks, 0, "{a:#?}");
    let mut reasons: Vec<String> = a.events.iter().filter_map(|e| e.reason.clone()).collect();
    reasons.sort();
    // Two different links within 2 s is also a burst, but each was a machine already.
    assert_eq!(reasons, ["head", "scanner:mimecast"], "{a:#?}");

    // A click seconds after sending: a scanner on delivery.
    let fresh = "fresh@acme-corp.example";
    let html = serve.track(fresh, links, ChronoDuration::zero());
    let r = get(&urls(&html, &format!("{}/t/c/", serve.base))[0], Some(CHROME), READER_IP).await;
    assert_eq!(r.status().as_u16(), 302);
    let a = serve.activity_until(fresh, "a too-soon click", |a| a.machine_clicks == 1).await;
    assert_eq!((a.clicks, a.events[0].reason.as_deref()), (0, Some("too_soon")));

    // The control: a reader clicking one link of an hour-old message is a click.
    let read = "read@acme-corp.example";
    let html = serve.track(read, links, ChronoDuration::hours(1));
    let r = get(&urls(&html, &format!("{}/t/c/", serve.base))[2], Some(CHROME), READER_IP).await;
    assert_eq!(r.status().as_u16(), 302);
    let a = serve.activity_until(read, "a human click", |a| a.clicks == 1).await;
    assert_eq!(a.machine_clicks, 0);

    // Only the reader's click reached the contact's timeline.
    let tl = serve.tracking_timeline().await;
    assert_eq!(tl.len(), 1, "{tl:#?}");
    assert_eq!((tl[0]["type"].as_str(), tl[0]["message_id"].as_str()), (Some("email_click"), Some(read)));
}

#[tokio::test]
async fn privacy_proxy_opens_are_classified() {
    let serve = Serve::start();
    let mid = "proxied@acme-corp.example";
    let html = serve.track(mid, OFFER, ChronoDuration::hours(1));
    let pixel = urls(&html, &format!("{}/t/o/", serve.base)).remove(0);
    let safari = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)";
    let google = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
    for (ua, ip) in [
        (Some(safari), "17.58.101.4"),       // Apple MPP egress
        (Some("Mozilla/5.0"), "104.28.1.9"), // Apple MPP's bare user agent
        (None, READER_IP),                   // no user agent at all
        (Some(google), "66.249.84.3"),       // Gmail's image proxy: a real open
    ] {
        let r = get(&pixel, ua, ip).await;
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(r.bytes().await.unwrap().len(), 43);
    }
    let r = http().head(&pixel).header("user-agent", CHROME).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let a = serve.activity_until(mid, "five hits", |a| a.opens + a.machine_opens == 5).await;
    assert_eq!((a.opens, a.machine_opens), (1, 4), "{a:#?}");
    let mut got: Vec<(String, Option<String>, Option<String>)> =
        a.events.iter().map(|e| (e.kind.clone(), e.reason.clone(), e.via.clone())).collect();
    got.sort();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        got,
        [
            ("machine_open".into(), s("apple_mpp"), None),
            ("machine_open".into(), s("apple_mpp"), None),
            ("machine_open".into(), s("empty_user_agent"), None),
            ("machine_open".into(), s("head"), None),
            ("open".into(), None, s("proxy")),
        ]
    );
    let apple = a.events.iter().find(|e| e.ip_prefix.as_deref() == Some("17.58.101.0/24"));
    assert!(apple.is_some_and(|e| e.kind == "machine_open"), "{a:#?}");
    let tl = serve.tracking_timeline().await;
    assert_eq!(tl.len(), 1, "{tl:#?}");
    assert_eq!((tl[0]["type"].as_str(), tl[0]["via"].as_str()), (Some("email_open"), Some("proxy")));
}
