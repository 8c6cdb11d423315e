//! Open and click tracking of the mail we send (docs/tracking.md).
//!
//! `add_trackers` puts a 1x1 pixel `{base}/t/o/{token}` before `</body>` and rewrites
//! every `http(s)` link to `{base}/t/c/{token}`. A token is `{payload}.{sig}`: the payload
//! is base64url JSON (message id, recipients, send time and, for a click, the link as
//! written in the HTML), the signature HMAC-SHA256 over the payload with the workspace key
//! and a purpose per kind. The redirect goes to the signed link and nowhere else, so a
//! tracking URL is never an open redirect; an altered or unsigned token is a 403.
//!
//! Each hit is classified human or machine (Apple Mail Privacy Protection, security
//! scanners, HEAD requests, clicks right after sending, bursts of clicks on several
//! links) and stored as an event, counted on the message's tracking summary and, for
//! human opens and clicks, logged on the recipients' contact timelines.

use crate::keys;
use crate::runtime::http::problem;
use crate::runtime::ports::Ports;
use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use mailroom_core::ThreadSigner;
use mailroom_store::StoreError;
use mailroom_store::table::{Cond, Item, Key, Query, SkCond, TransactOp, Update};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

const OPEN_PURPOSE: &str = "track-open";
const CLICK_PURPOSE: &str = "track-click";
/// A token longer than this is refused unread (a real one is well under 2 KB).
const MAX_TOKEN: usize = 8 * 1024;
/// More recipients than this share one pixel anonymously: a mass mail, where naming
/// every recipient in every link would bloat the message for no useful attribution.
const MAX_RECIPIENTS: usize = 10;
/// Clicks on different links of one message closer together than this are a scanner.
const BURST_WINDOW_MS: i64 = 2_000;
/// A click this soon after sending is a scanner on delivery, not a reader.
const TOO_SOON_SECONDS: i64 = 10;
/// Events `activity` returns.
const RECENT_EVENTS: u32 = 50;

/// The transparent 1x1 GIF (43 bytes).
pub const PIXEL_GIF: [u8; 43] = [
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0xff, 0xff, 0xff, 0x00,
    0x00, 0x00, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00,
    0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b,
];

/// What a token carries (signed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackToken {
    /// Message-ID of the sent message.
    #[serde(rename = "m")]
    pub message_id: String,
    /// The recipients an open or click is attributed to (empty for a mass mail).
    #[serde(rename = "r", default)]
    pub recipients: Vec<String>,
    /// When the trackers were added (unix seconds): the send time.
    #[serde(rename = "t")]
    pub sent_at: i64,
    /// A click's link exactly as written in the HTML `href` (entities and all).
    #[serde(rename = "h", default, skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
}

impl TrackToken {
    /// Where a click goes: the signed `href` with its HTML character references decoded
    /// (what a browser would have followed), and only ever an http(s) URL.
    pub fn target(&self) -> Option<String> {
        let url = decode_entities(self.href.as_deref()?.trim());
        let lower = url.to_ascii_lowercase();
        let ok = (lower.starts_with("http://") || lower.starts_with("https://"))
            && !url.chars().any(|c| c.is_control());
        ok.then_some(url)
    }
}

fn encode_token(signer: &ThreadSigner, purpose: &str, t: &TrackToken) -> String {
    // Serialising a struct of strings and numbers cannot fail.
    let json = serde_json::to_vec(t).unwrap_or_default();
    let payload = URL_SAFE_NO_PAD.encode(json);
    let sig = signer.sign(purpose, &payload);
    format!("{payload}.{sig}")
}

/// Checks the signature, then decodes: nothing of an unsigned token is looked at.
pub fn verify_token(signer: &ThreadSigner, purpose: &str, token: &str) -> Option<TrackToken> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let (payload, sig) = token.rsplit_once('.')?;
    if payload.is_empty() || !signer.verify(purpose, payload, sig) {
        return None;
    }
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

fn settings<'h>() -> lol_html::RewriteStrSettings<'h, 'static> {
    // Mail HTML is often sloppy; strict mode would refuse some of it.
    lol_html::RewriteStrSettings::new().with_strict(false).with_enable_esi_tags(false)
}

