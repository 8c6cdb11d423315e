//! `mailroom bench`: the parse floor and the full pipeline on embedded storage, on the
//! same messages in one run (docs/performance.md explains the method).
//!
//! 1. floor: read + sha256 + mail-parser parse of every message, nothing stored;
//! 2. throughput: every message through ingest, match, route and ticket on a fresh data
//!    directory, the stages running concurrently with the import as in `mailroom import`;
//! 3. latency: the same messages again on another fresh directory, one at a time, each
//!    through every stage before the next is handed over (time from hand-over to
//!    ticketed, on an idle pipeline).
//!
//! The corpus is a gen_corpus.py mailbox: `--corpus DIR` reads one, otherwise the script
//! (`--generator`, `MAILROOM_GEN_CORPUS`, or `../shared/tools/gen_corpus.py` in a source
//! checkout) generates one into a temporary directory.

use crate::sources;
use anyhow::{Context, Result, bail};
use mailroom_app::{IngestError, Ingestor, Ports, RawMail, Stages};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The workspace the pipeline runs with unless `--workspace` says otherwise: the one
/// gen_corpus.py's mailboxes are written for.
pub const ACME_WORKSPACE: &str = include_str!("../../../../examples/acme-corp.toml");

pub struct Options {
    pub conversations: u32,
    pub seed: u32,
    pub corpus: Option<PathBuf>,
    pub generator: Option<PathBuf>,
    pub workspace: Option<PathBuf>,
    /// Keep the data directories here (for inspection) instead of a temporary directory.
    pub keep: Option<PathBuf>,
    pub json: bool,
}

impl Options {
    pub fn new(c: crate::cli::CorpusArgs, keep: Option<PathBuf>, json: bool) -> Options {
        let crate::cli::CorpusArgs { conversations, seed, corpus, generator, workspace } = c;
        Options { conversations, seed, corpus, generator, workspace, keep, json }
    }
}

#[derive(Debug, Serialize)]
struct Floor {
    messages: usize,
    bytes: u64,
    seconds: f64,
    messages_per_s: f64,
    mb_per_s: f64,
}

#[derive(Debug, Serialize)]
struct Pipeline {
    messages: usize,
    seconds: f64,
    messages_per_s: f64,
    /// Peak resident memory of this process during the phase (VmHWM reset before it).
    peak_rss_mib: Option<f64>,
    failed: u64,
    dead_lettered: u64,
}

#[derive(Debug, Serialize)]
struct Latency {
    messages: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    corpus: String,
    floor: Floor,
    pipeline: Pipeline,
    latency: Latency,
    /// Storage operations per message in the throughput run (`service:operation`).
    operations_per_message: std::collections::BTreeMap<String, f64>,
    /// Floor messages/s over pipeline messages/s: how many times slower than parsing alone.
    ratio_full_over_floor: f64,
}

pub async fn run(o: Options) -> Result<()> {
    // Data directories and a generated corpus are the size of the corpus: removed on drop.
    let tmp = tempfile::Builder::new().prefix("mailroom-bench-").tempdir()?;
    let work = match &o.keep {
        Some(k) => {
            if k.exists() {
                bail!("--keep {}: the directory exists; name a new one", k.display());
            }
            k.clone()
        }
        None => tmp.path().to_path_buf(),
    };
    let dir = corpus_dir(&o, &work)?;
    let ws = workspace(&o)?;

    let floor = floor(&dir)?;
    if floor.messages == 0 {
        bail!("no messages in {}", dir.display());
    }
    eprintln!("floor: {:.0} messages/s", floor.messages_per_s);
    let count = floor.messages;

    let data = work.join("throughput");
    let ports = Ports::embedded(&data)?;
    mailroom_app::workspace::apply(&ports, &ws).await?;
    reset_peak_rss();
    mailroom_store::meter::reset();
    let pipeline = throughput(&ports, &dir, count).await?;
    let mut operations_per_message = std::collections::BTreeMap::new();
    for (svc, ops) in mailroom_store::meter::snapshot() {
        for (op, c) in ops {
            operations_per_message.insert(format!("{svc}:{op}"), c.requests as f64 / count as f64);
        }
    }
    eprintln!("pipeline: {:.0} messages/s", pipeline.messages_per_s);

    let data = work.join("latency");
    let ports = Ports::embedded(&data)?;
    mailroom_app::workspace::apply(&ports, &ws).await?;
    let latency = latency(&ports, &load(&dir)?).await?;

    let report = Report {
        corpus: dir.display().to_string(),
        ratio_full_over_floor: floor.messages_per_s / pipeline.messages_per_s,
        operations_per_message,
        floor,
        pipeline,
        latency,
    };
    if o.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(())
}

fn print(r: &Report) {
    let f = &r.floor;
    let p = &r.pipeline;
    let l = &r.latency;
    println!("corpus: {} ({} messages, {:.1} MB)", r.corpus, f.messages, f.bytes as f64 / 1e6);
    println!(
        "floor (read + sha256 + parse):      {:>8.0} messages/s  {:>7.1} MB/s",
        f.messages_per_s, f.mb_per_s
    );
    println!(
        "pipeline (ingest..ticket, embedded): {:>8.0} messages/s  ({:.2} s, peak RSS {})",
        p.messages_per_s,
        p.seconds,
        p.peak_rss_mib.map(|m| format!("{m:.1} MiB")).unwrap_or_else(|| "n/a".into())
    );
    let ops: f64 = r.operations_per_message.values().sum();
    let list: Vec<String> = r.operations_per_message.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
    println!("storage operations per message: {ops:.1} ({})", list.join(", "));
    println!(
        "latency, one message at a time:      p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        l.p50_ms, l.p99_ms, l.max_ms
    );
    println!(
        "ratio floor/pipeline: {:.2}x  (targets: >= 1000 messages/s: {}; within 4x of the floor: {})",
        r.ratio_full_over_floor,
        if p.messages_per_s >= 1000.0 { "OK" } else { "MISSED" },
        if r.ratio_full_over_floor <= 4.0 { "OK" } else { "MISSED" }
    );
    if p.failed + p.dead_lettered > 0 {
        println!("warning: {} failed, {} dead-lettered", p.failed, p.dead_lettered);
    }
}

