//! `mailroom inbox connect-imap`, `mailroom inbox status` and `mailroom poll`: connected
//! mailboxes on embedded storage (docs/connections.md).

use anyhow::{Context, Result, bail};
use mailroom_app::mailbox::imap::{self, ImapSettings, Outcome, PollOptions, PollReport, Security};
use mailroom_app::{Ports, Stages};
use mailroom_core::EmailAddress;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// `MAILROOM_IMAP_POLL_SECONDS`: how often `serve` (and `poll` without `--once`) polls the
/// IMAP inboxes; 60 by default.
pub fn poll_interval() -> Result<Duration> {
    match std::env::var("MAILROOM_IMAP_POLL_SECONDS") {
        Err(_) => Ok(Duration::from_secs(60)),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Duration::from_secs(n)),
            _ => bail!("MAILROOM_IMAP_POLL_SECONDS must be a whole number of seconds above 0, not {v:?}"),
        },
    }
}

pub struct ConnectArgs {
    pub address: String,
    pub host: String,
    pub port: Option<u16>,
    pub security: Security,
    pub user: String,
    pub password_env: String,
    pub backfill_days: u32,
    pub ca_file: Option<PathBuf>,
    pub smtp: Option<imap::SmtpSettings>,
    pub allow_private_host: bool,
    pub sent_folder: Option<String>,
    pub json: bool,
}

impl From<crate::cli::ConnectImapArgs> for ConnectArgs {
    fn from(a: crate::cli::ConnectImapArgs) -> ConnectArgs {
        let smtp = a.smtp_host.map(|host| mailroom_app::mailbox::imap::SmtpSettings {
            host,
            port: a.smtp_port.unwrap_or(a.smtp_security.default_port()),
            security: a.smtp_security,
            user: a.smtp_user,
            append_sent: !a.no_sent_append,
        });
        ConnectArgs {
            address: a.address,
            host: a.host,
            port: a.port,
            security: a.security,
            user: a.user,
            password_env: a.password_env,
            backfill_days: a.backfill_days,
            ca_file: a.ca_file,
            smtp,
            allow_private_host: a.allow_private_host,
            sent_folder: a.sent_folder,
            json: a.json,
        }
    }
}