/// Adds the open pixel and rewrites the links of an HTML body, signed for `message_id`.
/// Call it on the HTML part before the MIME is built (and long before any DKIM signing).
/// `base_url` is the public URL the `track` routes are served under.
///
/// One pixel per message: the same HTML goes to every recipient, so an open cannot tell
/// them apart. The token names up to 10 recipients and an open or click is logged on each
/// of their timelines; beyond 10 it names none and is only counted on the message.
pub fn add_trackers(
    signer: &ThreadSigner,
    base_url: &str,
    message_id: &str,
    recipients: &[String],
    html: &str,
) -> String {
    add_trackers_at(signer, base_url, message_id, recipients, html, Utc::now())
}

/// `add_trackers` with the send time given (tests, and a send that was composed earlier).
pub fn add_trackers_at(
    signer: &ThreadSigner,
    base_url: &str,
    message_id: &str,
    recipients: &[String],
    html: &str,
    sent_at: DateTime<Utc>,
) -> String {
    use lol_html::html_content::ContentType;
    let base = base_url.trim_end_matches('/').to_string();
    let recipients: Vec<String> = if recipients.len() > MAX_RECIPIENTS {
        vec![]
    } else {
        recipients.iter().map(|r| r.trim().to_lowercase()).collect()
    };
    let token = TrackToken {
        message_id: message_id.to_string(),
        recipients,
        sent_at: sent_at.timestamp(),
        href: None,
    };
    let pixel = format!(
        r#"<img src="{base}/t/o/{}" width="1" height="1" alt="" style="border:0;width:1px;height:1px">"#,
        encode_token(signer, OPEN_PURPOSE, &token)
    );
    let own = format!("{base}/t/");
    let placed = Rc::new(Cell::new(false));
    let (placed_body, placed_end, pixel_body) = (placed.clone(), placed.clone(), pixel.clone());
    let settings = settings()
        .append_element_content_handler(lol_html::element!("a[href]", |el| {
            let Some(href) = el.get_attribute("href") else { return Ok(()) };
            let h = href.trim().to_ascii_lowercase();
            if !(h.starts_with("http://") || h.starts_with("https://")) || href.trim().starts_with(&own) {
                return Ok(());
            }
            let t = TrackToken { href: Some(href), ..token.clone() };
            el.set_attribute("href", &format!("{base}/t/c/{}", encode_token(signer, CLICK_PURPOSE, &t)))?;
            Ok(())
        }))
        .append_element_content_handler(lol_html::element!("body", move |el| {
            let (placed, pixel) = (placed_body.clone(), pixel_body.clone());
            el.on_end_tag(lol_html::end_tag!(move |end| {
                if !placed.replace(true) {
                    end.before(&pixel, ContentType::Html);
                }
                Ok(())
            }))
        }))
        // No `</body>`: the pixel goes at the very end.
        .append_document_content_handler(lol_html::end!(move |end| {
            if !placed_end.replace(true) {
                end.append(&pixel, ContentType::Html);
            }
            Ok(())
        }));
    match lol_html::rewrite_str(html, settings) {
        Ok(out) => out,
        Err(e) => {
            // Untracked mail is better than no mail.
            tracing::warn!(message_id, error = %e, "could not add trackers; sending the HTML untracked");
            html.to_string()
        }
    }
}

/// Removes our pixel and restores the original links, for showing a message we sent in
/// our own UI (the sender must never trigger their own pixel). Only a click link whose
/// token carries our signature *for this message* (`message_id`) is restored: anyone can
/// write a `/t/c/...` link into a mail, and what it claims to point at is believed only
/// when we signed it. The caller shows the result through the sanitiser like any other
/// mail HTML (`mailroom_core::html::sanitize`). The result equals the HTML given to
/// `add_trackers` when its tags are written plainly (double-quoted attributes, one space
/// between them); otherwise it differs only in that spacing and quoting.
pub fn strip_trackers(signer: &ThreadSigner, base_url: &str, message_id: &str, html: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let (open, click) = (format!("{base}/t/o/"), format!("{base}/t/c/"));
    let ours =
        |token: &str| verify_token(signer, CLICK_PURPOSE, token).filter(|t| t.message_id == message_id);
    let settings = settings()
        .append_element_content_handler(lol_html::element!("img[src]", |el| {
            if el.get_attribute("src").is_some_and(|s| s.starts_with(&open)) {
                el.remove();
            }
            Ok(())
        }))
        .append_element_content_handler(lol_html::element!("a[href]", |el| {
            let original = el
                .get_attribute("href")
                .and_then(|h| h.strip_prefix(&click).and_then(ours))
                .and_then(|t| t.href);
            if let Some(h) = original {
                el.set_attribute("href", &h)?;
            }
            Ok(())
        }));
    lol_html::rewrite_str(html, settings).unwrap_or_else(|_| html.to_string())
}