fn load(dir: &Path) -> Result<Vec<Vec<u8>>> {
    sources::messages(sources::collect(dir)?).collect()
}

/// Read + sha256 + parse of every message, nothing kept: files are read from disk (the
/// page cache, warmed by a first untimed read), mbox messages are split out beforehand.
fn floor(dir: &Path) -> Result<Floor> {
    load(dir)?;
    let items = sources::messages(sources::collect(dir)?);
    let parser = mail_parser::MessageParser::default();
    let t = Instant::now();
    let (mut messages, mut bytes) = (0usize, 0u64);
    for raw in items {
        let raw = raw?;
        messages += 1;
        bytes += raw.len() as u64;
        let sha = mailroom_core::sha256(&raw);
        let m = parser.parse(&raw);
        // Keeps the work observable so that the optimiser cannot drop it.
        std::hint::black_box((sha, m));
    }
    let seconds = t.elapsed().as_secs_f64();
    Ok(Floor {
        messages,
        bytes,
        seconds,
        messages_per_s: messages as f64 / seconds,
        mb_per_s: bytes as f64 / 1e6 / seconds,
    })
}

/// `mailroom import` of the corpus, timed.
async fn throughput(ports: &Ports, dir: &Path, messages: usize) -> Result<Pipeline> {
    let t = Instant::now();
    let s = crate::import::import(ports, dir, None, None, &Default::default()).await?;
    let seconds = t.elapsed().as_secs_f64();
    Ok(Pipeline {
        messages,
        seconds,
        messages_per_s: messages as f64 / seconds,
        peak_rss_mib: s.peak_rss_kib.map(|k| k as f64 / 1024.0),
        failed: s.failed,
        dead_lettered: s.dead_lettered,
    })
}

/// One message at a time through every stage.
async fn latency(ports: &Ports, messages: &[Vec<u8>]) -> Result<Latency> {
    let ingestor = Ingestor::new(ports.clone());
    let stages = Stages::new(ports).retry_base(Duration::from_millis(200));
    let mut samples = Vec::with_capacity(messages.len());
    let mut deferred = Vec::new();
    for raw in messages {
        let mail = RawMail::new(raw.clone(), "bench");
        let t = Instant::now();
        match ingestor.ingest(mail.clone()).await {
            Ok(_) => {
                stages.process_visible().await?;
                samples.push(t.elapsed());
            }
            Err(IngestError::UnknownInbox { .. }) => deferred.push(mail),
            Err(_) => {}
        }
    }
    for mail in deferred {
        let t = Instant::now();
        if ingestor.ingest(mail).await.is_ok() {
            stages.process_visible().await?;
            samples.push(t.elapsed());
        }
    }
    samples.sort();
    let q = |p: f64| -> f64 {
        if samples.is_empty() {
            return 0.0;
        }
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e3
    };
    Ok(Latency { messages: samples.len(), p50_ms: q(0.50), p99_ms: q(0.99), max_ms: q(1.0) })
}

/// The messages to run: `--corpus` (its `messages/` folder when it has one), or a corpus
/// generated into `tmp`.
pub(crate) fn corpus_dir(o: &Options, tmp: &Path) -> Result<PathBuf> {
    let corpus = match &o.corpus {
        Some(c) => c.clone(),
        None => generate(o, tmp)?,
    };
    Ok(if corpus.join("messages").is_dir() { corpus.join("messages") } else { corpus })
}

/// `--workspace`, or the acme workspace gen_corpus.py writes for.
pub(crate) fn workspace(o: &Options) -> Result<mailroom_core::workspace::Workspace> {
    let ws_text = match &o.workspace {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        None => ACME_WORKSPACE.to_string(),
    };
    mailroom_core::workspace::parse_toml(&ws_text).map_err(|e| anyhow::anyhow!("workspace: {e:?}"))
}

fn generate(o: &Options, tmp: &Path) -> Result<PathBuf> {
    let script = o
        .generator
        .clone()
        .or_else(|| std::env::var_os("MAILROOM_GEN_CORPUS").map(PathBuf::from))
        .or_else(|| Some(PathBuf::from("../shared/tools/gen_corpus.py")).filter(|p| p.is_file()))
        .context(
            "no corpus: pass --corpus DIR (a gen_corpus.py output or a folder of .eml), or --generator PATH/TO/gen_corpus.py",
        )?;
    let out = tmp.join("corpus");
    eprintln!("generating {} conversations (seed {}) with {}", o.conversations, o.seed, script.display());
    let st = std::process::Command::new("python3")
        .arg(&script)
        .arg("--out")
        .arg(&out)
        .args(["--seed", &o.seed.to_string(), "--conversations", &o.conversations.to_string(), "--quiet"])
        .status()
        .context("running python3 (needed to generate a corpus)")?;
    if !st.success() {
        bail!("{} failed ({st})", script.display());
    }
    Ok(out)
}

/// Resets the peak-RSS watermark (VmHWM) so that a phase reports its own peak; Linux.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
