//! `mailroom bench-chat`: how many chat visitors and messages per second `mailroom serve`'s
//! live layer holds on this machine, and how fast a visitor's line reaches an agent's
//! page (docs/chat.md, docs/performance.md).
//!
//! In one process: the demo workspace with a chat widget, the pipeline's stages, the live
//! hub and its two socket routers on a loopback port. One agent's page socket subscribes to
//! every inbox; N visitors connect over WebSockets, each from its own loopback address
//! (127.0.0.2 and up, so the per-address limits apply as in production), say who they are,
//! then each sends a line every `interval` for `seconds`. Printed: connections and their
//! set-up time, lines sent and stored, the rate held, the time to the server's `ack` (the
//! line is stored and queued), and the time until the agent's socket hears of the
//! recorded message (stored, matched, in the feed, pushed): p50, p99 and the worst.

use anyhow::{Context, Result};
use futures::{SinkExt, StreamExt};
use mailroom_app::Ports;
use mailroom_core::workspace::ChatWidget;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const AGENT: &str = "sam.lee@northwind.example";
const ORIGIN: &str = "http://shop.bench.example";

#[derive(Serialize)]
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn latency(mut v: Vec<Duration>) -> Latency {
    v.sort();
    let at = |q: f64| {
        v.get(((v.len() as f64 * q).ceil() as usize).saturating_sub(1)).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Latency { p50_ms: at(0.5), p99_ms: at(0.99), max_ms: at(1.0) }
}

#[derive(Serialize)]
struct Report {
    visitors: usize,
    connected: usize,
    connect: Latency,
    seconds: u64,
    sent: usize,
    acked: usize,
    refused: usize,
    messages_per_second: f64,
    ack: Latency,
    delivered_to_agent: usize,
    to_agent: Latency,
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn open(url: &str, source: std::net::IpAddr, headers: &[(&str, String)]) -> Result<Ws> {
    let mut req = url.into_client_request()?;
    for (k, v) in headers {
        req.headers_mut().insert(axum::http::HeaderName::from_bytes(k.as_bytes())?, v.parse()?);
    }
    let addr: std::net::SocketAddr =
        url::Url::parse(url)?.socket_addrs(|| None)?.into_iter().next().context("address")?;
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(std::net::SocketAddr::new(source, 0))?;
    let stream = sock.connect(addr).await?;
    Ok(tokio_tungstenite::client_async(req, stream).await?.0)
}

async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return serde_json::from_str(t.as_str()).ok(),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

pub async fn run(visitors: usize, seconds: u64, interval_ms: u64, json_out: bool) -> Result<()> {
    anyhow::ensure!((1..=250).contains(&visitors), "--visitors is 1 to 250 (one loopback address each)");
    let tmp = tempfile::tempdir()?;
    let ports = Ports::embedded(tmp.path())?;
    let mut ws = crate::demo::workspace()?;
    let inbox = ws.inboxes.first().context("the demo workspace has an inbox")?.address.clone();
    ws.chat_widgets.push(ChatWidget {
        id: "bench".into(),
        inbox,
        allowed_origins: vec![ORIGIN.into()],
        ..ChatWidget::default()
    });
    mailroom_app::workspace::apply(&ports, &ws).await?;
    ports.flush()?;

    // The server: the stages, the hub and the two socket routers, as `mailroom serve` runs them.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stages = mailroom_app::Stages::new(&ports);
    let bg = tokio::spawn(async move { stages.run(stop_rx).await });
    let hub = mailroom_app::live::Hub::new(ports.clone());
    let feed = tokio::spawn(hub.clone().run());
    let app = mailroom_app::live::visitor::router(hub.clone()).merge(mailroom_app::live::agent::router(hub));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
    });
    let base = format!("ws://{addr}");

    // The agent's page.
    let sid = mailroom_app::web::session::start(&ports, AGENT).await?;
    let mut agent = open(
        &format!("{base}/app/live"),
        "127.0.0.1".parse()?,
        &[("origin", format!("http://{addr}")), ("cookie", format!("mr_session={sid}"))],
    )
    .await
    .context("the agent's socket")?;
    agent.send(Message::Text(json!({"type": "subscribe", "inbox": "all"}).to_string().into())).await?;
    let sent_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen_w = seen.clone();
    let listen = tokio::spawn(async move {
        while let Some(v) = next_json(&mut agent).await {
            if v["type"] == "event"
                && v["kind"] == "message_logged"
                && let Some(mid) = v["message_id"].as_str()
            {
                seen_w
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .entry(mid.to_string())
                    .or_insert_with(Instant::now);
            }
        }
    });

    // The visitors, each from its own address.
    let url = format!("{base}/chat/v1/ws?widget=bench");
    let mut tasks = Vec::new();
    let t_start = Instant::now();
    for i in 0..visitors {
        let (url, sent_at) = (url.clone(), sent_at.clone());
        let ip: std::net::IpAddr = format!("127.0.0.{}", i + 2).parse()?;
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let mut ws = open(&url, ip, &[("origin", ORIGIN.to_string())]).await?;
            let hello = json!({"type": "start", "name": format!("Visitor {i}"), "email": format!("visitor{i}@bench.example")});
            ws.send(Message::Text(hello.to_string().into())).await?;
            while next_json(&mut ws).await.context("closed before ready")?["type"] != "ready" {}
            let connect = t.elapsed();
            let mut acks = Vec::new();
            let (mut sent, mut refused) = (0usize, 0usize);
            // Spread the visitors over the interval.
            tokio::time::sleep(Duration::from_millis(interval_ms * i as u64 / visitors as u64)).await;
            let end = Instant::now() + Duration::from_secs(seconds);
            while Instant::now() < end {
                let t = Instant::now();
                let text = format!("Line {sent} from visitor {i}");
                ws.send(Message::Text(json!({"type": "message", "text": text}).to_string().into())).await?;
                sent += 1;
                loop {
                    let v = next_json(&mut ws).await.context("closed while waiting for the ack")?;
                    if v["type"] == "ack" {
                        let mid = v["message_id"].as_str().unwrap_or_default().to_string();
                        sent_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(mid, t);
                        acks.push(t.elapsed());
                        break;
                    }
                    if v["type"] == "error" {
                        refused += 1;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(interval_ms).saturating_sub(t.elapsed())).await;
            }
            anyhow::Ok((connect, acks, sent, refused, ws))
        }));
    }
    let (mut connects, mut acks, mut sent, mut refused, mut sockets) = (vec![], vec![], 0, 0, vec![]);
    for t in tasks {
        match t.await? {
            Ok((c, a, s, r, ws)) => {
                connects.push(c);
                acks.extend(a);
                sent += s;
                refused += r;
                sockets.push(ws);
            }
            Err(e) => eprintln!("a visitor failed: {e:#}"),
        }
    }
    let elapsed = t_start.elapsed().as_secs_f64();
    // The stragglers reach the agent.
    let wait = Instant::now();
    while seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len() < acks.len()
        && wait.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let to_agent: Vec<Duration> = {
        let s = sent_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.iter().filter_map(|(mid, t)| seen.get(mid).map(|at| at.saturating_duration_since(*t))).collect()
    };
    let report = Report {
        visitors,
        connected: connects.len(),
        connect: latency(connects),
        seconds,
        sent,
        acked: acks.len(),
        refused,
        // Over the sending window (each visitor sends for `seconds`, spread over one interval).
        messages_per_second: acks.len() as f64 / (seconds as f64).min(elapsed),
        delivered_to_agent: to_agent.len(),
        ack: latency(acks),
        to_agent: latency(to_agent),
    };
    drop(sockets);
    listen.abort();
    server.abort();
    feed.abort();
    let _ = stop_tx.send(true);
    let _ = bg.await;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let l = |x: &Latency| {
            format!("p50 {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms", x.p50_ms, x.p99_ms, x.max_ms)
        };
        println!("visitors connected        {} of {}   ({})", report.connected, visitors, l(&report.connect));
        println!(
            "lines sent / stored       {} / {}   ({} refused)   {:.1} per second held",
            report.sent, report.acked, report.refused, report.messages_per_second
        );
        println!("visitor -> ack (stored)   {}", l(&report.ack));
        println!(
            "visitor -> agent's page   {}   ({} of {} heard)",
            l(&report.to_agent),
            report.delivered_to_agent,
            report.acked
        );
    }
    Ok(())
}