/// Decodes the HTML character references a URL in an attribute can carry.
fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').filter(|&e| e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let n = name.strip_prefix('#')?;
                    let code = match n.strip_prefix(['x', 'X']) {
                        Some(h) => u32::from_str_radix(h, 16).ok()?,
                        None => n.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, e + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

// ------------------------------------------------------------------ classification

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    Open,
    Click,
}

/// What a hit was, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub machine: bool,
    /// Why it is a machine (`head`, `empty_user_agent`, `apple_mpp`, `scanner:{name}`,
    /// `too_soon`, `burst`).
    pub reason: Option<String>,
    /// `proxy` for a real open fetched through a mail provider's image proxy.
    pub via: Option<&'static str>,
}

impl Verdict {
    fn human(via: Option<&'static str>) -> Verdict {
        Verdict { machine: false, reason: None, via }
    }
    fn machine(reason: impl Into<String>) -> Verdict {
        Verdict { machine: true, reason: Some(reason.into()), via: None }
    }
}

/// User-agent fragments (lower case) of security scanners, link checkers, HTTP libraries
/// and crawlers.
const SCANNER_AGENTS: &[&str] = &[
    "barracuda",
    "mimecast",
    "proofpoint",
    "safelinks",
    "microsoft defender",
    "ms-office",
    "microsoft office",
    "bingpreview",
    "symantec",
    "trend micro",
    "forcepoint",
    "ironport",
    "sophos",
    "fortiguard",
    "python-requests",
    "python-urllib",
    "aiohttp",
    "curl/",
    "wget/",
    "go-http-client",
    "okhttp",
    "java/",
    "apache-httpclient",
    "libwww-perl",
    "headlesschrome",
    "phantomjs",
    "bot",
    "crawler",
    "spider",
    "scanner",
    "preview",
];

/// Image proxies of mail providers: a real open, fetched on the reader's behalf.
const PROXY_AGENTS: &[&str] = &["googleimageproxy", "yahoomailproxy"];

/// Classifies one hit from what the request shows (bursts are seen across hits: see
/// `record`). `since_sent` is the time since the trackers were added.
pub fn classify(
    hit: Hit,
    method: &Method,
    user_agent: &str,
    ip: Option<IpAddr>,
    since_sent: Duration,
) -> Verdict {
    if method == Method::HEAD {
        return Verdict::machine("head");
    }
    let ua = user_agent.trim();
    if ua.is_empty() {
        return Verdict::machine("empty_user_agent");
    }
    let lower = ua.to_ascii_lowercase();
    if hit == Hit::Open {
        // Apple's MPP proxies fetch every image on delivery, read or not, from Apple's
        // 17.0.0.0/8 with the bare user agent "Mozilla/5.0".
        if ip.is_some_and(is_apple_proxy) || ua == "Mozilla/5.0" {
            return Verdict::machine("apple_mpp");
        }
        if PROXY_AGENTS.iter().any(|p| lower.contains(p)) {
            return Verdict::human(Some("proxy"));
        }
    }
    if let Some(s) = SCANNER_AGENTS.iter().find(|s| lower.contains(*s)) {
        return Verdict::machine(format!("scanner:{}", s.trim_end_matches('/')));
    }
    if hit == Hit::Click && since_sent < Duration::seconds(TOO_SOON_SECONDS) {
        return Verdict::machine("too_soon");
    }
    Verdict::human(None)
}

fn is_apple_proxy(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] == 17,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.octets()[0] == 17),
    }
}

/// The client's address: the first `X-Forwarded-For` entry (API Gateway and reverse
/// proxies put the client there), else the socket's peer.
pub fn client_ip(headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
    let forwarded = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok());
    forwarded.or(peer.map(|p| p.ip()))
}

