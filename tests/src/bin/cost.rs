//! `cost`: AWS requests and dollars per message, measured against moto.
//!
//! Runs the real pipeline (ingest, match, route, ticket) on the AWS adapters against a
//! moto server, with the workspace of examples/acme-corp.toml and a gen_corpus.py
//! mailbox, and reads the adapters' request meter (`mailroom_store::meter`): requests per
//! service and operation, DynamoDB request units from item sizes, SQS 64 KiB chunks, S3
//! bytes. Lambda invocations and the SQS receives/deletes that Lambda's pollers make are
//! modelled from the template's `BatchSize`, once with full batches (busy inboxes) and once
//! with one message per batch (a quiet night); durations come from timing each handler
//! here. Prices: us-east-1 list prices, stated in `PRICES` and printed.
//!
//! ```sh
//! cargo run --release -p mailroom-tests --bin cost -- [--conversations N] [--seed S] [--json]
//! ```
//! It starts moto from `.venv` (scripts/test.sh installs it) unless `MAILROOM_TEST_MOTO`
//! points at a running one.

use anyhow::{Context, Result, bail};
use mailroom_app::runtime::consumer::TimedHandler;
use mailroom_app::{IngestError, Ingestor, MessageHandler, RawMail, Worker};
use mailroom_store::meter;
use mailroom_tests::{AwsStack, gen_corpus, repo_root};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// US-East-1 list prices (checked 2026-11; on-demand, no free tier).
struct Prices;
impl Prices {
    const S3_PUT_PER_1K: f64 = 0.005;
    const S3_GET_PER_1K: f64 = 0.0004;
    const S3_GB_MONTH: f64 = 0.023;
    const SQS_PER_M: f64 = 0.40;
    const DDB_WRU_PER_M: f64 = 0.625;
    const DDB_RRU_PER_M: f64 = 0.125;
    const LAMBDA_REQ_PER_M: f64 = 0.20;
    const LAMBDA_ARM_GB_S: f64 = 0.000_013_333_4;
    const LOGS_PER_GB: f64 = 0.50;
}

/// The template's function memory (Globals.Function.MemorySize).
const LAMBDA_MEMORY_MB: f64 = 128.0;
/// CloudWatch lines Lambda writes per invocation (START, END, REPORT), in bytes.
const PLATFORM_LOG_BYTES: u64 = 350;

static LOG_BYTES: AtomicU64 = AtomicU64::new(0);

/// Counts what the functions would log (JSON at info, as in Lambda) without keeping it.
struct CountingWriter;
impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG_BYTES.fetch_add(buf.len() as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Args {
    conversations: u32,
    seed: u32,
    json: bool,
}

fn args() -> Result<Args> {
    let mut a = Args { conversations: 200, seed: 8, json: false };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--conversations" => a.conversations = it.next().context("--conversations N")?.parse()?,
            "--seed" => a.seed = it.next().context("--seed S")?.parse()?,
            "--json" => a.json = true,
            other => bail!("unknown argument {other}; usage: cost [--conversations N] [--seed S] [--json]"),
        }
    }
    Ok(a)
}

/// The `BatchSize` of the pipeline stages' SQS event sources (the ingest, route and ticket
/// queues, whose consumers this measures); they must agree. Other queues (mailbox sync,
/// send) take one message per batch on purpose and are not part of this pipeline.
fn template_batch_size() -> Result<u64> {
    let t = std::fs::read_to_string(repo_root().join("infra/template.yaml"))?;
    let mut sizes = Vec::new();
    let mut stage_queue = false;
    for l in t.lines().map(str::trim) {
        if let Some(q) = l.strip_prefix("Queue: !GetAtt ") {
            stage_queue = ["IngestQueue.Arn", "RouteQueue.Arn", "TicketQueue.Arn"].contains(&q);
        } else if let Some(v) = l.strip_prefix("BatchSize:").filter(|_| stage_queue) {
            sizes.push(v.trim().parse::<u64>()?);
            stage_queue = false;
        }
    }
    match sizes.first() {
        Some(&s) if sizes.len() == 3 && sizes.iter().all(|&x| x == s) => Ok(s),
        _ => bail!(
            "infra/template.yaml: expected one BatchSize for the three pipeline queues, found {sizes:?}"
        ),
    }
}

