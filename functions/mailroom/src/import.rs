//! `mailroom import`: a folder of .eml files, a maildir or an mbox of any size into the
//! store, with the pipeline consuming as it goes. An mbox streams one message at a time
//! and resumes where a killed run stopped (`resume.rs`).

use crate::resume::{Checkpoint, MboxState};
use crate::sources::{self, Locator, Source};
use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mailroom_app::{IngestError, IngestOutcome, Ingestor, Ports, RawMail, Stages};
use mailroom_core::{EmailAddress, Folder};
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Messages read by this run, and their bytes.
    pub read: u64,
    pub bytes: u64,
    /// Messages of an mbox that an interrupted run had already imported: not read again.
    pub resumed: u64,
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
    restart: bool,
    json: bool,
) -> Result<u64> {
    let inbox = inbox.map(EmailAddress::parse).transpose()?;
    let ports = Ports::embedded(data)?;
    let resume = Resume { dir: Some(data.join("import")), restart };
    let s = import(&ports, path, inbox, folder, &resume).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        if s.resumed > 0 {
            println!("resumed: {} messages imported by an interrupted run were not read again", s.resumed);
        }
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

/// How an import may resume: where its mbox checkpoints live (the data directory's
/// `import/`), and whether to ignore them. The benchmarks import into fresh stores and
/// keep none.
#[derive(Debug, Default, Clone)]
pub struct Resume {
    pub dir: Option<PathBuf>,
    pub restart: bool,
}

/// What `mailroom import` does, without the printing: ingest every message of `path`
/// while the stages consume, then drain them.
pub async fn import(
    ports: &Ports,
    path: &Path,
    inbox: Option<EmailAddress>,
    folder: Option<Folder>,
    resume: &Resume,
) -> Result<Summary> {
    // Locally a failed message is retried quickly; five receives then move it to the DLQ.
    let worker = Stages::new(ports).retry_base(Duration::from_millis(200));
    let dlq_before = mailroom_app::views::stats::collect(ports).await?.dead_lettered();

    // The consumer runs while the import goes on, as the Lambda functions would.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let bg = {
        let w = worker.clone();
        tokio::spawn(async move { w.run(stop_rx).await })
    };

    let sources = sources::collect(path)?;
    let pb = ProgressBar::new(sources.iter().map(Source::size).sum());
    if std::io::stderr().is_terminal() {
        pb.set_style(
            ProgressStyle::with_template(
                "{spinner} {bar:40} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    } else {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut run = Run {
        ingestor: Ingestor::new(ports.clone()),
        ports,
        inbox,
        folder,
        pb,
        s: Summary::default(),
        deferred: Vec::new(),
        finished: Vec::new(),
    };
    for source in sources {
        run.pb.inc(match &source {
            Source::File(_) => source.size(),
            Source::Mbox(_) => 0,
        });
        match source {
            Source::File(p) => run.one(Locator::File(p)).await,
            Source::Mbox(p) => run.mbox(&p, resume).await?,
        }
    }
    // One consumer per queue at any time: stop the background stages (each finishes the
    // batch it holds) before draining here. Two consumers would process a message's copies
    // in two inboxes at once, and which inbox a conversation starts in would depend on
    // timing.
    let _ = stop_tx.send(true);
    bg.await?;
    let deferred = std::mem::take(&mut run.deferred);
    if !deferred.is_empty() {
        // Let the pipeline record what was stored, so that replies can find their parents.
        worker.drain().await?;
    }
    let mut still_failing: Vec<(PathBuf, u64)> = Vec::new();
    for at in deferred {
        let res = match at.read() {
            Ok(bytes) => run.ingestor.ingest(run.mail(bytes)).await.map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match res {
            Ok(o) => count(&mut run.s, &o),
            Err(e) => {
                run.s.failed += 1;
                run.pb.suspend(|| eprintln!("{}: {e:#}", at.label()));
                if let Locator::Mbox { path, start } = at {
                    still_failing.push((path, start));
                }
            }
        }
    }
    run.pb.finish_and_clear();
    worker.drain().await?;
    ports.flush()?;
    // A finished mbox's checkpoint goes, unless some of its messages still fail: then it
    // keeps only those, and importing the file again tries just them.
    for (c, st) in &run.finished {
        let retry: Vec<u64> = still_failing.iter().filter(|(p, _)| *p == st.path).map(|(_, o)| *o).collect();
        if retry.is_empty() {
            c.remove();
        } else {
            c.save(&MboxState { retry, done: true, ..st.clone() })?;
        }
    }
    let mut s = run.s;
    let stats = mailroom_app::views::stats::collect(ports).await?;
    s.processed = stats.processed;
    s.dead_lettered = stats.dead_lettered().saturating_sub(dlq_before);
    s.peak_rss_kib = peak_rss_kib();
    Ok(s)
}

/// Messages between two checkpoints of an mbox (and at most this many seconds apart).
const CHECKPOINT_EVERY: u64 = 200;
const CHECKPOINT_SECS: u64 = 5;

/// What one import holds while it runs.
struct Run<'a> {
    ingestor: Ingestor,
    ports: &'a Ports,
    inbox: Option<EmailAddress>,
    folder: Option<Folder>,
    pb: ProgressBar,
    s: Summary,
    /// Where to read again, at the end, the messages whose inbox was not known yet (or
    /// that failed in an interrupted run): their place, never their bytes.
    deferred: Vec<Locator>,
    /// The checkpoints of the mboxes read to their end, with their last state: removed
    /// once the whole import has finished.
    finished: Vec<(Checkpoint, MboxState)>,
}

impl Run<'_> {
    fn mail(&self, bytes: Vec<u8>) -> RawMail {
        let mut mail = RawMail::new(bytes, mailroom_app::pipeline::ingest::IMPORT_SOURCE);
        mail.inbox = self.inbox.clone();
        mail.folder = self.folder;
        mail
    }

    /// Ingests one message; `false` when it is to be tried again (deferred or failed).
    async fn ingest(&mut self, at: &Locator, bytes: Vec<u8>) -> bool {
        self.s.read += 1;
        self.s.bytes += bytes.len() as u64;
        // One at a time, in the source's order: the route stage routes a conversation on
        // the first of its messages it sees, so the order of the mailbox is kept. (Several
        // in flight only paid while every raw blob was fsynced.)
        match self.ingestor.ingest(self.mail(bytes)).await {
            Ok(o) => {
                count(&mut self.s, &o);
                true
            }
            // The From may be an inbox that a later message's Delivered-To makes known.
            Err(IngestError::UnknownInbox { .. }) => {
                self.deferred.push(at.clone());
                false
            }
            // Tried again at the end of the run (a store error may have passed); counted
            // as failed only if it fails then too.
            Err(e) => {
                self.pb.suspend(|| eprintln!("{}: {e} (tried again at the end)", at.label()));
                self.deferred.push(at.clone());
                false
            }
        }
    }

    async fn one(&mut self, at: Locator) {
        match at.read() {
            Ok(bytes) => {
                self.ingest(&at, bytes).await;
            }
            Err(e) => {
                self.s.failed += 1;
                self.pb.suspend(|| eprintln!("{e:#}"));
            }
        }
    }

    /// An mbox, streamed one message at a time from where an interrupted run stopped.
    async fn mbox(&mut self, path: &Path, resume: &Resume) -> Result<()> {
        let path = path.canonicalize().with_context(|| format!("cannot read {}", path.display()))?;
        let checkpoint = resume.dir.as_ref().map(|d| Checkpoint::new(d, &path));
        let saved = match &checkpoint {
            Some(c) if !resume.restart => c.load(&path),
            _ => None,
        };
        let mut st = saved.unwrap_or_else(|| MboxState { path: path.clone(), ..Default::default() });
        if st.next > 0 {
            self.s.resumed += st.index;
            self.pb.suspend(|| {
                eprintln!(
                    "{}: resuming after message {} (byte {}), where an interrupted import stopped",
                    path.display(),
                    st.index,
                    st.next
                )
            });
        }
        // Deferred or failed before the interruption: tried again with this run's own.
        let earlier = std::mem::take(&mut st.retry);
        self.deferred.extend(earlier.iter().map(|&start| Locator::Mbox { path: path.clone(), start }));
        let base = self.pb.position();
        self.pb.set_position(base + st.next);
        let mut since = (0u64, Instant::now());
        let mut reader = sources::mbox_reader(&path, st.next)?;
        while !st.done {
            let Some(m) = reader.next_message().with_context(|| format!("reading {}", path.display()))?
            else {
                st.done = true;
                break;
            };
            let at = Locator::Mbox { path: path.clone(), start: m.start };
            if !self.ingest(&at, m.bytes).await {
                st.retry.push(m.start);
            }
            st.index += 1;
            st.next = m.next;
            self.pb.set_position(base + m.next);
            since.0 += 1;
            if since.0 >= CHECKPOINT_EVERY || since.1.elapsed().as_secs() >= CHECKPOINT_SECS {
                self.save(checkpoint.as_ref(), &st, &earlier)?;
                since = (0, Instant::now());
            }
        }
        self.save(checkpoint.as_ref(), &st, &earlier)?;
        self.finished.extend(checkpoint.map(|c| (c, st)));
        Ok(())
    }

    /// Commits what is stored, then records the mbox's state: never ahead of the store.
    fn save(&self, checkpoint: Option<&Checkpoint>, st: &MboxState, earlier: &[u64]) -> Result<()> {
        let Some(c) = checkpoint else { return Ok(()) };
        self.ports.flush()?;
        let mut st = st.clone();
        st.retry.extend_from_slice(earlier);
        c.save(&st)
    }
}

fn count(s: &mut Summary, o: &IngestOutcome) {
    match o {
        IngestOutcome::Stored(_) => s.stored += 1,
        IngestOutcome::Duplicate => s.duplicates += 1,
        IngestOutcome::Requeued(_) => s.requeued += 1,
    }
}

/// Peak resident set size of this process (Linux only).
pub fn peak_rss_kib() -> Option<u64> {
    vm_hwm_kib("self")
}

/// Peak resident set size of process `pid` ("self" or a number), from
/// `/proc/{pid}/status` (Linux only).
pub fn vm_hwm_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