/// What is stored of an address: its network only (IPv4 /24, IPv6 /48).
pub fn ip_prefix(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => ip_prefix(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
    }
}

// ------------------------------------------------------------------ storage

fn ts_ms(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn kind_name(hit: Hit, machine: bool) -> &'static str {
    match (hit, machine) {
        (Hit::Open, false) => "open",
        (Hit::Click, false) => "click",
        (Hit::Open, true) => "machine_open",
        (Hit::Click, true) => "machine_click",
    }
}

/// Counter attribute of each kind on the summary item.
fn counter(kind: &str) -> &'static str {
    match kind {
        "open" => "opens",
        "click" => "clicks",
        "machine_open" => "machine_opens",
        _ => "machine_clicks",
    }
}

fn timeline_key(email: &str, at: &str, message_id: &str, hit: Hit, seq: &str) -> Key {
    let what = if hit == Hit::Open { "open" } else { "click" };
    Key::new(format!("timeline#{email}"), format!("{at}#{message_id}#{what}#{seq}"))
}

/// One stored hit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackEvent {
    pub at: String,
    /// `open`, `click`, `machine_open` or `machine_click`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_prefix: Option<String>,
}

/// The tracking figures of one sent message, for the message and conversation views.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct TrackActivity {
    pub message_id: String,
    pub opens: i64,
    pub clicks: i64,
    pub machine_opens: i64,
    pub machine_clicks: i64,
    pub first_open_at: Option<String>,
    pub last_open_at: Option<String>,
    pub last_click_at: Option<String>,
    /// The most recent events, newest first (at most 50).
    pub events: Vec<TrackEvent>,
}

fn s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(Value::as_str).map(str::to_string)
}

/// Counters and recent events of a sent message (zeros when nothing was recorded).
pub async fn activity(ports: &Ports, message_id: &str) -> anyhow::Result<TrackActivity> {
    use anyhow::Context;
    let table = &ports.table;
    let sum =
        table.get(&keys::tracking_summary_key(message_id)).await.context("reading the tracking summary")?;
    let n = |k: &str| sum.as_ref().and_then(|i| i.get(k)).and_then(Value::as_i64).unwrap_or(0);
    let t = |k: &str| sum.as_ref().and_then(|i| s(i, k));
    let page = table
        .query(
            Query::new(format!("track#{message_id}"))
                .sk(SkCond::BeginsWith("e#".into()))
                .backward()
                .limit(RECENT_EVENTS),
        )
        .await
        .context("reading tracking events")?;
    let events = page
        .items
        .iter()
        .map(|i| TrackEvent {
            at: s(i, "at").unwrap_or_default(),
            kind: s(i, "kind").unwrap_or_default(),
            url: s(i, "url"),
            reason: s(i, "reason"),
            via: s(i, "via"),
            user_agent: s(i, "user_agent").unwrap_or_default(),
            ip_prefix: s(i, "ip_prefix"),
        })
        .collect();
    Ok(TrackActivity {
        message_id: message_id.to_string(),
        opens: n("opens"),
        clicks: n("clicks"),
        machine_opens: n("machine_opens"),
        machine_clicks: n("machine_clicks"),
        first_open_at: t("first_open_at"),
        last_open_at: t("last_open_at"),
        last_click_at: t("last_click_at"),
        events,
    })
}

/// What the recipients' timeline entries say about the message (when it is stored).
async fn message_context(ports: &Ports, message_id: &str) -> (Option<String>, Option<String>) {
    let Ok(Some(msg)) = ports.table.get(&Key::new(format!("msg#{message_id}"), "msg")).await else {
        return (None, None);
    };
    let conv = match s(&msg, "conversation") {
        Some(c) => match crate::thread::Threader::new(ports).find(&c).await {
            Ok(root) => Some(root.id),
            Err(_) => Some(c),
        },
        None => None,
    };
    (conv, s(&msg, "subject"))
}