#[derive(Default)]
struct Stage {
    /// Messages the stage handled (its queue's sends, or ingest calls).
    messages: u64,
    busy: Duration,
}

fn diff(after: &meter::Snapshot, before: &meter::Snapshot) -> meter::Snapshot {
    let mut out = meter::Snapshot::new();
    for (svc, ops) in after {
        for (op, c) in ops {
            let b = before.get(svc).and_then(|o| o.get(op)).copied().unwrap_or_default();
            let d = meter::OpCount {
                requests: c.requests - b.requests,
                units: c.units - b.units,
                bytes: c.bytes - b.bytes,
            };
            if d.requests > 0 {
                out.entry(svc.clone()).or_default().insert(op.clone(), d);
            }
        }
    }
    out
}

fn add(into: &mut meter::Snapshot, from: &meter::Snapshot) {
    for (svc, ops) in from {
        for (op, c) in ops {
            let e = into.entry(svc.clone()).or_default().entry(op.clone()).or_default();
            e.requests += c.requests;
            e.units += c.units;
            e.bytes += c.bytes;
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .json()
        .with_current_span(true)
        .without_time()
        .with_writer(|| CountingWriter)
        .init();
    let batch = template_batch_size()?;

    let dir = tempfile::tempdir()?;
    gen_corpus(dir.path(), a.conversations, a.seed);
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("messages"))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();

    let stack = AwsStack::create().await;
    let ports = stack.ports();
    let ws_path = repo_root().join("examples/acme-corp.toml");
    let ws = mailroom_core::workspace::parse_toml(&std::fs::read_to_string(&ws_path)?)
        .map_err(|e| anyhow::anyhow!("{}: {e:?}", ws_path.display()))?;
    mailroom_app::workspace::apply(&ports, &ws).await?;

    let handlers: Vec<(&str, Arc<TimedHandler>, Worker)> = {
        let mk = |name, queue: Arc<dyn mailroom_store::Queue>, h: Arc<dyn MessageHandler>| {
            let t = Arc::new(TimedHandler::new(h));
            let mut w = Worker::new(queue, t.clone());
            w.retry_base = Duration::from_millis(200);
            (name, t, w)
        };
        vec![
            mk("match", ports.ingest_queue.clone(), Arc::new(mailroom_app::MatchHandler::new(ports.clone()))),
            mk("route", ports.route_queue.clone(), Arc::new(mailroom_app::RouteHandler::new(ports.clone()))),
            mk(
                "ticket",
                ports.ticket_queue.clone(),
                Arc::new(mailroom_app::TicketHandler::new(ports.clone())),
            ),
        ]
    };

    meter::reset();
    LOG_BYTES.store(0, Ordering::Relaxed);
    let ingestor = Ingestor::new(ports.clone());
    let mut per_stage: BTreeMap<&str, (Stage, meter::Snapshot)> = BTreeMap::new();
    let mut pending: Vec<RawMail> = Vec::new();
    for f in &files {
        pending.push(RawMail::new(std::fs::read(f)?, "bench"));
    }
    let messages = pending.len() as u64;
    let mut raw_bytes = 0u64;
    // Ingest everything, drain the stages one after the other, and ingest again what
    // could only be placed once earlier messages were recorded (as `mailroom import`).
    for _round in 0..3 {
        let mut deferred = Vec::new();
        let before = meter::snapshot();
        let t = Instant::now();
        let mut n = 0;
        for m in pending {
            raw_bytes += m.bytes.len() as u64;
            match ingestor.ingest(m.clone()).await {
                Ok(_) => n += 1,
                Err(IngestError::UnknownInbox { .. }) => deferred.push(m),
                Err(e) => bail!("ingest: {e}"),
            }
        }
        let e = per_stage.entry("ingest").or_default();
        e.0.messages += n;
        e.0.busy += t.elapsed();
        add(&mut e.1, &diff(&meter::snapshot(), &before));
        for (name, timed, worker) in &handlers {
            let before = meter::snapshot();
            worker.drain().await?;
            let took = timed.take();
            let e = per_stage.entry(name).or_default();
            e.0.messages += took.len() as u64;
            e.0.busy += took.iter().sum::<Duration>();
            add(&mut e.1, &diff(&meter::snapshot(), &before));
        }
        if deferred.is_empty() {
            break;
        }
        pending = deferred;
    }
    let dead = mailroom_app::views::stats::collect(&ports).await?.dead_lettered();
    if dead > 0 {
        bail!("{dead} messages went to a dead-letter queue; the figures would be wrong");
    }
    let log_bytes = LOG_BYTES.load(Ordering::Relaxed);

    // Lines: (service, operation, requests, units, dollars) for the whole run.
    let mut lines: Vec<(String, String, f64, f64, f64)> = Vec::new();
    let mut total_requests = 0.0;
    let mut s3_bytes = 0u64;
    for (stage, (_, snap)) in &per_stage {
        for (svc, ops) in snap {
            for (op, c) in ops {
                // The local worker's own receives, deletes and depth checks are replaced
                // below by what Lambda's SQS pollers do.
                if svc == "sqs" && op != "SendMessageBatch" {
                    continue;
                }
                let dollars = match (svc.as_str(), op.as_str()) {
                    ("s3", "PutObject") => c.units * Prices::S3_PUT_PER_1K / 1e3,
                    ("s3", _) => c.units * Prices::S3_GET_PER_1K / 1e3,
                    ("sqs", _) => c.units * Prices::SQS_PER_M / 1e6,
                    ("dynamodb", "GetItem" | "Query") => c.units * Prices::DDB_RRU_PER_M / 1e6,
                    ("dynamodb", _) => c.units * Prices::DDB_WRU_PER_M / 1e6,
                    _ => 0.0,
                };
                if svc == "s3" && op == "PutObject" {
                    s3_bytes += c.bytes;
                }
                total_requests += c.requests as f64;
                lines.push((format!("{svc} ({stage})"), op.clone(), c.requests as f64, c.units, dollars));
            }
        }
    }
    // Lambda and its SQS pollers, per scenario.
    let mut scenarios = Vec::new();
    for (label, per_batch) in [("full batches", batch), ("one message per batch", 1)] {
        let mut invocations = 0.0;
        let mut gb_s = 0.0;
        let mut poller_requests = 0.0;
        for (stage, (st, _)) in &per_stage {
            let inv =
                if *stage == "ingest" { st.messages as f64 } else { st.messages.div_ceil(per_batch) as f64 };
            invocations += inv;
            // Billed duration: the handlers' time, rounded up to 1 ms per invocation.
            gb_s += (st.busy.as_secs_f64() + inv * 0.0005) * LAMBDA_MEMORY_MB / 1024.0;
            if *stage != "ingest" {
                // One ReceiveMessage and one DeleteMessageBatch per batch.
                poller_requests += 2.0 * inv;
            }
        }
        let logs = (log_bytes + invocations as u64 * PLATFORM_LOG_BYTES) as f64;
        let extra = vec![
            (
                "lambda".to_string(),
                "Invoke".to_string(),
                invocations,
                invocations,
                invocations * Prices::LAMBDA_REQ_PER_M / 1e6,
            ),
            (
                "lambda".to_string(),
                "GB-seconds (arm64, 128 MB)".to_string(),
                0.0,
                gb_s,
                gb_s * Prices::LAMBDA_ARM_GB_S,
            ),
            (
                "sqs (Lambda pollers)".to_string(),
                "Receive + DeleteBatch".to_string(),
                poller_requests,
                poller_requests,
                poller_requests * Prices::SQS_PER_M / 1e6,
            ),
            (
                "cloudwatch logs".to_string(),
                "ingested bytes".to_string(),
                0.0,
                logs,
                logs / 1e9 * Prices::LOGS_PER_GB,
            ),
        ];
        let mut all = lines.clone();
        all.extend(extra);
        let total: f64 = all.iter().map(|l| l.4).sum();
        scenarios.push((label, all, total));
    }

    let per100k = 100_000.0 / messages as f64;
    let storage_month = s3_bytes as f64 / 1e9 * Prices::S3_GB_MONTH * per100k;
    if a.json {
        let out = json!({
            "messages": messages,
            "raw_bytes": raw_bytes,
            "batch_size": batch,
            "stages": per_stage.iter().map(|(k, (st, _))| (k.to_string(), json!({"messages": st.messages, "busy_ms": st.busy.as_secs_f64() * 1e3}))).collect::<BTreeMap<_, _>>(),
            "aws_requests_per_message": total_requests / messages as f64,
            "scenarios": scenarios.iter().map(|(label, all, total)| json!({
                "scenario": label,
                "usd_per_100k": total * per100k,
                "lines": all.iter().map(|l| json!({"service": l.0, "operation": l.1, "per_message": l.2 / messages as f64, "units_per_message": l.3 / messages as f64, "usd_per_100k": l.4 * per100k})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "s3_storage_usd_per_month_per_100k": storage_month,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{messages} messages ({:.1} MB raw) from gen_corpus.py --conversations {} --seed {}, against moto; template BatchSize {batch}",
        raw_bytes as f64 / 1e6,
        a.conversations,
        a.seed
    );
    for (stage, (st, _)) in &per_stage {
        println!(
            "  stage {stage:<7} {:>6} messages, {:>7.1} ms handler time in all ({:.2} ms each)",
            st.messages,
            st.busy.as_secs_f64() * 1e3,
            st.busy.as_secs_f64() * 1e3 / st.messages.max(1) as f64
        );
    }
    println!(
        "AWS requests per message (pipeline, before Lambda's pollers): {:.2}",
        total_requests / messages as f64
    );
    for (label, all, total) in &scenarios {
        println!("\n{label}:");
        println!(
            "  {:<28} {:<30} {:>10} {:>10} {:>12}",
            "service", "operation", "req/msg", "units/msg", "$/100k msgs"
        );
        for l in all {
            println!(
                "  {:<28} {:<30} {:>10.3} {:>10.3} {:>12.4}",
                l.0,
                l.1,
                l.2 / messages as f64,
                l.3 / messages as f64,
                l.4 * per100k
            );
        }
        let verdict = if total * per100k <= 2.50 { "OK" } else { "OVER" };
        println!("  total: US${:.3} per 100,000 messages (target <= 2.50: {verdict})", total * per100k);
    }
    println!(
        "\nS3 storage of what these messages wrote: US${storage_month:.4} per month per 100,000 messages (not in the totals)"
    );
    println!(
        "prices (us-east-1): S3 PUT ${}/1k, GET ${}/1k, ${}/GB-month; SQS ${}/M; DynamoDB on-demand ${}/M WRU, ${}/M RRU; \
         Lambda ${}/M requests, arm64 ${}/GB-s; CloudWatch Logs ${}/GB",
        Prices::S3_PUT_PER_1K,
        Prices::S3_GET_PER_1K,
        Prices::S3_GB_MONTH,
        Prices::SQS_PER_M,
        Prices::DDB_WRU_PER_M,
        Prices::DDB_RRU_PER_M,
        Prices::LAMBDA_REQ_PER_M,
        Prices::LAMBDA_ARM_GB_S,
        Prices::LOGS_PER_GB
    );
    Ok(())
}