pub async fn connect_imap(data: &Path, a: ConnectArgs) -> Result<()> {
    let inbox = EmailAddress::parse(&a.address).with_context(|| format!("inbox address {:?}", a.address))?;
    let password = match std::env::var(&a.password_env) {
        Ok(p) if !p.is_empty() => p,
        _ => bail!(
            "environment variable {} is not set: put the IMAP password in it (the password is never taken on the command line, so it stays out of shell history and ps)",
            a.password_env
        ),
    };
    let ca_pem = match &a.ca_file {
        Some(f) => Some(
            std::fs::read_to_string(f).with_context(|| format!("cannot read --ca-file {}", f.display()))?,
        ),
        None => None,
    };
    let port = a.port.unwrap_or(a.security.default_port());
    let ports = Ports::embedded(data)?;
    let ws = mailroom_app::workspace::load(&ports).await?.unwrap_or_default();
    let settings = ImapSettings {
        host: a.host,
        port,
        security: a.security,
        user: a.user,
        backfill_days: a.backfill_days,
        ca_pem,
        smtp: a.smtp,
        allow_private_host: a.allow_private_host || ws.security.allow_private_mail_hosts,
        sent_folder: a.sent_folder,
    };
    let c = imap::connect(&ports, &inbox, settings, &password, &PollOptions::default())
        .await
        .with_context(|| format!("cannot connect {inbox}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&c)?);
        return Ok(());
    }
    match &c.sent_folder {
        Some(sent) => println!("connected {}: polling {} and {sent} (\\Sent)", c.inbox, c.inbox_folder),
        None => println!(
            "connected {}: polling {}; the server marks no folder \\Sent, so Sent copies are not read",
            c.inbox, c.inbox_folder
        ),
    }
    if c.cursors_kept {
        println!("same server and user as before: polling resumes where it stopped");
    } else {
        println!("the first poll reads the last {} days", a.backfill_days);
    }
    Ok(())
}

pub async fn status(data: &Path, json: bool) -> Result<()> {
    let ports = Ports::embedded(data)?;
    let mut list = mailroom_app::mailbox::connection::status(&ports).await?;
    for s in &mut list {
        // A CA certificate is long and says nothing here.
        if let Some(m) = s.connection.settings.as_object_mut()
            && m.remove("ca_pem").is_some()
        {
            m.insert("ca".into(), serde_json::json!("custom"));
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    for s in &list {
        let c = &s.connection;
        println!(
            "{:<36} {:<6} {:<18} last success {}  lag {}  failures {}",
            c.inbox,
            c.provider.as_str(),
            c.state.as_str(),
            c.last_success.map(|t| t.to_rfc3339()).unwrap_or_else(|| "never".into()),
            c.lag_seconds.map(|l| format!("{l}s")).unwrap_or_else(|| "-".into()),
            c.consecutive_failures
        );
        if let Some(e) = &c.last_error {
            let at = c.last_error_at.map(|t| t.to_rfc3339()).unwrap_or_default();
            println!("    last error ({at}): {e}");
        }
        for (folder, v) in &s.cursors {
            println!("    {folder}: {v}");
        }
    }
    println!("{} connections", list.len());
    Ok(())
}

/// `mailroom poll`: once (`--once`), or every `MAILROOM_IMAP_POLL_SECONDS` until Ctrl-C.
/// Each round returns when its messages went through the whole pipeline. Exit status 1
/// when an inbox failed in the (last) round.
pub async fn poll(data: &Path, once: bool, max_messages: Option<u32>, json: bool) -> Result<bool> {
    let interval = poll_interval()?;
    let ports = Ports::embedded(data)?;
    let opts = PollOptions { max_messages, ..PollOptions::default() };
    loop {
        let report = poll_round(&ports, &opts).await?;
        print(&report, json)?;
        if once {
            return Ok(report.failed() == 0);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(report.failed() == 0),
        }
    }
}

/// One poll of every IMAP inbox, then the pipeline drained (like `mailroom import`).
pub async fn poll_round(ports: &Ports, opts: &PollOptions) -> Result<PollReport> {
    let report = imap::poll_all(ports, opts).await?;
    if report.fetched() > 0 {
        Stages::new(ports).retry_base(Duration::from_millis(200)).drain().await?;
    }
    ports.flush()?;
    Ok(report)
}

fn print(r: &PollReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    for i in &r.inboxes {
        let what = match i.outcome {
            Outcome::Polled => "polled",
            Outcome::Leased => "skipped: another poller is polling it now",
            Outcome::ReconnectRequired => "not polled: reconnect required",
            Outcome::Deferred => "not polled: out of time",
            Outcome::Failed => "failed",
        };
        println!(
            "{}: {what}; fetched {}, stored {}, duplicates {}, skipped {}{}",
            i.inbox,
            i.fetched,
            i.stored,
            i.duplicates + i.requeued,
            i.skipped.len(),
            if i.budget_exhausted { " (more to fetch next time)" } else { "" }
        );
        for s in &i.skipped {
            println!("    skipped {} uid {}: {}", s.folder.cursor_name(), s.uid, s.reason);
        }
        if let Some(e) = &i.error {
            println!("    error: {e}");
        }
    }
    if r.inboxes.is_empty() {
        println!("no IMAP inboxes: connect one with `mailroom inbox connect-imap`");
    }
    Ok(())
}

/// `mailroom inbox connect ADDRESS --provider gmail|graph`: the sign-in link.
pub async fn connect_oauth(data: &Path, address: &str, provider: &str, public_url: &str) -> Result<()> {
    use mailroom_app::mailbox::connection::Provider;
    let inbox = mailroom_core::EmailAddress::parse(address).map_err(|e| anyhow::anyhow!("{address}: {e}"))?;
    let provider = match provider {
        "gmail" => Provider::Gmail,
        "graph" | "microsoft" => Provider::Graph,
        other => {
            anyhow::bail!("--provider {other:?}: use gmail or graph (IMAP: mailroom inbox connect-imap)")
        }
    };
    let ports = Ports::embedded(data)?;
    let cfg = mailroom_app::runtime::config::ProvidersConfig::from_env(public_url)?;
    let url = mailroom_app::mailbox::oauth::start(&ports, &cfg, provider, &inbox).await?;
    ports.flush()?;
    println!("Open this link within 10 minutes, with `mailroom serve` running at {public_url}:\n{url}");
    Ok(())
}

/// `mailroom inbox verify ADDRESS`: a verification run (`mailroom_app::verify`), moved on
/// every second with the pipeline and the send queue run here in between. True when it
/// passed.
pub async fn verify(
    data: &Path,
    address: &str,
    by: Option<String>,
    wait: Option<u64>,
    json: bool,
) -> Result<bool> {
    use mailroom_app::verify::{StepStatus, Verifier};
    use mailroom_app::{Worker, outbound::send::SendHandler};
    use std::sync::Arc;
    let inbox = EmailAddress::parse(address).with_context(|| format!("inbox address {address:?}"))?;
    let ports = Ports::embedded(data)?;
    let ws = mailroom_app::workspace::load(&ports).await?.unwrap_or_default();
    if !ws.inboxes.iter().any(|i| i.address.eq_ignore_ascii_case(address)) {
        bail!("{address} is not an inbox of this workspace (mailroom apply)");
    }
    let by = match by {
        Some(b) => b,
        None => ws
            .users
            .iter()
            .find(|u| u.role == mailroom_core::workspace::Role::Admin)
            .map(|u| u.email.clone())
            .context("the workspace has no admin to send the test reply as: pass --as USER")?,
    };
    let providers =
        Arc::new(mailroom_app::runtime::config::ProvidersConfig::from_env("http://127.0.0.1:3000")?);
    let mut verifier = Verifier::new(ports.clone(), providers.clone());
    if let Some(w) = wait {
        verifier.wait = Duration::from_secs(w);
    }
    let mut stages = Stages::new(&ports).retry_base(Duration::from_millis(200));
    let send = SendHandler::new(ports.clone(), providers);
    stages.workers.push(Worker::new(ports.send_queue.clone(), Arc::new(send)));
    let mut run = verifier.start(&inbox, &by).await?;
    let mut shown = 0;
    loop {
        if !json {
            for s in run.steps.iter().skip(shown) {
                if !matches!(s.status, StepStatus::Pass | StepStatus::Fail | StepStatus::Skipped) {
                    break;
                }
                let mark = match s.status {
                    StepStatus::Pass => "pass",
                    StepStatus::Fail => "FAIL",
                    _ => "skip",
                };
                let took = match (s.started_at, s.at) {
                    (Some(a), Some(b)) => format!(" ({:.1} s)", (b - a).num_milliseconds() as f64 / 1000.0),
                    _ => String::new(),
                };
                println!("{mark:4}  {}{took}: {}", s.label, s.detail.as_deref().unwrap_or_default());
                shown += 1;
            }
        }
        if run.finished() {
            break;
        }
        stages.process_visible().await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stages.process_visible().await?;
        run = verifier.advance(run).await?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&run)?);
    } else {
        println!("verification {} of {}: {}", run.id, run.inbox, run.outcome);
    }
    Ok(run.outcome == "passed")
}