/// Stores one hit: the event, the counters, the timeline entries of a human hit; then,
/// for a click, looks for a burst and re-classifies it.
pub async fn record(
    ports: &Ports,
    tok: &TrackToken,
    hit: Hit,
    verdict: &Verdict,
    user_agent: &str,
    ip: Option<IpAddr>,
) -> anyhow::Result<()> {
    let now = ports.clock.now();
    let at = ts_ms(now);
    let seq = hex::encode(rand::random::<[u8; 4]>());
    let kind = kind_name(hit, verdict.machine);
    let url = if hit == Hit::Click { tok.target() } else { None };
    let mid = &tok.message_id;

    let mut ev = Key::new(format!("track#{mid}"), format!("e#{at}#{seq}")).item();
    ev.insert("at".into(), json!(at));
    ev.insert("kind".into(), json!(kind));
    ev.insert("url".into(), json!(url));
    ev.insert("reason".into(), json!(verdict.reason));
    ev.insert("via".into(), json!(verdict.via));
    ev.insert("user_agent".into(), json!(user_agent.chars().take(256).collect::<String>()));
    ev.insert("ip_prefix".into(), json!(ip.map(ip_prefix)));
    ev.insert("recipients".into(), json!(tok.recipients));
    ev.insert("seq".into(), json!(seq));

    let mut sum = vec![Update::Add(counter(kind).into(), 1), Update::Set("message_id".into(), json!(mid))];
    if !verdict.machine {
        match hit {
            Hit::Open => {
                sum.push(Update::SetIfAbsent("first_open_at".into(), json!(at)));
                sum.push(Update::Set("last_open_at".into(), json!(at)));
            }
            Hit::Click => sum.push(Update::Set("last_click_at".into(), json!(at))),
        }
    }
    let mut ops = vec![
        TransactOp::Put { item: ev, cond: Some(Cond::NotExists) },
        TransactOp::Update { key: keys::tracking_summary_key(mid), actions: sum, cond: None },
    ];
    if !verdict.machine && !tok.recipients.is_empty() {
        let (conversation, subject) = message_context(ports, mid).await;
        for email in &tok.recipients {
            let mut item = timeline_key(email, &at, mid, hit, &seq).item();
            item.insert("type".into(), json!(if hit == Hit::Open { "email_open" } else { "email_click" }));
            item.insert("message_id".into(), json!(mid));
            item.insert("conversation".into(), json!(conversation));
            item.insert("subject".into(), json!(subject));
            item.insert("url".into(), json!(url));
            item.insert("via".into(), json!(verdict.via));
            item.insert("at".into(), json!(at));
            ops.push(TransactOp::Put { item, cond: None });
        }
    }
    ports.table.transact_write(ops).await?;
    if hit == Hit::Click {
        reclassify_burst(ports, mid, now).await?;
    }
    Ok(())
}

