//! `mailroom bench-report`: report latency against the number of conversations.
//!
//! For each size it writes the report buckets of N synthetic conversations (through the
//! same `reports::refresh` the pipeline uses, so the buckets are the real ones) spread
//! over the same 30 days, then times reports over the whole range, one week and one
//! inbox. A report reads buckets, not conversations: its latency should stay flat while
//! N grows, and `buckets_read` shows why.

use anyhow::Result;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use mailroom_app::Ports;
use mailroom_app::keys::conv_key;
use mailroom_app::reports::{Filter, MsgFact, NewMessage, refresh, report};
use serde::Serialize;
use serde_json::json;
use std::time::Instant;

/// A small deterministic generator (splitmix64): the bench needs repeatable spread, not
/// statistical quality, and this keeps a dependency out of the binary.
pub(crate) struct Rng(pub(crate) u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The acme-corp workspace's admin (examples/acme-corp.toml).
const ADMIN: &str = "maria.keller@acme-corp.example";

#[derive(Serialize)]
struct Timing {
    conversations: u32,
    write_s: f64,
    conversations_per_s: f64,
    /// name -> (median ms of 5 runs, buckets read)
    reports: Vec<(String, f64, u64)>,
    /// The web reports page (`/app/reports`, an admin's: every inbox) through the router
    /// `mailroom serve` runs, median ms of 5.
    page_ms: f64,
}

pub async fn run(sizes: &[u32], keep: Option<&std::path::Path>, json_out: bool) -> Result<()> {
    let ws = mailroom_core::workspace::parse_toml(crate::bench::pipeline::ACME_WORKSPACE)
        .map_err(|e| anyhow::anyhow!("workspace: {e:?}"))?;
    let inboxes: Vec<String> =
        ws.inboxes.iter().filter(|i| i.owner.is_none()).map(|i| i.address.to_lowercase()).collect();
    let agents: Vec<String> = ws.users.iter().map(|u| u.email.to_lowercase()).collect();
    let teams: Vec<String> = ws.teams.iter().map(|t| t.id.clone()).collect();
    let start = DateTime::parse_from_rfc3339("2024-03-04T00:00:00Z")?.with_timezone(&Utc);
    let now = start + Duration::days(31);
    let mut out = Vec::new();
    for &n in sizes {
        let tmp = tempfile::tempdir()?;
        let dir = match keep {
            Some(k) => k.join(format!("n{n}")),
            None => tmp.path().to_path_buf(),
        };
        let ports = Ports::embedded(&dir)?;
        mailroom_app::workspace::apply(&ports, &ws).await?;
        let mut rng = Rng(u64::from(n));
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let id = format!("cbench{i:08}");
            let open = start.timestamp() + rng.below(30 * 86_400) as i64;
            let mut item = conv_key(&id).item();
            item.insert("id".into(), json!(id));
            item.insert("inbox".into(), json!(inboxes[rng.below(inboxes.len() as u64) as usize]));
            item.insert("team".into(), json!(teams[rng.below(teams.len() as u64) as usize]));
            let agent = agents[rng.below(agents.len() as u64) as usize].clone();
            item.insert("assignee".into(), json!(agent));
            let closed = rng.below(10) == 0;
            item.insert("status".into(), json!(if closed { "closed" } else { "open" }));
            if closed {
                let at = DateTime::from_timestamp(open + 86_400, 0).unwrap_or_default();
                item.insert("closed_at".into(), json!(at.to_rfc3339()));
            }
            item.insert("priority".into(), json!(if rng.below(5) == 0 { "high" } else { "normal" }));
            ports.table.put(item, None).await?;
            let mut msgs = vec![MsgFact {
                t: open,
                out: false,
                normal: true,
                agent: None,
                logged: true,
                reason: None,
                channel: "email".into(),
            }];
            if rng.below(10) < 8 {
                let t = open + 300 + rng.below(3 * 86_400) as i64;
                msgs.push(MsgFact {
                    t,
                    out: true,
                    normal: true,
                    agent: Some(agent.clone()),
                    logged: true,
                    reason: None,
                    channel: "email".into(),
                });
                if rng.below(2) == 0 {
                    msgs.push(MsgFact {
                        t: t + 600 + rng.below(86_400) as i64,
                        out: false,
                        normal: true,
                        agent: None,
                        logged: true,
                        reason: None,
                        channel: "email".into(),
                    });
                }
            }
            let (p, w) = (ports.clone(), ws.clone());
            tasks.spawn(async move {
                for (k, f) in msgs.into_iter().enumerate() {
                    let mid = format!("{id}.{k}@bench.invalid");
                    refresh(&p, &w, &id, Some(NewMessage { id: &mid, fact: f, keep_logged: false })).await?;
                }
                anyhow::Ok(())
            });
            while tasks.len() >= 32 {
                if let Some(r) = tasks.join_next().await {
                    r??;
                }
            }
        }
        while let Some(r) = tasks.join_next().await {
            r??;
        }
        ports.flush()?;
        let write_s = t0.elapsed().as_secs_f64();
        let week = Filter {
            from: NaiveDate::from_ymd_opt(2024, 3, 11),
            to: NaiveDate::from_ymd_opt(2024, 3, 17),
            ..Filter::default()
        };
        let one_inbox = Filter { inbox: inboxes.first().cloned(), ..Filter::default() };
        let mut reports = Vec::new();
        for (name, f) in [("all 30 days", Filter::default()), ("one week", week), ("one inbox", one_inbox)] {
            let mut ms = Vec::new();
            let mut buckets = 0;
            for _ in 0..5 {
                let t = Instant::now();
                let r = report(&ports, &ws, &f, now).await?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                buckets = r.buckets_read;
                if name == "all 30 days" && r.volume.total != i64::from(n) {
                    anyhow::bail!("report counted {} conversations, wrote {n}", r.volume.total);
                }
            }
            ms.sort_by(f64::total_cmp);
            reports.push((name.to_string(), ms[2], buckets));
        }
        let page_ms = time_page(&ports).await?;
        let t = Timing {
            conversations: n,
            write_s,
            conversations_per_s: f64::from(n) / write_s,
            reports,
            page_ms,
        };
        if !json_out {
            println!(
                "{n} conversations: buckets written in {:.1} s ({:.0} conversations/s)",
                t.write_s, t.conversations_per_s
            );
            for (name, ms, b) in &t.reports {
                println!("  report {name:<12} {ms:>8.1} ms  ({b} buckets read)");
            }
            println!("  reports page     {:>8.1} ms  (/app/reports, signed in as an admin)", t.page_ms);
        }
        out.push(t);
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&out)?);
    }
    Ok(())
}

/// The median of 5 requests of the web reports page, signed in as the workspace's admin.
async fn time_page(ports: &Ports) -> Result<f64> {
    let (app, cookie) = crate::bench::web::signed_in_router(ports, ADMIN).await?;
    let mut ms = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let (status, body) = crate::bench::web::get(&app, "/app/reports", &cookie).await?;
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(status == axum::http::StatusCode::OK, "/app/reports answered {status}");
        anyhow::ensure!(body.contains("Open conversations:"), "/app/reports does not show the report");
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[2])
}
