use crate::sources;
use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mailroom_app::{IngestError, IngestOutcome, Ingestor, Ports, RawMail, Stages};
use mailroom_core::{EmailAddress, Folder};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub read: u64,
    pub stored: u64,
    pub duplicates: u64,
    /// Stored by an earlier, interrupted run and queued again.
    pub requeued: u64,
    pub failed: u64,
    pub processed: u64,
    pub dead_lettered: u64,
    /// Peak resident memory of this process (Linux VmHWM), in KiB.
    pub peak_rss_kib: Option<u64>,
}

/// Imports `path` and drains the pipeline. Returns how many messages failed.
pub async fn run(
    data: &Path,
    path: &Path,
    inbox: Option<&str>,
    folder: Option<Folder>,
    json: bool,
) -> Result<u64> {
    let inbox = inbox.map(EmailAddress::parse).transpose()?;
    let ports = Ports::embedded(data)?;
    let s = import(&ports, path, inbox, folder).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!(
            "read {}, stored {}, duplicates {} ({} requeued from an interrupted run), failed {}",
            s.read,
            s.stored,
            s.duplicates + s.requeued,
            s.requeued,
            s.failed
        );
        println!(
            "pipeline: {} copies processed in total, {} sent to the dead-letter queue by this run",
            s.processed, s.dead_lettered
        );
    }
    Ok(s.failed)
}

/// What `mailroom import` does, without the printing: ingest every message of `path`
/// while the stages consume, then drain them.
pub async fn import(
    ports: &Ports,
    path: &Path,
    inbox: Option<EmailAddress>,
    folder: Option<Folder>,
) -> Result<Summary> {
    let ingestor = Ingestor::new(ports.clone());
    // Locally a failed message is retried quickly; five receives then move it to the DLQ.
    let worker = Stages::new(ports).retry_base(Duration::from_millis(200));
    let dlq_before = mailroom_app::views::stats::collect(ports).await?.dead_lettered();

    // The consumer runs while the import goes on, as the Lambda functions would.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let bg = {
        let w = worker.clone();
        tokio::spawn(async move { w.run(stop_rx).await })
    };

    let items = sources::collect(path)?;
    let pb = ProgressBar::new(items.len() as u64);
    if std::io::stderr().is_terminal() {
        pb.set_style(
            ProgressStyle::with_template("{spinner} {bar:40} {pos}/{len} {per_sec} eta {eta} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut s = Summary::default();
    let mut deferred = Vec::new();
    for item in items {
        let label = item.label();
        pb.inc(1);
        let bytes = match item.read() {
            Ok(b) => b,
            Err(e) => {
                s.failed += 1;
                pb.suspend(|| eprintln!("{label}: {e:#}"));
                continue;
            }
        };
        s.read += 1;
        let mut mail = RawMail::new(bytes, mailroom_app::pipeline::ingest::IMPORT_SOURCE);
        mail.inbox = inbox.clone();
        mail.folder = folder;
        // One at a time, in the source's order: the route stage routes a conversation on
        // the first of its messages it sees, so the order of the mailbox is kept. (Several
        // in flight only paid while every raw blob was fsynced.)
        let res = ingestor.ingest(mail.clone()).await;
        settle(&mut s, &mut deferred, &pb, label, mail, res);
    }
    // One consumer per queue at any time: stop the background stages (each finishes the
    // batch it holds) before draining here. Two consumers would process a message's copies
    // in two inboxes at once, and which inbox a conversation starts in would depend on
    // timing.
    let _ = stop_tx.send(true);
    bg.await?;
    if !deferred.is_empty() {
        // Let the pipeline record what was stored, so that replies can find their parents.
        worker.drain().await?;
    }
    for (label, mail) in deferred {
        match ingestor.ingest(mail).await {
            Ok(o) => count(&mut s, &o),
            Err(e) => {
                s.failed += 1;
                pb.suspend(|| eprintln!("{label}: {e}"));
            }
        }
    }
    pb.finish_and_clear();
    worker.drain().await?;
    ports.flush()?;
    let stats = mailroom_app::views::stats::collect(ports).await?;
    s.processed = stats.processed;
    s.dead_lettered = stats.dead_lettered().saturating_sub(dlq_before);
    s.peak_rss_kib = peak_rss_kib();
    Ok(s)
}

/// Counts an ingest's outcome; keeps a message whose inbox is not known yet for later.
fn settle(
    s: &mut Summary,
    deferred: &mut Vec<(String, RawMail)>,
    pb: &ProgressBar,
    label: String,
    mail: RawMail,
    res: Result<IngestOutcome, IngestError>,
) {
    match res {
        Ok(o) => count(s, &o),
        // The From may be an inbox that a later message's Delivered-To makes known.
        Err(IngestError::UnknownInbox { .. }) => deferred.push((label, mail)),
        Err(e) => {
            s.failed += 1;
            pb.suspend(|| eprintln!("{label}: {e}"));
        }
    }
}

fn count(s: &mut Summary, o: &IngestOutcome) {
    match o {
        IngestOutcome::Stored(_) => s.stored += 1,
        IngestOutcome::Duplicate => s.duplicates += 1,
        IngestOutcome::Requeued(_) => s.requeued += 1,
    }
}

/// Peak resident set size of this process, from `/proc/self/status` (Linux only).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