/// Several different links of one message clicked within the burst window: every click
/// in it is a scanner's. Each human click found there becomes `machine_click` in one
/// transaction with its counters and timeline entries, conditional on it still being a
/// `click`, so concurrent hits re-classify each event once.
async fn reclassify_burst(ports: &Ports, mid: &str, now: DateTime<Utc>) -> anyhow::Result<()> {
    let from = ts_ms(now - Duration::milliseconds(BURST_WINDOW_MS));
    let recent = ports
        .table
        .query_all(Query::new(format!("track#{mid}")).sk(SkCond::Between(format!("e#{from}"), "e#~".into())))
        .await?;
    let clicks: Vec<&Item> = recent
        .iter()
        .filter(|i| matches!(s(i, "kind").as_deref(), Some("click" | "machine_click")))
        .collect();
    let urls: std::collections::BTreeSet<String> = clicks.iter().filter_map(|i| s(i, "url")).collect();
    if urls.len() < 2 {
        return Ok(());
    }
    for ev in clicks.into_iter().filter(|i| s(i, "kind").as_deref() == Some("click")) {
        let (Some(key), Some(at), Some(seq)) = (Key::of(ev), s(ev, "at"), s(ev, "seq")) else { continue };
        let mut ops = vec![
            TransactOp::Update {
                key,
                actions: vec![
                    Update::Set("kind".into(), json!("machine_click")),
                    Update::Set("reason".into(), json!("burst")),
                ],
                cond: Some(Cond::Eq("kind".into(), json!("click"))),
            },
            TransactOp::Update {
                key: keys::tracking_summary_key(mid),
                actions: vec![Update::Add("clicks".into(), -1), Update::Add("machine_clicks".into(), 1)],
                cond: None,
            },
        ];
        let recipients = ev.get("recipients").and_then(Value::as_array).cloned().unwrap_or_default();
        for email in recipients.iter().filter_map(Value::as_str) {
            ops.push(TransactOp::Delete { key: timeline_key(email, &at, mid, Hit::Click, &seq), cond: None });
        }
        match ports.table.transact_write(ops).await {
            Ok(()) => {}
            // Another hit re-classified it first.
            Err(StoreError::TransactionCanceled { .. } | StoreError::ConditionFailed) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ HTTP

/// `GET /t/o/{token}` (the pixel) and `GET /t/c/{token}` (the redirect); HEAD is served
/// too and recorded as a machine. Anything else under `/t/` is a 403.
pub fn router(ports: Ports) -> Router {
    Router::new()
        .route("/t/o/{token}", get(open))
        .route("/t/c/{token}", get(click))
        .route("/t/{*rest}", get(refused))
        .with_state(ports)
}

fn refused_response() -> Response {
    problem(StatusCode::FORBIDDEN, "this tracking link is not valid: it is unsigned or has been altered")
}

async fn refused() -> Response {
    refused_response()
}

struct HitInfo {
    method: Method,
    user_agent: String,
    ip: Option<IpAddr>,
}

fn hit_info(req: &axum::extract::Request) -> HitInfo {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    HitInfo {
        method: req.method().clone(),
        user_agent: req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        ip: client_ip(req.headers(), peer),
    }
}

async fn track_hit(ports: &Ports, tok: &TrackToken, hit: Hit, info: &HitInfo) {
    let since = ports.clock.now() - DateTime::from_timestamp(tok.sent_at, 0).unwrap_or_default();
    let verdict = classify(hit, &info.method, &info.user_agent, info.ip, since);
    // The reader gets the pixel or the link even when storage fails; the error is logged.
    if let Err(e) = record(ports, tok, hit, &verdict, &info.user_agent, info.ip).await {
        tracing::error!(message_id = %tok.message_id, error = %format!("{e:#}"), "could not record a tracking hit");
    }
}

async fn open(
    State(ports): State<Ports>,
    Path(token): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let Some(tok) = verify_token(&ports.signer, OPEN_PURPOSE, &token) else { return refused_response() };
    track_hit(&ports, &tok, Hit::Open, &hit_info(&req)).await;
    ([(header::CONTENT_TYPE, "image/gif"), (header::CACHE_CONTROL, "no-store, private")], PIXEL_GIF.to_vec())
        .into_response()
}

async fn click(
    State(ports): State<Ports>,
    Path(token): Path<String>,
    req: axum::extract::Request,
) -> Response {
    let Some(tok) = verify_token(&ports.signer, CLICK_PURPOSE, &token) else { return refused_response() };
    let Some(target) = tok.target() else { return refused_response() };
    let Ok(location) = header::HeaderValue::from_str(&target) else { return refused_response() };
    track_hit(&ports, &tok, Hit::Click, &hit_info(&req)).await;
    let mut resp = StatusCode::FOUND.into_response();
    let h = resp.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store, private"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> ThreadSigner {
        ThreadSigner::new(b"0123456789abcdef0123456789abcdef".to_vec())
    }

    const BASE: &str = "https://track.example/";

    fn rcpt() -> Vec<String> {
        vec!["Ann@Customer.example".into()]
    }

    #[test]
    fn strip_restores_what_add_changed() {
        let inputs = [
            r#"<html><head><title>x</title></head><body><p>Hi <a href="https://acme.example/a?x=1&amp;y=2">here</a> and <a class="btn" href="http://acme.example/b">b</a>.</p></body></html>"#,
            r##"<p>No body tag, <a href="https://a.example/">one link</a>, <a href="mailto:x@y.example">mail</a>, <a href="tel:+123">tel</a>, <a href="#top">anchor</a></p>"##,
            "<div>plain, no links at all</div>",
            r#"<body><img src="https://cdn.example/logo.png" alt="logo"><a href="https://a.example/1">1</a><a href="https://a.example/1">1 again</a></body>"#,
            "",
        ];
        for html in inputs {
            let tracked = add_trackers(&signer(), BASE, "m1@acme.example", &rcpt(), html);
            assert_ne!(tracked, html, "no pixel added to {html}");
            assert_eq!(tracked.matches("/t/o/").count(), 1, "{tracked}");
            assert_eq!(strip_trackers(&signer(), BASE, "m1@acme.example", &tracked), html);
        }
    }

    /// Issue 17, item 1: a `/t/c/` link is restored only from a token we signed for this
    /// very message; a forged one (any payload, a bad or missing signature) or one of ours
    /// copied from another message stays as it is.
    #[test]
    fn strip_restores_only_our_signed_links_of_this_message() {
        let evil = TrackToken {
            message_id: "m1@acme.example".into(),
            recipients: vec![],
            sent_at: 0,
            href: Some("javascript:alert(1)".into()),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&evil).unwrap());
        for token in [format!("{payload}.00"), payload.clone(), format!("{payload}.{}", "a".repeat(64))] {
            let html = format!(r#"<a href="{BASE}t/c/{token}">x</a>"#);
            let out = strip_trackers(&signer(), BASE, "m1@acme.example", &html);
            assert!(!out.contains("javascript"), "{out}");
        }
        let other = add_trackers(
            &signer(),
            BASE,
            "other@acme.example",
            &rcpt(),
            r#"<a href="https://a.example/">a</a>"#,
        );
        let out = strip_trackers(&signer(), BASE, "m1@acme.example", &other);
        assert!(!out.contains(r#"href="https://a.example/""#), "another message's link was restored: {out}");
    }

    #[test]
    fn links_are_rewritten_and_skipped_as_documented() {
        let html = r##"<body><a href="https://a.example/x">x</a><a href="mailto:a@b.example">m</a><a href="tel:1">t</a><a href="#s">s</a><a href="https://track.example/t/c/abc.def">own</a></body>"##;
        let tracked = add_trackers(&signer(), BASE, "m1@acme.example", &rcpt(), html);
        assert_eq!(tracked.matches("https://track.example/t/c/").count(), 2, "{tracked}");
        assert!(tracked.contains(r#"href="mailto:a@b.example""#));
        assert!(tracked.contains(r#"href="tel:1""#));
        assert!(tracked.contains(r##"href="#s""##));
        assert!(tracked.contains(r#"https://track.example/t/c/abc.def"#));
        // The pixel sits just before </body>.
        assert!(tracked.ends_with(r#"style="border:0;width:1px;height:1px"></body>"#), "{tracked}");
    }

    #[test]
    fn tokens_verify_only_unaltered_and_for_their_purpose() {
        let t = TrackToken {
            message_id: "m@x".into(),
            recipients: rcpt(),
            sent_at: 1,
            href: Some("https://a.example/?q=1&amp;r=2".into()),
        };
        let tok = encode_token(&signer(), CLICK_PURPOSE, &t);
        let got = verify_token(&signer(), CLICK_PURPOSE, &tok).unwrap();
        assert_eq!(got.target().as_deref(), Some("https://a.example/?q=1&r=2"));
        assert!(verify_token(&signer(), OPEN_PURPOSE, &tok).is_none(), "a click token opened a pixel");
        assert!(verify_token(&ThreadSigner::new(b"other-key".to_vec()), CLICK_PURPOSE, &tok).is_none());
        let (payload, sig) = tok.rsplit_once('.').unwrap();
        assert!(verify_token(&signer(), CLICK_PURPOSE, payload).is_none());
        assert!(verify_token(&signer(), CLICK_PURPOSE, &format!("{payload}.")).is_none());
        let mut flipped = sig.to_string();
        flipped.replace_range(0..1, if sig.starts_with('0') { "1" } else { "0" });
        assert!(verify_token(&signer(), CLICK_PURPOSE, &format!("{payload}.{flipped}")).is_none());
        let evil = TrackToken { href: Some("https://evil.example/".into()), ..t };
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&evil).unwrap());
        assert!(verify_token(&signer(), CLICK_PURPOSE, &format!("{forged}.{sig}")).is_none());
    }

    #[test]
    fn only_http_targets_are_followed() {
        let t = |h: &str| TrackToken {
            message_id: "m".into(),
            recipients: vec![],
            sent_at: 0,
            href: Some(h.into()),
        };
        assert_eq!(t("HTTPS://A.example/").target().as_deref(), Some("HTTPS://A.example/"));
        assert_eq!(t("javascript:alert(1)").target(), None);
        assert_eq!(t("https://a.example/\r\nSet-Cookie: x").target(), None);
        assert_eq!(
            t("https://a.example/&#x41;&#66;&bogus;&").target().as_deref(),
            Some("https://a.example/AB&bogus;&")
        );
    }

    #[test]
    fn classifier_rules() {
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
        let home: Option<IpAddr> = "203.0.113.9".parse().ok();
        let apple: Option<IpAddr> = "17.58.1.2".parse().ok();
        let later = Duration::hours(1);
        let c = |hit, m: &Method, ua: &str, ip, since| classify(hit, m, ua, ip, since);
        assert_eq!(c(Hit::Open, &Method::GET, chrome, home, later), Verdict::human(None));
        assert_eq!(c(Hit::Click, &Method::GET, chrome, home, later), Verdict::human(None));
        assert_eq!(c(Hit::Open, &Method::HEAD, chrome, home, later).reason.as_deref(), Some("head"));
        assert_eq!(c(Hit::Click, &Method::HEAD, chrome, home, later).reason.as_deref(), Some("head"));
        assert_eq!(c(Hit::Open, &Method::GET, " ", home, later).reason.as_deref(), Some("empty_user_agent"));
        assert_eq!(c(Hit::Open, &Method::GET, chrome, apple, later).reason.as_deref(), Some("apple_mpp"));
        assert_eq!(
            c(Hit::Open, &Method::GET, "Mozilla/5.0", home, later).reason.as_deref(),
            Some("apple_mpp")
        );
        let mapped: Option<IpAddr> = "::ffff:17.1.2.3".parse().ok();
        assert!(c(Hit::Open, &Method::GET, chrome, mapped, later).machine);
        // Private Relay clicks from Apple's range are readers.
        assert!(!c(Hit::Click, &Method::GET, chrome, apple, later).machine);
        let gmail =
            "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)";
        assert_eq!(c(Hit::Open, &Method::GET, gmail, home, later), Verdict::human(Some("proxy")));
        for (ua, why) in [
            ("python-requests/2.32.3", "scanner:python-requests"),
            ("curl/8.5.0", "scanner:curl"),
            ("Go-http-client/1.1", "scanner:go-http-client"),
            ("Mozilla/5.0 HeadlessChrome/120.0", "scanner:headlesschrome"),
            ("Barracuda Sentinel (EE)", "scanner:barracuda"),
            ("Mimecast-URL-Protect", "scanner:mimecast"),
            ("Proofpoint URL Defense", "scanner:proofpoint"),
            ("Microsoft SafeLinks", "scanner:safelinks"),
            ("Mozilla/5.0 (compatible; Googlebot/2.1)", "scanner:bot"),
        ] {
            assert_eq!(c(Hit::Click, &Method::GET, ua, home, later).reason.as_deref(), Some(why), "{ua}");
            assert!(c(Hit::Open, &Method::GET, ua, home, later).machine, "{ua}");
        }
        assert_eq!(
            c(Hit::Click, &Method::GET, chrome, home, Duration::seconds(3)).reason.as_deref(),
            Some("too_soon")
        );
        // An open right after sending is plausible (the reader had the mail open).
        assert!(!c(Hit::Open, &Method::GET, chrome, home, Duration::seconds(3)).machine);
    }

    #[test]
    fn addresses_are_truncated_and_taken_from_the_proxy_header() {
        assert_eq!(ip_prefix("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(ip_prefix("2001:db8:abcd:12::1".parse().unwrap()), "2001:db8:abcd::/48");
        let mut h = HeaderMap::new();
        let peer: Option<SocketAddr> = "127.0.0.1:5000".parse().ok();
        assert_eq!(client_ip(&h, peer), "127.0.0.1".parse().ok());
        h.insert("x-forwarded-for", "17.1.2.3, 10.0.0.1".parse().unwrap());
        assert_eq!(client_ip(&h, peer), "17.1.2.3".parse().ok());
    }
}
