//! `mailroom bench-web`: how long the web inbox takes to render its pages with many
//! conversations stored (docs/web.md, docs/performance.md).
//!
//! It applies the demo workspace, imports the demo mailbox through the real pipeline (so
//! the opened conversation has real messages, CRM records and a ticket), then adds N
//! synthetic conversations in the same inboxes, as the pipeline would leave them in the
//! list index (older than the demo's, so a page of the list reads through them). The
//! pages are then asked in process, through the same router `mailroom serve` runs, with a
//! signed-in session, 20 times each: the median and the 95th percentile are printed.

use anyhow::{Context, Result};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use chrono::{Duration, Utc};
use mailroom_app::Ports;
use mailroom_app::keys::{conv_key, conversations_index_pk};
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;

const RUNS: usize = 20;
const AGENT: &str = "sam.lee@northwind.example";

#[derive(Serialize)]
struct PageTiming {
    page: String,
    p50_ms: f64,
    p95_ms: f64,
    bytes: usize,
}

#[derive(Serialize)]
struct Report {
    conversations: u32,
    write_s: f64,
    pages: Vec<PageTiming>,
}

pub async fn run(n: u32, keep: Option<&std::path::Path>, json_out: bool) -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = keep.map(std::path::Path::to_path_buf).unwrap_or_else(|| tmp.path().to_path_buf());
    let store = dir.join("store");
    let mailbox = dir.join("mailbox");
    crate::demo::write_mailbox(&mailbox)?;
    let ports = Ports::embedded(&store)?;
    let ws = crate::demo::workspace()?;
    mailroom_app::workspace::apply(&ports, &ws).await?;
    ports.flush()?;
    let imported = crate::import::import(&ports, &mailbox, None, None, &Default::default()).await?;
    anyhow::ensure!(imported.failed == 0, "{} demo messages failed to import", imported.failed);

    // N conversations as the pipeline leaves them, older than the demo's.
    let t0 = Instant::now();
    let inboxes: Vec<String> = ws.inboxes.iter().map(|i| i.address.to_lowercase()).collect();
    let agents: Vec<String> = ws.users.iter().map(|u| u.email.to_lowercase()).collect();
    let base = Utc::now() - Duration::days(400);
    for i in 0..n {
        let id = format!("cweb{i:08}");
        let at = base + Duration::seconds(i64::from(i) * 300);
        let at_ms = at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
        let mut item = conv_key(&id).item();
        item.insert("id".into(), json!(id));
        item.insert("inbox".into(), json!(inboxes[i as usize % inboxes.len()]));
        item.insert("subject".into(), json!(format!("Order {i} question")));
        item.insert("status".into(), json!(if i % 10 == 0 { "closed" } else { "open" }));
        if i % 3 != 0 {
            item.insert("assignee".into(), json!(agents[i as usize % agents.len()]));
        }
        item.insert("contact_email".into(), json!(format!("customer{i}@example.com")));
        item.insert("snippet".into(), json!("Hello, a question about my order and its delivery date."));
        item.insert("channel".into(), json!("email"));
        item.insert("first_date".into(), json!(at.to_rfc3339()));
        item.insert("last_activity".into(), json!(at_ms));
        item.insert("gsi1pk".into(), json!(conversations_index_pk(&id)));
        item.insert("gsi1sk".into(), json!(format!("{at_ms}#{id}")));
        ports.table.put(item, None).await?;
    }
    ports.flush()?;
    let write_s = t0.elapsed().as_secs_f64();

    let (app, cookie) = signed_in_router(&ports, AGENT).await?;
    // A real conversation of the demo to open: the search's first row.
    let found = get(&app, "/app/?q=export&status=", &cookie).await?.1;
    let conv = found
        .split("href=\"/app/c/")
        .nth(1)
        .and_then(|rest| rest.split(['?', '"']).next())
        .context("the demo's export conversation is not listed")?
        .to_string();
    let pages = [
        ("inbox (open, newest 50)".to_string(), "/app/".to_string()),
        ("unassigned view".to_string(), "/app/?status=open&assignee=none".to_string()),
        ("search, one match".to_string(), "/app/?q=export&status=".to_string()),
        ("list rows (polling)".to_string(), "/app/list?status=open&part=rows".to_string()),
        ("conversation".to_string(), format!("/app/c/{conv}")),
        ("conversation live part".to_string(), format!("/app/c/{conv}/live")),
    ];
    let mut out = Vec::new();
    for (name, path) in pages {
        let mut ms = Vec::with_capacity(RUNS);
        let mut bytes = 0;
        for _ in 0..RUNS {
            let t = Instant::now();
            let (status, body) = get(&app, &path, &cookie).await?;
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(status == StatusCode::OK, "{path} answered {status}");
            bytes = body.len();
        }
        ms.sort_by(f64::total_cmp);
        let p95 = ms[(RUNS * 95 / 100).min(RUNS - 1)];
        out.push(PageTiming { page: name, p50_ms: ms[RUNS / 2], p95_ms: p95, bytes });
    }
    let report = Report { conversations: n, write_s, pages: out };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{n} conversations written in {write_s:.1} s (plus the demo mailbox)");
        for p in &report.pages {
            println!(
                "  {:<26} p50 {:>7.1} ms  p95 {:>7.1} ms  ({} bytes)",
                p.page, p.p50_ms, p.p95_ms, p.bytes
            );
        }
    }
    Ok(())
}

/// The router `mailroom serve` runs over `ports`, and the cookie of a session of `user`.
pub(crate) async fn signed_in_router(ports: &Ports, user: &str) -> Result<(axum::Router, String)> {
    let providers = mailroom_app::runtime::config::ProvidersConfig::from_env("http://127.0.0.1:3000")?;
    let auth = mailroom_app::api::auth::Authenticator::new(
        Some(mailroom_app::api::auth::LocalIssuer::new(&ports.signer)),
        None,
    )?;
    let api = Arc::new(mailroom_app::api::ApiState {
        ports: ports.clone(),
        auth,
        public_url: providers.public_url.clone(),
        providers,
    });
    let sid = mailroom_app::web::session::start(ports, user).await?;
    Ok((mailroom_app::web::router(api, None), format!("{}={sid}", mailroom_app::web::session::COOKIE)))
}

/// One GET through the router: the status and the body.
pub(crate) async fn get(app: &axum::Router, path: &str, cookie: &str) -> Result<(StatusCode, String)> {
    let req = Request::get(path).header("cookie", cookie).body(Body::empty())?;
    let resp = app.clone().oneshot(req).await?;
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}
